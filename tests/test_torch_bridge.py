"""The PyTorch bridge: model.to_torch() and st.from_torch(nn.Sequential) for every layer kind,
weights included, and a clear error for a module steepest cannot map. Skipped without torch."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import steepest as st
from steepest.layers import LAYERS
from steepest.torch_bridge import TORCH_MODULES

torch = pytest.importorskip("torch")
nn = torch.nn

# steepest's preprocessing layers, which torch.nn has no module for
NO_TORCH_MODULE = {st.Standardize, st.MinMaxScale}


def pairs(width):
    """Each steepest layer kind and option set that follows a Dense layer of `width` outputs,
    next to the torch module it is."""
    return [(st.ReLU(), nn.ReLU()), (st.LeakyReLU(0.1), nn.LeakyReLU(0.1)),
            (st.ELU(0.3), nn.ELU(0.3)), (st.GELU(), nn.GELU()),
            (st.GELU(approximate="tanh"), nn.GELU(approximate="tanh")), (st.SiLU(), nn.SiLU()),
            (st.Sigmoid(), nn.Sigmoid()), (st.Tanh(), nn.Tanh()), (st.Softplus(), nn.Softplus()),
            (st.Softplus(beta=2, threshold=5), nn.Softplus(beta=2.0, threshold=5.0)),
            (st.Softmax(), nn.Softmax(dim=-1)), (st.Dropout(0.3), nn.Dropout(0.3)),
            (st.BatchNorm1d(width), nn.BatchNorm1d(width)),
            (st.BatchNorm1d(width, eps=1e-3, momentum=None, affine=False),
             nn.BatchNorm1d(width, eps=1e-3, momentum=None, affine=False)),
            (st.BatchNorm1d(width, track_running_stats=False),
             nn.BatchNorm1d(width, track_running_stats=False)),
            (st.LayerNorm(width), nn.LayerNorm(width)),
            (st.LayerNorm(width, bias=False), nn.LayerNorm(width, bias=False)),
            (st.LayerNorm(width, eps=1e-4, elementwise_affine=False),
             nn.LayerNorm(width, eps=1e-4, elementwise_affine=False))]


PAIRS = pairs(9)
TOLERANCES = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-14)}


def test_every_layer_kind_has_a_torch_module():
    assert set(TORCH_MODULES) == set(LAYERS.values()) - NO_TORCH_MODULE
    assert {type(layer) for layer, _ in PAIRS} | {st.Dense} == set(TORCH_MODULES)
    for cls in NO_TORCH_MODULE:
        model = st.Sequential(cls(), st.Dense(3, 2)).adapt(np.eye(3))
        with pytest.raises(ValueError, match=f"no PyTorch module for {cls.__name__}"):
            model.to_torch()


@pytest.mark.parametrize("layer, module", PAIRS, ids=[repr(p[0]) for p in PAIRS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_torch_gives_predicts_outputs(layer, module, dtype, rng):
    model = st.Sequential(st.Dense(5, 9), layer, st.Dense(9, 3, bias=False), dtype=dtype, seed=1)
    model.state_dict()["0.weight"][...] *= 8  # saturations, Softplus' linear part
    for _ in range(3):  # BatchNorm's running statistics away from 0 and 1
        model.forward(rng.normal(1.0, 2.0, size=(16, 5)).astype(dtype), training=True)
    tmodel = model.to_torch()
    assert isinstance(tmodel, nn.Sequential) and tmodel.training
    assert [type(m) for m in tmodel] == [nn.Linear, type(module), nn.Linear]
    assert repr(tmodel[1]) == repr(module)
    assert all(p.dtype == getattr(torch, dtype) for p in tmodel.parameters())
    for k, v in tmodel.state_dict().items():
        assert v.numpy().tobytes() == model.state_dict()[k].tobytes()
    X = rng.normal(size=(20, 5)).astype(dtype)
    out = tmodel.eval()(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(out, model.predict(X), **TOLERANCES[dtype])


def test_to_torch_copies_the_weights():
    model = st.Sequential(st.Dense(2, 2), seed=0)
    tmodel = model.to_torch()
    with torch.no_grad():
        tmodel[0].weight.add_(1.0)
    assert not np.array_equal(tmodel[0].weight.detach().numpy(), model.state_dict()["0.weight"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_from_torch_every_module(dtype, rng):
    tdtype = getattr(torch, dtype)
    torch.manual_seed(0)
    modules = [nn.Linear(6, 8)]
    for _, module in pairs(8):
        modules += [module, nn.Linear(8, 8, bias=len(modules) % 4 == 1)]
    nested = nn.Sequential(nn.Sequential(*modules[:7]), nn.Sequential(*modules[7:])).to(tdtype)
    for _ in range(3):  # BatchNorm's running statistics and counts move
        nested(torch.from_numpy(rng.normal(size=(16, 6)).astype(dtype)))
    model = st.from_torch(nested, seed=4)
    assert model.dtype == np.dtype(dtype) and model.seed == 4
    assert [TORCH_MODULES[type(layer)] for layer in model.layers] == \
        [type(m).__name__ for m in modules]
    assert repr(model.layers[3]) == "LeakyReLU(negative_slope=0.1)"
    flat = nn.Sequential(*modules)
    assert list(model.state_dict()) == list(flat.state_dict())
    for k, v in flat.state_dict().items():
        assert model.state_dict()[k].tobytes() == v.numpy().tobytes()
    X = rng.normal(size=(10, 6)).astype(dtype)
    # 20 layers with normalizations whose float32 statistics torch sums in float32, steepest in
    # float64: float32 agrees to 1e-5 of the largest output, not of every one
    tol = TOLERANCES[dtype] if dtype == "float64" else dict(rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(model.predict(X), nested.eval()(torch.from_numpy(X)).detach()
                               .numpy(), **tol)


def test_round_trip_through_torch_is_exact():
    model = st.Sequential(st.Dense(4, 6, bias=False), st.ELU(0.7), st.BatchNorm1d(6),
                          st.Dropout(0.1), st.Dense(6, 3), st.LayerNorm(3, bias=False),
                          st.Softmax(), dtype="float64", seed=9)
    model.forward(np.linspace(-2, 3, 20).reshape(5, 4), training=True)
    back = st.from_torch(model.to_torch(), seed=9)
    assert back.config() == model.config()
    for k, v in model.state_dict().items():
        assert back.state_dict()[k].tobytes() == v.tobytes(), k


def test_from_torch_names_the_module_it_cannot_map():
    cases = [
        (nn.Sequential(nn.Linear(3, 4), nn.Conv1d(1, 1, 1)), r"module 1 \(Conv1d"),
        (nn.Sequential(nn.Sequential(nn.Linear(3, 4)), nn.Sequential(nn.Flatten())),
         r"module 1\.0 \(Flatten"),
        (nn.Sequential(nn.Linear(3, 4), nn.LayerNorm([2, 2])), r"module 1 \(LayerNorm.*1-element"),
        (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=2.0)), r"module 1 .*momentum"),
        (nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=0)), "dim=-1"),
        (nn.Sequential(nn.Linear(3, 4), type("MyReLU", (nn.ReLU,), {})()), "MyReLU"),
        (nn.Sequential(nn.Linear(3, 4).half()), r"float16"),
        (nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2).double()), r"float32', 'float64"),
    ]
    for module, message in cases:
        with pytest.raises(ValueError, match=message):
            st.from_torch(module)
    softmax = st.from_torch(nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=1)))  # (N, C): 1 is -1
    assert isinstance(softmax.layers[1], st.Softmax)
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        st.from_torch(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="Dense"):  # steepest's own rule, with its message
        st.from_torch(nn.Sequential(nn.ReLU()))


def test_continued_in_torch_then_back(rng):
    """Train in steepest, continue in torch, come back: the weights torch trained."""
    model = st.Sequential(st.Dense(4, 8), st.Tanh(), st.Dense(8, 2), seed=0)
    X, y = rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 2, 32)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=st.optim.SGD(model.parameters(),
                                                                          lr=0.1), verbose=0)
    tmodel = model.to_torch()
    opt = torch.optim.SGD(tmodel.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(tmodel(torch.from_numpy(X)), torch.from_numpy(y))
    loss.backward()
    opt.step()
    back = st.from_torch(tmodel)
    step = st.Sequential(st.Dense(4, 8), st.Tanh(), st.Dense(8, 2), seed=0)
    step.load_state_dict(model.state_dict())
    step.train_step(X, y, st.losses.CrossEntropy(), st.optim.SGD(step.parameters(), lr=0.1))
    np.testing.assert_allclose(back.flat_params(), step.flat_params(), rtol=1e-5, atol=1e-7)


def test_bridge_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        st.Sequential(st.Dense(2, 2)).to_torch()
    with pytest.raises(ImportError, match="pip install torch"):
        st.from_torch(object())
