"""PyTorch as the oracle: activations, losses, optimizer trajectories, clipping, schedules and
weights moving both ways. Skipped when torch is not installed."""
from __future__ import annotations

import numpy as np
import pytest

import steepest as st
from conftest import to_torch, torch_state

pytest.importorskip("torch")

ACTIVATIONS = [st.ReLU(), st.LeakyReLU(0.05), st.ELU(), st.ELU(0.3), st.GELU(),
               st.GELU(approximate="tanh"), st.SiLU(), st.Sigmoid(), st.Tanh(), st.Softplus(),
               st.Softplus(beta=2.0, threshold=5.0), st.Softplus(beta=0.5, threshold=3.0),
               st.Softmax()]


def tensor(torch, a, dtype=None):
    return torch.tensor(np.asarray(a), dtype=dtype)


def torch_grads(tmodel):
    return {k: p.grad.detach().numpy() for k, p in tmodel.named_parameters()}


def assert_dicts_close(a, b, **tol):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], err_msg=k, **tol)


# -- activations and losses ----------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_activation_values_and_gradients(act, dtype, torch, rng):
    model = st.Sequential(st.Dense(6, 10), act, st.Dense(10, 4), dtype=dtype, seed=0)
    tmodel = to_torch(model)
    X = rng.normal(size=(12, 6)) * 4  # reaches softplus' linear part and saturations
    y = rng.normal(size=(12, 4))
    tol = dict(rtol=1e-11, atol=1e-13) if dtype == "float64" else dict(rtol=2e-5, atol=2e-6)
    tX = tensor(torch, X.astype(dtype))
    tout = tmodel(tX)
    np.testing.assert_allclose(model.predict(X), tout.detach().numpy(), **tol)
    loss = st.losses.MSE()
    model.zero_grad()
    value = loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())
    tloss = torch.nn.functional.mse_loss(tout, tensor(torch, y.astype(dtype)))
    tloss.backward()
    assert value == pytest.approx(tloss.item(), rel=tol["rtol"])
    assert_dicts_close({n: p.grad for n, p in model.named_parameters()}, torch_grads(tmodel),
                       **tol)


def _torch_loss(torch, loss):
    nn = torch.nn
    if isinstance(loss, st.losses.MSE):
        return nn.MSELoss()
    if isinstance(loss, st.losses.L1):
        return nn.L1Loss()
    if isinstance(loss, st.losses.Huber):
        return nn.HuberLoss(delta=loss.delta)
    if isinstance(loss, st.losses.BinaryCrossEntropy):
        return nn.BCEWithLogitsLoss()
    return nn.CrossEntropyLoss(label_smoothing=loss.label_smoothing)


LOSSES = [st.losses.MSE(), st.losses.L1(), st.losses.Huber(), st.losses.Huber(0.25),
          st.losses.Huber(3.0), st.losses.BinaryCrossEntropy(), st.losses.CrossEntropy(),
          st.losses.CrossEntropy(label_smoothing=0.1), st.losses.CrossEntropy(label_smoothing=0.7)]


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_loss_values_and_gradients(loss, dtype, torch, rng):
    out = (rng.normal(size=(10, 5)) * 3).astype(dtype)
    if isinstance(loss, st.losses.CrossEntropy):
        y = rng.integers(0, 5, 10)
        ty = torch.tensor(y)
    else:
        y = (rng.uniform(size=out.shape) if isinstance(loss, st.losses.BinaryCrossEntropy)
             else rng.normal(size=out.shape) * 3).astype(dtype)
        ty = tensor(torch, y)
    tout = tensor(torch, out).requires_grad_()
    tvalue = _torch_loss(torch, loss)(tout, ty)
    tvalue.backward()
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == "float64" else dict(rtol=1e-5, atol=1e-7)
    assert loss.forward(out, y) == pytest.approx(tvalue.item(), **{"rel": tol["rtol"]})
    grad = loss.backward()
    assert grad.dtype == np.dtype(dtype)
    np.testing.assert_allclose(grad, tout.grad.numpy(), **tol)


def test_cross_entropy_extreme_logits_match_torch(torch):
    out = np.array([[1e4, -1e4, 0.0], [-3e3, 3e3, 2999.0]])
    y = np.array([2, 2])
    loss = st.losses.CrossEntropy(label_smoothing=0.05)
    tout = tensor(torch, out).requires_grad_()
    t = torch.nn.CrossEntropyLoss(label_smoothing=0.05)(tout, torch.tensor(y))
    t.backward()
    assert loss.forward(out, y) == pytest.approx(t.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), tout.grad.numpy(), atol=1e-15)


# -- optimizer trajectories ----------------------------------------------------------------------

OPTIMIZER_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.7, "dampening": 0.1, "weight_decay": 0.02}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.99)}),
    ("Adam", {"lr": 0.01, "eps": 1e-3}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.03, "betas": (0.5, 0.9), "eps": 1e-6, "weight_decay": 0.05,
              "amsgrad": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.2}),
    ("AdamW", {"lr": 0.02, "betas": (0.7, 0.95), "eps": 1e-5, "weight_decay": 0.1,
               "amsgrad": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9}),
    ("RMSprop", {"lr": 0.01, "eps": 1e-4}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.005, "centered": True}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.5, "centered": True}),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.003, "alpha": 0.8, "eps": 1e-6, "weight_decay": 0.05,
                 "momentum": 0.3, "centered": True}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5}),
    ("Adagrad", {"lr": 0.1, "eps": 1e-3}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.05, "weight_decay": 0.02,
                 "initial_accumulator_value": 0.1, "eps": 1e-6}),
    # maximize: gradient ascent, with weight decay and state as torch applies them
    ("SGD", {"lr": 0.01, "weight_decay": 0.05, "maximize": True}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01,
             "maximize": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    ("RMSprop", {"lr": 0.003, "momentum": 0.3, "centered": True, "weight_decay": 0.05,
                 "maximize": True}),
    ("Adagrad", {"lr": 0.05, "weight_decay": 0.02, "maximize": True}),
]
STEPS = 25


def _case_id(case):
    name, kw = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


def _problem(rng, classification):
    X = rng.normal(size=(40, 6))
    y = rng.integers(0, 4, 40) if classification else rng.normal(size=(40, 4))
    return X, y


def _run_torch(torch, model, name, kw, X, y, dtype, classification, steps=STEPS,
               lr_at=None, clip=None):
    tmodel = to_torch(model)
    topt = getattr(torch.optim, name)(tmodel.parameters(), **kw)
    tloss = torch.nn.CrossEntropyLoss() if classification else torch.nn.MSELoss()
    tX = tensor(torch, X.astype(dtype))
    ty = torch.tensor(y) if classification else tensor(torch, y.astype(dtype))
    values = []
    for t in range(steps):
        if lr_at is not None:
            for group in topt.param_groups:
                group["lr"] = lr_at(t)
        rows = slice(8 * (t % 5), 8 * (t % 5) + 8)
        topt.zero_grad()
        value = tloss(tmodel(tX[rows]), ty[rows])
        value.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(tmodel.parameters(), clip)
        topt.step()
        values.append(value.item())
    return torch_state(tmodel), values


def _run_steepest(model, name, kw, X, y, classification, fused, steps=STEPS, lr_at=None,
                  clip=None):
    opt = getattr(st.optim, name)(model.parameters(), **kw)
    loss = st.losses.CrossEntropy() if classification else st.losses.MSE()
    X = X.astype(model.dtype)
    values = []
    before = {k: v for k, v in model.state_dict().items()}
    for t in range(steps):
        if lr_at is not None:
            opt.lr = lr_at(t)
        rows = slice(8 * (t % 5), 8 * (t % 5) + 8)
        if fused:
            values.append(model.train_step(X[rows], y[rows], loss, opt, clip_grad_norm=clip))
        else:
            opt.zero_grad()
            out = model.forward(X[rows], training=True)
            values.append(loss.forward(out, y[rows]))
            model.backward(loss.backward())
            if clip is not None:
                st.clip_grad_norm_(model.parameters(), clip)
            opt.step()
    assert opt.steps == steps
    for k, v in model.state_dict().items():  # updated in place: still the same memory
        assert v is before[k] or np.shares_memory(v, before[k])
    return model.state_dict(), values


TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=_case_id)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fused", [True, False], ids=["train_step", "step_by_step"])
def test_optimizer_trajectory(case, dtype, fused, torch, rng):
    name, kw = case
    classification = name in ("SGD", "Adagrad")
    X, y = _problem(rng, classification)
    model = st.Sequential(st.Dense(6, 12), st.Tanh(), st.Dense(12, 4), dtype=dtype, seed=11)
    start = {k: v.copy() for k, v in model.state_dict().items()}
    tstate, tvalues = _run_torch(torch, model, name, kw, X, y, dtype, classification)
    state, values = _run_steepest(model, name, kw, X, y, classification, fused)
    tol = TOLERANCES[dtype]
    np.testing.assert_allclose(values, tvalues, rtol=tol["rtol"] * 10)
    assert_dicts_close(state, tstate, **tol)
    moved = max(np.abs(state[k] - start[k]).max() for k in start)
    assert moved > 1e-3  # the trajectory went somewhere


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_optimizer_defaults_match_torch(name, torch):
    model = st.Sequential(st.Dense(2, 2), seed=0)
    ours = getattr(st.optim, name)(model.parameters()).hyperparameters()
    group = getattr(torch.optim, name)(to_torch(model).parameters()).param_groups[0]
    for key, value in ours.items():
        assert key in group, key
        expected = tuple(group[key]) if key == "betas" else group[key]
        assert value == pytest.approx(expected) if not isinstance(value, bool) \
            else value == expected, key


def test_fit_matches_torch_loop(torch, rng):
    """fit(shuffle=False) runs the same mini-batch steps as a hand-written torch loop."""
    X, y = _problem(rng, True)
    model = st.Sequential(st.Dense(6, 12), st.ReLU(), st.Dense(12, 4), dtype="float64", seed=2)
    tstate, tvalues = _run_torch(torch, model, "Adam", {"lr": 0.01}, X, y, "float64", True,
                                 steps=20)
    opt = st.optim.Adam(model.parameters(), lr=0.01)
    history = model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=4,
                        batch_size=8, shuffle=False, verbose=0)
    assert_dicts_close(model.state_dict(), tstate, **TOLERANCES["float64"])
    np.testing.assert_allclose(history["loss"], np.mean(np.reshape(tvalues, (4, 5)), axis=1),
                               rtol=1e-10)


@pytest.mark.parametrize("fused", [True, False], ids=["train_step", "step_by_step"])
def test_lr_changed_between_steps(fused, torch, rng):
    X, y = _problem(rng, False)
    model = st.Sequential(st.Dense(6, 12), st.Tanh(), st.Dense(12, 4), dtype="float64", seed=5)
    kw = {"lr": 0.1, "momentum": 0.9}

    def lr_at(t):
        return 0.1 / (1 + t) if t % 3 else 0.02

    tstate, _ = _run_torch(torch, model, "SGD", kw, X, y, "float64", False, lr_at=lr_at)
    state, _ = _run_steepest(model, "SGD", kw, X, y, False, fused, lr_at=lr_at)
    assert_dicts_close(state, tstate, **TOLERANCES["float64"])


@pytest.mark.parametrize("fused", [True, False], ids=["train_step", "step_by_step"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gradient_clipping_matches_torch(fused, dtype, torch, rng):
    X, y = _problem(rng, False)
    y = y * 20  # large gradients: clipping is active at every step
    model = st.Sequential(st.Dense(6, 12), st.Tanh(), st.Dense(12, 4), dtype=dtype, seed=6)
    tstate, _ = _run_torch(torch, model, "SGD", {"lr": 0.01}, X, y, dtype, False, clip=0.5)
    state, _ = _run_steepest(model, "SGD", {"lr": 0.01}, X, y, False, fused, clip=0.5)
    assert_dicts_close(state, tstate, **TOLERANCES[dtype])


def test_clip_grad_norm_function(torch, rng):
    model = st.Sequential(st.Dense(6, 12), st.Tanh(), st.Dense(12, 4), dtype="float64", seed=6)
    tmodel = to_torch(model)
    X, y = rng.normal(size=(8, 6)), rng.normal(size=(8, 4)) * 10
    loss = st.losses.MSE()
    for max_norm in (0.1, 1.0, 1e6):
        for form in ("model", "params"):
            model.zero_grad()
            loss.forward(model.forward(X, training=True), y)
            model.backward(loss.backward())
            tmodel.zero_grad()
            torch.nn.functional.mse_loss(tmodel(tensor(torch, X)), tensor(torch, y)).backward()
            tnorm = torch.nn.utils.clip_grad_norm_(tmodel.parameters(), max_norm)
            target = model if form == "model" else model.parameters()
            norm = st.clip_grad_norm_(target, max_norm)
            assert norm == pytest.approx(tnorm.item(), rel=1e-12)
            assert_dicts_close({n: p.grad for n, p in model.named_parameters()},
                               torch_grads(tmodel), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("form", ["model", "params", "train_step"])
def test_clip_grad_norm_at_the_boundary_matches_torch(form, torch, rng):
    """torch scales by max_norm / (norm + 1e-6) clamped to 1: a gradient whose norm equals
    max_norm is still scaled (by 1 - 1e-6 / norm), and one just below it too."""
    model = st.Sequential(st.Dense(6, 12), st.Tanh(), st.Dense(12, 4), dtype="float64", seed=6)
    X, y = rng.normal(size=(8, 6)), rng.normal(size=(8, 4)) * 10
    loss = st.losses.MSE()
    start = model.flat_params().copy()
    loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())
    unclipped = model.flat_grads().copy()
    norm = float(np.linalg.norm(unclipped))
    for max_norm in (norm, norm + 5e-7, norm * (1 + 1e-6)):
        tmodel = to_torch(model)
        torch.nn.functional.mse_loss(tmodel(tensor(torch, X)), tensor(torch, y)).backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), max_norm)
        model.flat_grads()[...] = unclipped
        if form == "train_step":
            opt = st.optim.SGD(model.parameters(), lr=1.0)
            model.train_step(X, y, loss, opt, clip_grad_norm=max_norm)
            model.flat_params()[...] = start
        else:
            st.clip_grad_norm_(model if form == "model" else model.parameters(), max_norm)
        clipped = {n: p.grad for n, p in model.named_parameters()}
        assert_dicts_close(clipped, torch_grads(tmodel), rtol=1e-12, atol=1e-15)
        expected = min(1.0, max_norm / (norm + 1e-6))
        np.testing.assert_allclose(model.flat_grads(), unclipped * expected, rtol=1e-14)
        assert (expected < 1) == (max_norm < norm + 1e-6)
        model.zero_grad()
        loss.forward(model.forward(X, training=True), y)
        model.backward(loss.backward())


# -- weights both ways ---------------------------------------------------------------------------

def test_state_dict_keys_and_shapes_match_torch(torch):
    model = st.Sequential(st.Dense(5, 7), st.ReLU(), st.Dropout(0.2), st.Dense(7, 6, bias=False),
                          st.GELU(), st.Dense(6, 3), st.Softmax(), seed=0)
    tmodel = to_torch(model)
    ours = model.state_dict()
    theirs = tmodel.state_dict()
    assert list(ours) == list(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weights_from_torch_to_steepest(dtype, torch, rng):
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.SiLU(), torch.nn.Linear(8, 3))
    tmodel = tmodel.to(tdtype)
    model = st.Sequential(st.Dense(5, 8), st.SiLU(), st.Dense(8, 3), dtype=dtype, seed=99)
    model.load_state_dict(tmodel.state_dict())  # torch tensors accepted directly
    X = rng.normal(size=(4, 5)).astype(dtype)
    tol = TOLERANCES[dtype]
    np.testing.assert_allclose(model.predict(X), tmodel(tensor(torch, X)).detach().numpy(), **tol)
    for k, v in tmodel.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v.numpy())


def test_weights_from_steepest_to_torch(torch, rng):
    model = st.Sequential(st.Dense(5, 8), st.ELU(), st.Dense(8, 3), seed=3)
    opt = st.optim.Adam(model.parameters(), lr=0.05)
    X, y = rng.normal(size=(20, 5)), rng.integers(0, 3, 20)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=3, verbose=0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ELU(), torch.nn.Linear(8, 3))
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    np.testing.assert_allclose(tmodel(tensor(torch, X, torch.float32)).detach().numpy(),
                               model.predict(X), rtol=1e-5, atol=1e-6)


def test_torch_default_init_statistics(torch):
    """torch_default draws W and b from U(-1/sqrt(in), 1/sqrt(in)) like nn.Linear."""
    model = st.Sequential(st.Dense(400, 300), seed=0)
    bound = 1 / np.sqrt(400)
    w, b = model.state_dict()["0.weight"], model.state_dict()["0.bias"]
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)
    tw = torch.nn.Linear(400, 300).weight.detach().numpy()
    assert w.std() == pytest.approx(tw.std(), rel=0.03)


# -- learning-rate schedules ---------------------------------------------------------------------

def _schedule_pairs(torch):
    ts = torch.optim.lr_scheduler
    return {
        "step": (lambda o: st.schedules.StepLR(o, step_size=3, gamma=0.5),
                 lambda o: ts.StepLR(o, step_size=3, gamma=0.5)),
        "exponential": (lambda o: st.schedules.ExponentialLR(o, gamma=0.9),
                        lambda o: ts.ExponentialLR(o, gamma=0.9)),
        "cosine": (lambda o: st.schedules.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
                   lambda o: ts.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
        "warmup": (lambda o: st.schedules.LinearWarmup(o, warmup_epochs=5, start_factor=0.2),
                   lambda o: ts.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=5)),
    }


@pytest.mark.parametrize("kind", ["step", "exponential", "cosine", "warmup"])
def test_schedule_matches_torch(kind, torch):
    ours_f, theirs_f = _schedule_pairs(torch)[kind]
    model = st.Sequential(st.Dense(2, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    tparam = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([tparam], lr=0.1)
    ours, theirs = ours_f(opt), theirs_f(topt)
    lrs, tlrs = [], []
    for _ in range(18):
        lrs.append(opt.lr)
        tlrs.append(topt.param_groups[0]["lr"])
        topt.step()
        ours.step()
        theirs.step()
    np.testing.assert_allclose(lrs, tlrs, rtol=1e-12, atol=1e-15)
    assert len(set(np.round(lrs, 12))) > 2  # the schedule changed the lr


def test_reduce_lr_on_plateau_matches_torch(torch):
    model = st.Sequential(st.Dense(2, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    tparam = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([tparam], lr=0.1)
    ours = st.schedules.ReduceLROnPlateau(opt, factor=0.5, patience=2, threshold=0.01,
                                          min_lr=0.01)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, factor=0.5, patience=2,
                                                        threshold=0.01, min_lr=0.01)
    metrics = [1.0, 0.9, 0.8, 0.799, 0.798, 0.797, 0.796, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
               0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4]
    lrs, tlrs = [], []
    for m in metrics:
        ours.step(m)
        theirs.step(m)
        lrs.append(opt.lr)
        tlrs.append(topt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, tlrs, rtol=1e-12)
    assert min(lrs) == pytest.approx(0.01) and lrs[0] == 0.1


@pytest.mark.parametrize("kind", ["step", "exponential", "cosine", "warmup"])
def test_schedule_in_fit_matches_torch(kind, torch, rng):
    """As a fit callback the schedule steps after every epoch; history["lr"] is the lr each
    epoch ran with."""
    ours_f, theirs_f = _schedule_pairs(torch)[kind]
    model = st.Sequential(st.Dense(3, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    X, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
    history = model.fit(X, y, loss=st.losses.MSE(), optimizer=opt, epochs=12,
                        callbacks=[ours_f(opt)], verbose=0)
    tparam = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([tparam], lr=0.1)
    theirs = theirs_f(topt)
    tlrs = []
    for _ in range(12):
        tlrs.append(topt.param_groups[0]["lr"])
        topt.step()
        theirs.step()
    np.testing.assert_allclose(history["lr"], tlrs, rtol=1e-12, atol=1e-15)


def test_reduce_lr_on_plateau_in_fit_matches_torch(torch, rng):
    """In fit the scheduler reads the monitored value from the epoch's logs."""
    metrics = [1.0, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]

    class Score(st.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            logs["score"] = metrics[epoch]

    model = st.Sequential(st.Dense(3, 2), seed=0)
    opt = st.optim.Adam(model.parameters(), lr=0.1)
    sched = st.schedules.ReduceLROnPlateau(opt, monitor="score", factor=0.3, patience=1)
    X, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
    history = model.fit(X, y, loss=st.losses.MSE(), optimizer=opt, epochs=len(metrics),
                        callbacks=[Score(), sched], verbose=0)
    topt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, factor=0.3, patience=1)
    tlrs = []
    for m in metrics:
        tlrs.append(topt.param_groups[0]["lr"])
        topt.step()
        theirs.step(m)
    np.testing.assert_allclose(history["lr"], tlrs, rtol=1e-12)
    assert history["lr"][-1] < 0.1 * history["lr"][0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_losses_at_their_kinks_match_torch(dtype, torch):
    """L1 at out == y (torch's sign(0) = 0) and Huber at |out - y| == delta."""
    out = np.array([[0.5, -1.0, 2.0, 0.0]], dtype=dtype)
    y = np.array([[0.5, -1.0, 1.0, 1.0]], dtype=dtype)
    for loss, tloss in ((st.losses.L1(), torch.nn.L1Loss()),
                        (st.losses.Huber(1.0), torch.nn.HuberLoss(delta=1.0)),
                        (st.losses.MSE(), torch.nn.MSELoss())):
        tout = tensor(torch, out).requires_grad_()
        value = tloss(tout, tensor(torch, y))
        value.backward()
        assert loss.forward(out, y) == pytest.approx(value.item(), rel=1e-7)
        np.testing.assert_array_equal(loss.backward(), tout.grad.numpy())
