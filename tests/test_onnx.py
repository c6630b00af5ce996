"""ONNX export: the full checker, and onnxruntime (or ONNX's reference evaluator where
onnxruntime has no float64 kernel) giving predict's outputs for every layer kind. Skipped
without the onnx package; the runtime tests also without onnxruntime."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import steepest as st
from steepest.layers import LAYERS
from steepest.onnx_export import DEFAULT_OPSET, ONNX_LAYERS

onnx = pytest.importorskip("onnx")



def kinds(width):
    """One of each layer kind and option set that follows a Dense layer of `width` outputs
    (Dense itself: with and without bias)."""
    return [st.ReLU(), st.LeakyReLU(0.1), st.ELU(0.3), st.GELU(), st.GELU(approximate="tanh"),
            st.SiLU(), st.Sigmoid(), st.Tanh(), st.Softplus(), st.Softplus(beta=2, threshold=5),
            st.Softmax(), st.Dropout(0.3), st.BatchNorm1d(width),
            st.BatchNorm1d(width, momentum=None, affine=False),
            st.BatchNorm1d(width, track_running_stats=False), st.LayerNorm(width),
            st.LayerNorm(width, bias=False), st.LayerNorm(width, elementwise_affine=False),
            st.Standardize(), st.MinMaxScale()]


KINDS = kinds(16)
# float64 kernels onnxruntime does not have (the graph is valid ONNX all the same)
ORT_NO_FLOAT64 = {"Erf", "Softplus"}


@pytest.fixture(scope="module")
def ort(tmp_path_factory):
    """onnxruntime, with HOME in a temporary folder: it writes under ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield pytest.importorskip("onnxruntime")


def ort_run(ort, path, X):
    """onnxruntime's output of the graph at path for X."""
    options = ort.SessionOptions()
    if X.dtype == np.float64:
        # onnxruntime 1.23 (the last for Python 3.10) fuses x * Sigmoid(x) into QuickGelu,
        # which has no float64 kernel; its basic optimizations leave the graph as it is
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})[0]


def run_onnx(ort, path, X):
    """The graph's output for X: onnxruntime, or the reference evaluator for the float64
    operators onnxruntime lacks."""
    proto = onnx.load(str(path))
    if X.dtype == np.float64 and {n.op_type for n in proto.graph.node} & ORT_NO_FLOAT64:
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(proto).run(None, {"input": X})[0]
    return ort_run(ort, path, X)


def assert_within_ulps(got, want, ulps=4):
    """|got - want| <= ulps units in the last place of the largest output."""
    assert got.dtype == want.dtype and got.shape == want.shape
    scale = np.finfo(want.dtype).eps * np.abs(want).max()
    assert np.abs(got - want).max() <= ulps * scale, np.abs(got - want).max() / scale


def model_with(kind, dtype, seed=0):
    """Dense -> kind -> Dense without bias, first weights x10 so that pre-activations span
    about +-60 (saturations, Softplus' linear part, ELU's tail)."""
    model = st.Sequential(st.Dense(6, 16), kind, st.Dense(16, 5, bias=False), dtype=dtype,
                          seed=seed)
    model.state_dict()["0.weight"][...] *= 10
    return trained_statistics(model)


def trained_statistics(model, seed=7):
    """model with statistics learned from data: Standardize / MinMaxScale adapted, then
    BatchNorm's running statistics moved by a few training passes (a fresh layer's 0 and 1
    would hide a swapped mean or variance)."""
    X = np.random.default_rng(seed).normal(2.0, 3.0, size=(40, model.in_features))
    model.adapt(X.astype(model.dtype))
    for _ in range(3):
        model.forward(X.astype(model.dtype), training=True)
    return model


def test_every_layer_kind_has_an_onnx_form():
    assert set(ONNX_LAYERS) == set(LAYERS.values())
    assert {type(k) for k in KINDS} | {st.Dense} == set(LAYERS.values())


@pytest.mark.parametrize("kind", KINDS, ids=repr)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_gives_predicts_outputs(kind, dtype, ort, rng, tmp_path):
    model = model_with(kind, dtype)
    path = tmp_path / "m.onnx"
    model.export_onnx(path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    X = rng.normal(size=(300, 6)).astype(dtype)
    got = run_onnx(ort, path, X)
    ulps = 4
    if dtype == "float64" and isinstance(kind, st.GELU) and kind.approximate == "none":
        ulps *= np.finfo(np.float32).eps / np.finfo(np.float64).eps  # the reference's float32 Erf
    if isinstance(kind, st.Softmax):
        # exp amplifies: a logit near 60 one rounding off moves its probability by ~32 ulps,
        # and the logits of two products summed in different orders (onnxruntime's and
        # steepest's own kernels, both within a few ulps of the exact sums) differ by that much
        ulps *= 4
    assert_within_ulps(got, model.predict(X), ulps)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_deep_model_with_every_layer(dtype, ort, rng, tmp_path):
    # Standardize / MinMaxScale only first: deep in the stack their learned scales can be
    # tiny and amplify the rounding differences before them beyond any fixed tolerance
    layers = [st.Standardize(), st.Dense(8, 12)]
    for i, kind in enumerate(kinds(12)):  # onnxruntime runs all but Erf, Softplus in float64
        if not (isinstance(kind, st.layers.Rescale) or dtype == "float64" and (
                type(kind) is st.Softplus or getattr(kind, "approximate", "") == "none")):
            layers += [kind, st.Dense(12, 12, bias=i % 2 == 0)]
    model = trained_statistics(st.Sequential(*layers, dtype=dtype, seed=1))
    model.export_onnx(tmp_path / "deep.onnx")
    X = rng.normal(size=(64, 8)).astype(dtype)
    # the graph's ReduceMean sums in the model's dtype, the core's statistics in float64: the
    # difference grows through the 20 layers after the first normalization
    assert_within_ulps(ort_run(ort, tmp_path / "deep.onnx", X), model.predict(X), ulps=512)


def test_onnx_graph_gemm_transb_dropout_removed_symbolic_batch(tmp_path):
    model = st.Sequential(st.Dense(4, 8), st.ReLU(), st.Dropout(0.5), st.Dense(8, 3, bias=False),
                          st.Softmax(), seed=0)
    model.export_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [op.version for op in proto.opset_import if op.domain == ""] == [DEFAULT_OPSET]
    assert proto.producer_name == "steepest"
    nodes = proto.graph.node
    assert [n.op_type for n in nodes] == ["Gemm", "Relu", "Gemm", "Softmax"]
    for gemm in (nodes[0], nodes[2]):
        assert {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute} == \
            {"transB": 1}
    assert len(nodes[2].input) == 2  # no bias
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert set(weights) == set(model.state_dict())
    for name, value in model.state_dict().items():
        assert weights[name].tobytes() == value.tobytes()
    for value_info, width in ((proto.graph.input[0], 4), (proto.graph.output[0], 3)):
        dims = value_info.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and dims[1].dim_value == width
        assert value_info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [v.name for v in proto.graph.input] == ["input"]
    assert [v.name for v in proto.graph.output] == ["output"]


def test_onnx_runs_at_any_batch_size(ort, rng, tmp_path):
    model = st.Sequential(st.Dense(3, 5), st.Tanh(), st.Dense(5, 2), seed=0)
    model.export_onnx(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 2, 1000):
        X = rng.normal(size=(n, 3)).astype(np.float32)
        assert_within_ulps(session.run(None, {"input": X})[0], model.predict(X))


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_onnx_probability_outputs(output, ort, rng, tmp_path):
    model = st.Sequential(st.Dense(5, 8), st.ReLU(), st.Dense(8, 4), seed=2)
    model.export_onnx(tmp_path / "m.onnx", output=output)
    X = rng.normal(size=(50, 5)).astype(np.float32)
    logits = model.predict(X).astype(np.float64)
    if output == "softmax":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        want = e / e.sum(axis=1, keepdims=True)
    else:
        want = 1 / (1 + np.exp(-logits))
    got = run_onnx(ort, tmp_path / "m.onnx", X)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_onnx_opsets(ort, rng, tmp_path):
    # ReduceMean (the normalizations) takes its axes as an attribute before opset 18
    model = st.Sequential(st.Dense(3, 4), st.GELU(), st.LayerNorm(4),
                          st.BatchNorm1d(4, track_running_stats=False), st.Dense(4, 2), seed=0)
    X = rng.normal(size=(9, 3)).astype(np.float32)
    for opset in (13, 17, 18, 21):
        model.export_onnx(tmp_path / f"m{opset}.onnx", opset=opset)
        proto = onnx.load(str(tmp_path / f"m{opset}.onnx"))
        onnx.checker.check_model(proto, full_check=True)
        assert proto.opset_import[0].version == opset
        assert_within_ulps(run_onnx(ort, tmp_path / f"m{opset}.onnx", X), model.predict(X))


def test_onnx_refuses_bad_arguments(tmp_path):
    model = st.Sequential(st.Dense(3, 4), st.ReLU(), st.Dense(4, 2), seed=0)
    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match="opset"):
        model.export_onnx(path, opset=12)
    with pytest.raises(ValueError, match="opset"):
        model.export_onnx(path, opset=onnx.defs.onnx_opset_version() + 1)
    with pytest.raises(TypeError, match="opset"):
        model.export_onnx(path, opset="17")
    with pytest.raises(ValueError, match="output"):
        model.export_onnx(path, output="probabilities")
    ends_with_softmax = st.Sequential(st.Dense(3, 4), st.Softmax(), st.Dropout(0.1), seed=0)
    with pytest.raises(ValueError, match="already ends with Softmax"):
        ends_with_softmax.export_onnx(path, output="softmax")
    ends_with_softmax.export_onnx(path)  # its output is already the probabilities
    with pytest.raises(RuntimeError, match="adapt"):  # nothing to export before it learned
        st.Sequential(st.Standardize(), st.Dense(3, 2), seed=0).export_onnx(path)
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_onnx_file_is_replaced_atomically(tmp_path, monkeypatch):
    model = st.Sequential(st.Dense(3, 2), seed=0)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        model.export_onnx(path)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    model.export_onnx(path)
    assert onnx.load(str(path)).graph.node[0].op_type == "Gemm"
    assert os.listdir(tmp_path) == ["m.onnx"]
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_onnx_without_the_onnx_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(ImportError, match="pip install"):
        st.Sequential(st.Dense(3, 2), seed=0).export_onnx(tmp_path / "m.onnx")
