"""Performance properties that are not timings: results do not depend on the thread count,
nor a row's output on the batch it is computed in.

The core splits large products into tiles chosen from the shape alone and keeps every
reduction in a fixed order, so the same seed gives bitwise-identical weights on 1 and 2
threads (PyTorch does not promise this). A steady-state step allocating nothing is checked by
the C++ benchmark (bench/bench_kernels.cpp, allocs_per_step), which counts every malloc.
"""
from __future__ import annotations

import multiprocessing
import os
import warnings

import numpy as np
import pytest

import steepest as st


@pytest.fixture
def restore_threads():
    old = st.get_num_threads()
    yield
    st.set_num_threads(old)


def build(sizes, dropout, dtype, seed=3):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(st.Dense(a, b))
        if i < len(sizes) - 2:
            layers.append(st.ReLU())
            if dropout:
                layers.append(st.Dropout(dropout))
    return st.Sequential(*layers, dtype=dtype, seed=seed)


def make_optimizer(name, model):
    if name == "sgd":
        return st.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return st.optim.Adam(model.parameters(), lr=1e-3)


def weights_after_steps(threads, sizes, batch, optimizer, dropout, dtype, steps=3):
    st.set_num_threads(threads)
    model = build(sizes, dropout, dtype)
    opt = make_optimizer(optimizer, model)
    loss = st.losses.CrossEntropy()
    rng = np.random.default_rng(0)
    for _ in range(steps):
        X = rng.standard_normal((batch, sizes[0])).astype(dtype)
        y = rng.integers(0, sizes[-1], batch)
        model.train_step(X, y, loss, opt)
    return model.state_dict(), {k: v.copy() for k, v in opt.state_dict()["state"].items()}


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs between 1 and 2 threads"


# Shapes from tiny (one thread whatever the setting) to large enough for tiled products and
# parallel elementwise loops on 2 threads.
SHAPES = [
    ((784, 128, 10), 1),
    ((784, 128, 10), 32),
    ((64, 300, 200, 10), 100),
    ((256, 1024, 512, 10), 512),
]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("sizes,batch", SHAPES)
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_train_step_weights_do_not_depend_on_thread_count(restore_threads, sizes, batch,
                                                          optimizer, dropout):
    p1, s1 = weights_after_steps(1, sizes, batch, optimizer, dropout, np.float32)
    p2, s2 = weights_after_steps(2, sizes, batch, optimizer, dropout, np.float32)
    assert_bitwise_equal(p1, p2)
    assert_bitwise_equal(s1, s2)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_float64_weights_do_not_depend_on_thread_count(restore_threads, optimizer):
    sizes, batch = (256, 1024, 512, 10), 256
    p1, _ = weights_after_steps(1, sizes, batch, optimizer, 0.1, np.float64, steps=2)
    p2, _ = weights_after_steps(2, sizes, batch, optimizer, 0.1, np.float64, steps=2)
    assert_bitwise_equal(p1, p2)


@pytest.mark.parametrize("threads", [3, 4])
def test_more_threads_than_cores_gives_the_same_weights(restore_threads, threads):
    sizes, batch = (256, 1024, 512, 10), 512
    p1, _ = weights_after_steps(1, sizes, batch, "adam", 0.2, np.float32, steps=2)
    pn, _ = weights_after_steps(threads, sizes, batch, "adam", 0.2, np.float32, steps=2)
    assert_bitwise_equal(p1, pn)


def test_fit_epochs_do_not_depend_on_thread_count(restore_threads):
    """Shuffling, gathering batches, the grad-norm statistics and the history too."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 200)).astype(np.float32)
    y = rng.integers(0, 10, 3000)

    def run(threads):
        st.set_num_threads(threads)
        model = build((200, 1024, 256, 10), 0.1, "float32", seed=11)
        opt = st.optim.Adam(model.parameters(), lr=1e-3)
        hist = model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=2,
                         batch_size=256, verbose=0, clip_grad_norm=5.0)
        return model.state_dict(), hist

    (p1, h1), (p2, h2) = run(1), run(2)
    assert_bitwise_equal(p1, p2)
    assert h1["loss"] == h2["loss"]
    assert h1["accuracy"] == h2["accuracy"]
    assert h1["grad_norm"] == h2["grad_norm"]


def test_predict_does_not_depend_on_thread_count(restore_threads):
    model = build((300, 2048, 10), 0.0, "float32")
    X = np.random.default_rng(2).standard_normal((1000, 300)).astype(np.float32)
    st.set_num_threads(1)
    a = model.predict(X)
    st.set_num_threads(2)
    b = model.predict(X)
    assert a.tobytes() == b.tobytes()


def test_fast_and_validated_paths_give_the_same_step(restore_threads):
    """Exact arrays take the core's one-pass validation, others the Python one; same result."""
    X = np.random.default_rng(3).standard_normal((16, 50))
    y = np.arange(16) % 5
    results = []
    for x_in, y_in in [(X.astype(np.float32), y.astype(np.int64)),  # fast path
                       (X, y.astype(np.int32)),                     # converted
                       (X.astype(np.float32).tolist(), y.tolist())]:  # lists
        model = build((50, 40, 5), 0.0, "float32")
        opt = make_optimizer("adam", model)
        value = model.train_step(x_in, y_in, st.losses.CrossEntropy(), opt)
        results.append((value, model.state_dict()))
    for value, params in results[1:]:
        assert value == results[0][0]
        assert_bitwise_equal(params, results[0][1])


# -- batch 1: train_step writes each weight gradient a block at a time and updates it at once ---

OPTIMIZERS = {
    "sgd": lambda ps: st.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda ps: st.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, dampening=0),
    "plain_sgd": lambda ps: st.optim.SGD(ps, lr=0.05),
    "adam": lambda ps: st.optim.Adam(ps, lr=1e-3, weight_decay=1e-2),
    "adamw_amsgrad": lambda ps: st.optim.AdamW(ps, lr=1e-3, amsgrad=True),
    "rmsprop": lambda ps: st.optim.RMSprop(ps, lr=1e-3, momentum=0.5, centered=True),
    "adagrad": lambda ps: st.optim.Adagrad(ps, lr=1e-2, lr_decay=1e-3),
}


def batch1_run(optimizer, train_step, threads=1, only=None, steps=3):
    """Weights, optimizer state and grads after `steps` batch-1 steps, either by train_step or
    by forward/loss/backward/opt.step. `only` picks which parameters the optimizer owns."""
    st.set_num_threads(threads)
    model = build((300, 200, 64, 10), 0.25, "float32", seed=5)  # 60,000-weight first layer
    params = model.parameters()
    opt = OPTIMIZERS[optimizer]([params[i] for i in only] if only else params)
    loss = st.losses.CrossEntropy()
    rng = np.random.default_rng(4)
    for _ in range(steps):
        X = rng.standard_normal((1, 300)).astype(np.float32)
        y = rng.integers(0, 10, 1)
        if train_step:
            model.train_step(X, y, loss, opt)
        else:
            model.zero_grad()
            loss(model.forward(X, training=True), y)
            model.backward(loss.backward())
            opt.step()
    grads = {f"grad{i}": p.grad.copy() for i, p in enumerate(params)}
    state = {k: v.copy() for k, v in opt.state_dict()["state"].items()}
    return model.state_dict(), state, grads


def assert_equal_values(a, b):
    """Equal values; the step-by-step path adds into zeroed grads (0 + -0 is +0), so the sign
    of a zero gradient, and of the state it starts, may differ."""
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_batch1_train_step_is_bitwise_the_step_by_step_path(restore_threads, optimizer):
    (p1, s1, g1), (p2, s2, g2) = batch1_run(optimizer, True), batch1_run(optimizer, False)
    assert_bitwise_equal(p1, p2)
    assert_equal_values(s1, s2)
    assert_equal_values(g1, g2)


@pytest.mark.parametrize("only", [(0, 1), (2, 3, 5), (1, 2)], ids=["first", "middle", "mixed"])
def test_batch1_train_step_updates_only_the_optimizers_parameters(restore_threads, only):
    p_fused, s_fused, g_fused = batch1_run("adam", True, only=only)
    p_plain, s_plain, g_plain = batch1_run("adam", False, only=only)
    assert_bitwise_equal(p_fused, p_plain)
    assert_equal_values(s_fused, s_plain)
    assert_equal_values(g_fused, g_plain)
    untouched = build((300, 200, 64, 10), 0.25, "float32", seed=5).state_dict()
    for i, key in enumerate(untouched):
        assert (p_fused[key].tobytes() == untouched[key].tobytes()) == (i not in only), key


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_batch1_train_step_does_not_depend_on_thread_count(restore_threads, optimizer):
    for a, b in zip(batch1_run(optimizer, True, threads=1), batch1_run(optimizer, True, threads=2)):
        assert_bitwise_equal(a, b)


def test_batch1_refused_step_leaves_the_weights_and_shows_the_gradient(restore_threads):
    """A gradient that overflows float32 (huge input, finite loss) is refused before any
    weight moves, and the refused gradient is there to inspect, as on the other path."""
    model = build((300, 200, 10), 0.0, "float32", seed=5)
    opt = st.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    X = np.full((1, 300), 3e19, np.float32)
    with pytest.raises(st.TrainingDiverged):
        model.train_step(X, np.array([1]), st.losses.CrossEntropy(), opt)
    assert_bitwise_equal(before, model.state_dict())
    assert opt.steps == 0
    model2 = build((300, 200, 10), 0.0, "float32", seed=5)
    model2.zero_grad()
    loss = st.losses.CrossEntropy()
    loss(model2.forward(X, training=True), np.array([1]))
    model2.backward(loss.backward())
    for p, q in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)


@pytest.mark.parametrize("bad", ["nan", "inf", "label_high", "label_negative", "shape"])
def test_fast_path_refuses_bad_input_like_the_validated_path(bad):
    model = build((8, 6, 3), 0.0, "float32")
    opt = make_optimizer("sgd", model)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    X = np.ones((4, 8), np.float32)
    y = np.zeros(4, np.int64)
    if bad == "nan":
        X[2, 3] = np.nan
    elif bad == "inf":
        X[0, 0] = np.inf
    elif bad == "label_high":
        y[1] = 3
    elif bad == "label_negative":
        y[1] = -1
    else:
        X = np.ones((4, 7), np.float32)
    with pytest.raises(ValueError):
        model.train_step(X, y, st.losses.CrossEntropy(), opt)
    assert_bitwise_equal(before, model.state_dict())


def _train_in_child(queue):
    try:
        st.set_num_threads(2)
        model = build((256, 1024, 512, 10), 0.1, "float32")
        opt = make_optimizer("adam", model)
        X = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
        y = np.arange(512) % 10
        value = model.train_step(X, y, st.losses.CrossEntropy(), opt)
        st.set_num_threads(1)
        queue.put(("ok", value))
    except BaseException as exc:  # report to the parent rather than hang or die silently
        queue.put(("error", repr(exc)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_can_train_after_the_parent_used_its_threads(restore_threads):
    """The thread pool's workers do not survive fork(); the child must neither hang nor
    crash (it starts its own)."""
    p1, _ = weights_after_steps(2, (256, 1024, 512, 10), 512, "adam", 0.2, np.float32, steps=1)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        child = ctx.Process(target=_train_in_child, args=(queue,))
        child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    status, value = queue.get(timeout=10)
    assert status == "ok", value
    assert np.isfinite(value)
    assert child.exitcode == 0


# -- batch invariance: a row's output does not depend on the batch it is computed in ----------

needs_own_gemm = pytest.mark.skipif(
    st._core.gemm_isa() == "none",
    reason="batch invariance comes from steepest's own GEMM kernels (CPUs with AVX2 + FMA)")

# Architectures whose products cover: K past one 256-value block, K == 1, N == 1, a width
# under one vector, softmax and elementwise activations, dropout (inactive at inference).
INVARIANCE_ARCHITECTURES = {
    "relu": lambda: [st.Dense(20, 37), st.ReLU(), st.Dense(37, 5)],
    "wide_softmax": lambda: [st.Dense(300, 70), st.LeakyReLU(0.1), st.Dense(70, 10),
                             st.Softmax()],
    "one_feature_one_output": lambda: [st.Dense(1, 9), st.Tanh(), st.Dense(9, 1)],
    "deep_dropout": lambda: [st.Dense(64, 48), st.GELU(), st.Dropout(0.5), st.Dense(48, 33),
                             st.Sigmoid(), st.Dense(33, 3, bias=False)],
}


def same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@needs_own_gemm
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("arch", list(INVARIANCE_ARCHITECTURES))
def test_a_rows_output_does_not_depend_on_its_batch(arch, dtype):
    """predict and forward (inference and training mode) on rows one at a time, on random
    subsets in random order and on the full batch: the same bits for every row."""
    model = st.Sequential(*INVARIANCE_ARCHITECTURES[arch](), dtype=dtype, seed=1)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((57, model.in_features)).astype(dtype)
    full = model.predict(X)
    one_by_one = np.vstack([model.predict(X[i:i + 1]) for i in range(len(X))])
    assert same_bits(one_by_one, full)
    for size in (2, 3, 16, 40):
        idx = rng.permutation(len(X))[:size]
        assert same_bits(model.predict(X[idx]), full[idx]), size
    assert same_bits(model.forward(X), full)
    assert same_bits(model.forward(X[7:8]), full[7:8])
    if not any(isinstance(layer, st.Dropout) for layer in model.layers):
        assert same_bits(model.forward(X[idx], training=True), full[idx])
        assert same_bits(model.forward(X[3:4], training=True), full[3:4])


@needs_own_gemm
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_invariance_holds_for_tiled_products_and_across_threads(restore_threads, dtype):
    """Large enough for products split in tiles on 2 threads and for predict's chunks of rows:
    rows alone on 1 thread give the bits of the 2-thread full batch."""
    model = build((784, 512, 256, 10), 0.0, dtype)
    X = np.random.default_rng(6).standard_normal((300, 784)).astype(dtype)
    st.set_num_threads(2)
    full = model.predict(X)
    st.set_num_threads(1)
    rows = np.vstack([model.predict(X[i:i + 1]) for i in range(0, len(X), 37)])
    assert same_bits(rows, full[::37])
    st.set_num_threads(2)
    assert same_bits(model.predict(X[5:6]), full[5:6])
    assert same_bits(model.predict(X[100:290]), full[100:290])
