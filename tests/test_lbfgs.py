"""L-BFGS (st.optim.LBFGS): trajectories and state against torch.optim.LBFGS as the oracle (in
float64, and a first step in float32), with and without the strong-Wolfe line search; state_dict and pickling mid-run; the
arguments it refuses; fit and train_step refusing a closure-based optimizer."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import mlp, pickle_globals, to_torch

import steepest as st

CASES = [
    {},
    {"line_search_fn": "strong_wolfe"},
    {"lr": 0.3, "history_size": 3},
    {"line_search_fn": "strong_wolfe", "history_size": 2, "max_iter": 7},
    {"max_iter": 1},
    {"line_search_fn": "strong_wolfe", "max_iter": 4, "max_eval": 6},
    {"tolerance_change": 1e-4},  # stops a step early on the loss change
    {"tolerance_grad": 1e3},  # already optimal: no update at all
]
# step() calls; each is up to max_iter updates (20 by default: up to 60 updates in all). Much
# longer runs part from torch's by the last-bit differences of the two libraries' gradients,
# amplified as by any long iteration on a non-convex loss.
STEPS = 3


def _problem(rng):
    """A small regression whose minimum has moderate weights (noisy targets, more rows than
    parameters), so that trajectories stay well-conditioned for many updates."""
    model = mlp(5, 8, 2, activation=st.Tanh, dtype="float64", seed=3)
    X = rng.normal(size=(80, 5))
    y = np.tanh(X[:, :2] - X[:, 2:4]) + 0.3 * rng.normal(size=(80, 2))
    return model, X, y, st.losses.MSE()


def _torch_closure(torch, tmodel, topt, X, y):
    tX, ty = torch.tensor(X), torch.tensor(y)

    def closure():
        topt.zero_grad()
        value = torch.nn.functional.mse_loss(tmodel(tX), ty)
        value.backward()
        return value

    return closure


def _torch_params(tparams):
    return np.concatenate([p.detach().numpy().ravel() for p in tparams])


def _assert_state_matches_torch(state, tstate):
    """The state after the same updates; the history (differences of nearby gradients and
    parameters, and their dot products) keeps fewer correct digits than the parameters."""
    for k in ("func_evals", "n_iter"):
        assert state[k] == tstate[k], k
    tol = {"rtol": 1e-6, "atol": 1e-10}
    for k in ("t", "H_diag", "prev_loss", "ro", "d", "prev_flat_grad", "old_dirs", "old_stps"):
        theirs = tstate[k]
        if isinstance(theirs, list):
            theirs = np.array([np.asarray(v) for v in theirs]).reshape(np.shape(state[k]))
        np.testing.assert_allclose(state[k], np.asarray(theirs), **tol, err_msg=k)


@pytest.mark.parametrize("kw", CASES, ids=repr)
def test_trajectory_matches_torch(kw, torch, rng):
    model, X, y, loss = _problem(rng)
    tmodel = to_torch(model)
    opt = st.optim.LBFGS(model.parameters(), **kw)
    topt = torch.optim.LBFGS(tmodel.parameters(), **kw)
    tclosure = _torch_closure(torch, tmodel, topt, X, y)
    start = model.flat_params().copy()
    for _ in range(STEPS):
        value = opt.step(lambda: model.loss_and_grad(X, y, loss))
        tvalue = topt.step(tclosure)
        assert value == pytest.approx(tvalue.item(), rel=1e-10, abs=1e-13)
        np.testing.assert_allclose(model.flat_params(), _torch_params(tmodel.parameters()),
                                   rtol=1e-10, atol=1e-10)
    tstate = topt.state[next(iter(tmodel.parameters()))]
    if kw.get("tolerance_grad") == 1e3:
        assert opt.state_dict()["state"]["d"] is None and "d" not in tstate
        np.testing.assert_array_equal(model.flat_params(), start)
        assert opt.state["func_evals"] == tstate["func_evals"] == STEPS
        return
    assert opt.steps == tstate["n_iter"] >= STEPS
    _assert_state_matches_torch(opt.state_dict()["state"], tstate)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_float32_first_step_matches_torch(line_search_fn, torch, rng):
    """A float32 model against torch in float32: the first step's updates (five of them) agree
    to float32 accuracy (the two libraries' float32 gradients differ in their last bits, which
    the later updates amplify, so only the first few are compared)."""
    _, X, y, loss = _problem(rng)
    model = mlp(5, 8, 2, activation=st.Tanh, dtype="float32", seed=3)
    start = model.flat_params().copy()
    X, y = X.astype(np.float32), y.astype(np.float32)
    tmodel = to_torch(model)
    opt = st.optim.LBFGS(model.parameters(), line_search_fn=line_search_fn, max_iter=5)
    topt = torch.optim.LBFGS(tmodel.parameters(), line_search_fn=line_search_fn, max_iter=5)
    value = opt.step(lambda: model.loss_and_grad(X, y, loss))
    tvalue = topt.step(_torch_closure(torch, tmodel, topt, X, y))
    assert value == pytest.approx(tvalue.item(), rel=1e-5)
    assert model.flat_params().dtype == np.float32
    moved = np.abs(model.flat_params() - start).max()
    assert moved > 0.05  # five updates that move the weights far more than the tolerance
    np.testing.assert_allclose(model.flat_params(), _torch_params(tmodel.parameters()),
                               rtol=1e-5, atol=1e-6)
    assert opt.state["func_evals"] == topt.state[next(iter(tmodel.parameters()))]["func_evals"]


def test_last_layer_only_matches_torch(torch, rng):
    """The optimized parameters are a part of the flat buffer, flattened in params' order.
    (Short: in the last layer alone the loss is an ill-conditioned quadratic whose flat valley
    amplifies last-bit differences tenfold per update after about ten.)"""
    model, X, y, loss = _problem(rng)
    tmodel = to_torch(model)
    tparams = list(tmodel.parameters())[2:]
    opt = st.optim.LBFGS(model.parameters()[2:], line_search_fn="strong_wolfe", max_iter=5)
    topt = torch.optim.LBFGS(tparams, line_search_fn="strong_wolfe", max_iter=5)
    first = model.parameters()[0].data.copy()
    tclosure = _torch_closure(torch, tmodel, topt, X, y)
    for _ in range(2):
        opt.step(lambda: model.loss_and_grad(X, y, loss))
        topt.step(tclosure)
    assert opt.steps == 10
    np.testing.assert_allclose(np.concatenate([p.data.ravel() for p in opt.params]),
                               _torch_params(tparams), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(model.parameters()[0].data, first)


def test_scheduler_changes_lr_as_torch(torch, rng):
    model, X, y, loss = _problem(rng)
    tmodel = to_torch(model)
    opt = st.optim.LBFGS(model.parameters(), lr=0.8, max_iter=3)
    topt = torch.optim.LBFGS(tmodel.parameters(), lr=0.8, max_iter=3)
    sched = st.schedules.StepLR(opt, step_size=2, gamma=0.5)
    tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=2, gamma=0.5)
    tclosure = _torch_closure(torch, tmodel, topt, X, y)
    for _ in range(5):
        opt.step(lambda: model.loss_and_grad(X, y, loss))
        topt.step(tclosure)
        sched.step()
        tsched.step()
        assert opt.lr == topt.param_groups[0]["lr"]
    np.testing.assert_allclose(model.flat_params(), _torch_params(tmodel.parameters()),
                               rtol=1e-10, atol=1e-10)


def _run(model, opt, X, y, loss, steps):
    return [opt.step(lambda: model.loss_and_grad(X, y, loss)) for _ in range(steps)]


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_state_dict_mid_run_continues_identically(line_search_fn, dtype, rng):
    _, X, y, loss = _problem(rng)
    model = mlp(5, 8, 2, activation=st.Tanh, dtype=dtype, seed=3)
    X, y = X.astype(dtype), y.astype(dtype)
    kw = {"lr": 0.5, "history_size": 3, "max_iter": 5, "line_search_fn": line_search_fn}
    opt = st.optim.LBFGS(model.parameters(), **kw)
    _run(model, opt, X, y, loss, 3)
    saved_model, saved_opt = model.state_dict(copy=True), opt.state_dict()
    assert len(saved_opt["state"]["ro"]) == 3  # the history is full: pairs were dropped
    expected = _run(model, opt, X, y, loss, 3)

    other = mlp(5, 8, 2, activation=st.Tanh, dtype=dtype, seed=99)
    other.load_state_dict(saved_model)
    other_opt = st.optim.LBFGS(other.parameters(), **{**kw, "lr": 0.1})  # lr is restored
    other_opt.load_state_dict(saved_opt)
    assert other_opt.lr == 0.5 and other_opt.steps == saved_opt["steps"]
    assert _run(other, other_opt, X, y, loss, 3) == expected
    np.testing.assert_array_equal(other.flat_params(), model.flat_params())

    stream = pickle.dumps((other, other_opt))  # pickled mid-run too
    assert pickle_globals(stream) == {("steepest.optim", "LBFGS"),
                                      ("steepest.model", "Sequential")}
    model2, opt2 = pickle.loads(stream)
    assert opt2.model is model2 and repr(opt2) == repr(other_opt)
    assert _run(model2, opt2, X, y, loss, 2) == _run(other, other_opt, X, y, loss, 2)
    np.testing.assert_array_equal(model2.flat_params(), other.flat_params())


def test_pickle_before_any_step(rng):
    model, X, y, loss = _problem(rng)
    opt = st.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")
    model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    assert opt2.state_dict()["state"]["d"] is None and opt2.steps == 0
    assert _run(model2, opt2, X, y, loss, 2) == _run(model, opt, X, y, loss, 2)


def test_load_state_dict_refuses_mismatches(rng):
    model, X, y, loss = _problem(rng)
    opt = st.optim.LBFGS(model.parameters(), history_size=4)
    _run(model, opt, X, y, loss, 2)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="history_size"):
        st.optim.LBFGS(model.parameters(), history_size=5).load_state_dict(state)
    with pytest.raises(ValueError, match="state is for 'SGD'"):
        opt.load_state_dict({**state, "type": "SGD"})
    short = {**state, "state": {**state["state"], "d": state["state"]["d"][:-1]}}
    with pytest.raises(ValueError, match=r"state\['d'\] has shape"):
        opt.load_state_dict(short)
    uneven = {**state, "state": {**state["state"], "ro": state["state"]["ro"][:-1]}}
    with pytest.raises(ValueError, match="history"):
        opt.load_state_dict(uneven)
    with pytest.raises(ValueError, match="do not match"):
        opt.load_state_dict({**state, "state": {"d": state["state"]["d"]}})
    with pytest.raises(ValueError, match="state is for 'LBFGS'"):
        st.optim.SGD(model.parameters()).load_state_dict(state)
    after = opt.state_dict()  # the refused loads changed nothing
    np.testing.assert_array_equal(after["state"]["d"], state["state"]["d"])


@pytest.mark.parametrize("kw, error, name", [
    ({"lr": -1.0}, ValueError, "lr"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"max_iter": 2.5}, TypeError, "max_iter"),
    ({"max_eval": 0}, ValueError, "max_eval"),
    ({"tolerance_grad": -1e-7}, ValueError, "tolerance_grad"),
    ({"tolerance_change": float("nan")}, ValueError, "tolerance_change"),
    ({"history_size": 0}, ValueError, "history_size"),
    ({"line_search_fn": "backtracking"}, ValueError, "line_search_fn"),
])
def test_bad_arguments(kw, error, name):
    model = mlp(3, 2)
    with pytest.raises(error, match=name):
        st.optim.LBFGS(model.parameters(), **kw)


def test_defaults_match_torch(torch):
    model = mlp(3, 2)
    topt = torch.optim.LBFGS(to_torch(model).parameters())
    mine = st.optim.LBFGS(model.parameters()).hyperparameters()
    theirs = {k: topt.defaults[k] for k in mine}
    assert mine == theirs


def test_step_needs_a_closure(rng):
    model, X, y, loss = _problem(rng)
    opt = st.optim.LBFGS(model.parameters())
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    with pytest.raises(TypeError, match="closure"):
        opt.step(1.0)


def test_closure_error_leaves_parameters_at_the_line_search_start(rng):
    model, X, y, loss = _problem(rng)
    opt = st.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:  # the line search's first trial point
            raise RuntimeError("data source failed")
        return model.loss_and_grad(X, y, loss)

    start = model.flat_params().copy()
    with pytest.raises(RuntimeError, match="data source"):
        opt.step(closure)
    np.testing.assert_array_equal(model.flat_params(), start)


def test_fit_and_train_step_refuse_it(rng):
    model, X, y, loss = _problem(rng)
    opt = st.optim.LBFGS(model.parameters())
    with pytest.raises(TypeError, match=r"step\(closure\)"):
        model.fit(X, y, loss=loss, optimizer=opt, verbose=0)
    with pytest.raises(TypeError, match=r"step\(closure\)"):
        model.train_step(X, y, loss, opt)


def test_full_batch_training_reaches_a_minimum(rng):
    """Full-batch L-BFGS with the line search fits a small smooth regression in 3 steps."""
    model = mlp(3, 6, 1, dtype="float64", seed=1)
    X = rng.normal(size=(30, 3))
    y = np.sin(X.sum(axis=1, keepdims=True))
    loss = st.losses.MSE()
    opt = st.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe", max_iter=50)
    first = _run(model, opt, X, y, loss, 3)[0]
    assert model.loss_and_grad(X, y, loss) < 1e-3 * first
