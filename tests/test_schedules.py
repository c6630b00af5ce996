"""Learning-rate schedules against torch.optim.lr_scheduler step by step: each scheduler, any
order of schedulers on one optimizer (ReduceLROnPlateau among them), SequentialLR,
ChainedScheduler, OneCycleLR's momentum, per-batch stepping in fit, and bitwise resume."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import steepest as st
from conftest import to_torch

pytest.importorskip("torch")
sched = st.schedules


MODEL = st.Sequential(st.Dense(2, 2), dtype="float64", seed=0)  # what the optimizers update


def optimizers(torch, name="SGD", **kw):
    """A steepest optimizer and a torch optimizer of one dummy parameter, same settings."""
    ours = getattr(st.optim, name)(MODEL.parameters(), **kw)
    theirs = getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(1))], **kw)
    return ours, theirs


def momentum_of(opt):
    """The momentum or beta1 of a steepest or torch optimizer."""
    if hasattr(opt, "param_groups"):
        group = opt.param_groups[0]
        return group["betas"][0] if "betas" in group else group.get("momentum", np.nan)
    return opt.betas[0] if isinstance(opt, st.optim.Adam) else getattr(opt, "momentum", np.nan)


def lr_of(opt):
    return opt.param_groups[0]["lr"] if hasattr(opt, "param_groups") else opt.lr


def run_both(torch, make_ours, make_theirs, steps, name="SGD", metrics=None, **kw):
    """Steps both schedulers (lists, stepped in order; a ReduceLROnPlateau gets metrics[t]);
    returns the (lr, momentum) sequences of both, before each step and after the last."""
    ours_opt, theirs_opt = optimizers(torch, name, **kw)
    ours, theirs = make_ours(ours_opt), make_theirs(theirs_opt)
    seqs = ([], [])
    for t in range(steps + 1):
        for seq, opt in zip(seqs, (ours_opt, theirs_opt)):
            seq.append((lr_of(opt), momentum_of(opt)))
        if t == steps:
            break
        theirs_opt.step()  # torch wants optimizer.step() before scheduler.step()
        for s in ours:
            s.step(metrics[t]) if isinstance(s, sched.ReduceLROnPlateau) else s.step()
        for s in theirs:
            plateau = isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau)
            s.step(metrics[t]) if plateau else s.step()
    return np.array(seqs[0]), np.array(seqs[1])


def single(torch, name, *args, **kw):
    """One scheduler class with the same arguments in both libraries."""
    ts = torch.optim.lr_scheduler
    return (lambda o: [getattr(sched, name)(o, *args, **kw)],
            lambda o: [getattr(ts, name)(o, *args, **kw)])


SINGLE = [
    ("StepLR", (3,), {"gamma": 0.5}),
    ("ExponentialLR", (0.9,), {}),
    ("ConstantLR", (), {"factor": 0.5, "total_iters": 4}),
    ("ConstantLR", (), {}),
    ("LinearLR", (), {"start_factor": 0.25, "end_factor": 0.75, "total_iters": 6}),
    ("LinearLR", (), {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 10}),
    ("LinearLR", (), {}),
    ("PolynomialLR", (), {"total_iters": 8, "power": 2.0}),
    ("PolynomialLR", (), {}),
    ("CosineAnnealingLR", (7,), {"eta_min": 0.001}),  # 40 steps: up and down again
    ("CosineAnnealingLR", (4,), {}),
    ("CosineAnnealingWarmRestarts", (5,), {"T_mult": 2, "eta_min": 0.001}),
    ("CosineAnnealingWarmRestarts", (3,), {}),
    ("OneCycleLR", (1.0,), {"total_steps": 40}),
    ("OneCycleLR", (0.5,), {"epochs": 5, "steps_per_epoch": 8, "anneal_strategy": "linear",
                            "pct_start": 0.25, "base_momentum": 0.8, "max_momentum": 0.9}),
    ("OneCycleLR", (0.3,), {"total_steps": 40, "three_phase": True, "div_factor": 10.0,
                            "final_div_factor": 100.0}),
    ("OneCycleLR", (0.3,), {"total_steps": 40, "cycle_momentum": False}),
]


@pytest.mark.parametrize("name, args, kw", SINGLE, ids=lambda v: str(v))
@pytest.mark.parametrize("optimizer", [("SGD", {"lr": 0.1, "momentum": 0.9}),
                                       ("Adam", {"lr": 0.01})], ids=["SGD", "Adam"])
def test_each_scheduler_matches_torch(name, args, kw, optimizer, torch):
    ours, theirs = run_both(torch, *single(torch, name, *args, **kw), 40, optimizer[0],
                            **optimizer[1])
    if name == "OneCycleLR":  # stepped total_steps times, torch's linear lr goes below 0
        theirs[-1, 0] = max(theirs[-1, 0], 0.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-16)
    assert len(set(np.round(ours[:, 0], 12))) > 1  # the lr moved


def test_existing_schedules_keep_their_values():
    """StepLR, ExponentialLR, CosineAnnealingLR and LinearWarmup (now chainable) give the
    closed-form values they gave before, to rounding."""
    cases = [(lambda o: sched.StepLR(o, 3, 0.5), lambda e: 0.1 * 0.5 ** (e // 3)),
             (lambda o: sched.ExponentialLR(o, 0.9), lambda e: 0.1 * 0.9 ** e),
             (lambda o: sched.CosineAnnealingLR(o, 10, 0.001),
              lambda e: 0.001 + (0.1 - 0.001) * (1 + np.cos(np.pi * e / 10)) / 2),
             (lambda o: sched.LinearWarmup(o, 5, 0.2),
              lambda e: 0.1 * (0.2 + 0.8 * min(e, 5) / 5))]
    for make, closed in cases:
        opt = st.optim.SGD(MODEL.parameters(), lr=0.1)
        s = make(opt)
        for epoch in range(25):
            assert opt.lr == pytest.approx(closed(epoch), rel=1e-13, abs=1e-17)
            s.step()


CHAIN = {
    "step": (lambda o: sched.StepLR(o, 4, 0.3),
             lambda t, o: t.StepLR(o, 4, 0.3)),
    "exponential": (lambda o: sched.ExponentialLR(o, 0.9),
                    lambda t, o: t.ExponentialLR(o, 0.9)),
    "plateau": (lambda o: sched.ReduceLROnPlateau(o, factor=0.5, patience=1),
                lambda t, o: t.ReduceLROnPlateau(o, factor=0.5, patience=1)),
    "constant": (lambda o: sched.ConstantLR(o, 0.5, 3),
                 lambda t, o: t.ConstantLR(o, 0.5, 3)),
    "linear": (lambda o: sched.LinearLR(o, 0.2, 1.0, 5),
               lambda t, o: t.LinearLR(o, 0.2, 1.0, 5)),
    "cosine": (lambda o: sched.CosineAnnealingLR(o, 6, 0.001),
               lambda t, o: t.CosineAnnealingLR(o, 6, 0.001)),
    "polynomial": (lambda o: sched.PolynomialLR(o, 12, 1.5),
                   lambda t, o: t.PolynomialLR(o, 12, 1.5)),
}
METRICS = [1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.6, 0.6,
           0.6, 0.6, 0.6, 0.6]


def chain(torch, names):
    ts = torch.optim.lr_scheduler
    return (lambda o: [CHAIN[n][0](o) for n in names],
            lambda o: [CHAIN[n][1](ts, o) for n in names])


@pytest.mark.parametrize("names", list(itertools.permutations(["step", "exponential",
                                                                "plateau"])), ids="+".join)
def test_chained_schedulers_compose_as_torch_in_any_order(names, torch):
    """The issue's case: StepLR, ExponentialLR and ReduceLROnPlateau on one Adagrad, each
    multiplying the current lr (torch 0.0009 after step 14 where closed forms gave 0.009)."""
    ours, theirs = run_both(torch, *chain(torch, names), 20, "Adagrad", metrics=METRICS,
                            lr=0.1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)
    step14 = 0.1 * 0.3 ** 3 * 0.9 ** 14 * 0.5 ** 4  # all three factors, multiplied
    assert ours[14, 0] == pytest.approx(step14, rel=1e-12)


@pytest.mark.parametrize("names", [("linear", "cosine"), ("cosine", "linear"),
                                   ("constant", "exponential", "polynomial"),
                                   ("polynomial", "constant", "step", "plateau"),
                                   ("plateau", "linear", "exponential")], ids="+".join)
def test_other_chains_match_torch(names, torch):
    ours, theirs = run_both(torch, *chain(torch, names), 20, "SGD", metrics=METRICS, lr=0.1,
                            momentum=0.5)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-18)


SEQUENCES = [
    (("linear", "cosine"), [5]),
    (("constant", "exponential", "step"), [3, 8]),
    (("exponential", "linear", "polynomial"), [0, 6]),  # a milestone at 0
    (("cosine", "constant"), [9]),
]


@pytest.mark.parametrize("names, milestones", SEQUENCES, ids=lambda v: str(v))
def test_sequential_lr_matches_torch(names, milestones, torch):
    ts = torch.optim.lr_scheduler

    def ours(o):
        return [sched.SequentialLR(o, [CHAIN[n][0](o) for n in names], milestones)]

    def theirs(o):
        return [ts.SequentialLR(o, [CHAIN[n][1](ts, o) for n in names], milestones)]

    a, b = run_both(torch, ours, theirs, 20, "SGD", lr=0.1)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-18)


def test_sequential_lr_of_warm_restarts_and_one_cycle_matches_torch(torch):
    ts = torch.optim.lr_scheduler

    def ours(o):
        return [sched.SequentialLR(o, [sched.CosineAnnealingWarmRestarts(o, 3, 2),
                                       sched.OneCycleLR(o, 0.5, total_steps=12)], [7])]

    def theirs(o):
        return [ts.SequentialLR(o, [ts.CosineAnnealingWarmRestarts(o, 3, 2),
                                    ts.OneCycleLR(o, 0.5, total_steps=12)], [7])]

    a, b = run_both(torch, ours, theirs, 18, "SGD", lr=0.1, momentum=0.9)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_chained_scheduler_matches_torch(torch):
    ts = torch.optim.lr_scheduler
    names = ("exponential", "step", "constant", "linear")

    def ours(o):
        return [sched.ChainedScheduler([CHAIN[n][0](o) for n in names])]

    def theirs(o):
        return [ts.ChainedScheduler([CHAIN[n][1](ts, o) for n in names])]

    a, b = run_both(torch, ours, theirs, 15, "RMSprop", lr=0.01)
    np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("kw", [{"cooldown": 2}, {"threshold_mode": "abs", "threshold": 0.05},
                                {"mode": "max", "patience": 0},
                                {"mode": "max", "threshold_mode": "abs", "threshold": 0.01},
                                {"eps": 0.005, "patience": 0, "factor": 0.9},
                                {"min_lr": 0.03, "patience": 0, "factor": 0.7}], ids=str)
def test_reduce_lr_on_plateau_options_match_torch(kw, torch):
    metrics = list(np.sin(np.arange(30) / 3) + np.arange(30) * 0.01)
    ts = torch.optim.lr_scheduler
    a, b = run_both(torch, lambda o: [sched.ReduceLROnPlateau(o, **kw)],
                    lambda o: [ts.ReduceLROnPlateau(o, **kw)], 30, "SGD", metrics=metrics,
                    lr=0.1)
    np.testing.assert_allclose(a, b, rtol=1e-14)
    assert a[-1, 0] < 0.1


def test_warm_restarts_fractional_epochs_match_torch(torch):
    ours_opt, theirs_opt = optimizers(torch, lr=0.1)
    ours = sched.CosineAnnealingWarmRestarts(ours_opt, T_0=2, T_mult=3, eta_min=0.01)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(theirs_opt, T_0=2, T_mult=3,
                                                                  eta_min=0.01)
    for epoch in np.arange(0, 12, 0.25):
        theirs_opt.step()
        ours.step(float(epoch))
        theirs.step(float(epoch))
        assert ours_opt.lr == pytest.approx(theirs_opt.param_groups[0]["lr"], rel=1e-14)


# -- resume and fit ------------------------------------------------------------------------------

ALL = [lambda o: sched.StepLR(o, 3, 0.5), lambda o: sched.ExponentialLR(o, 0.9),
       lambda o: sched.ConstantLR(o, 0.5, 4), lambda o: sched.LinearLR(o, 0.3, 0.8, 6),
       lambda o: sched.LinearWarmup(o, 4), lambda o: sched.PolynomialLR(o, 9, 2.0),
       lambda o: sched.CosineAnnealingLR(o, 5, 0.001),
       lambda o: sched.CosineAnnealingWarmRestarts(o, 3, 2, 0.001),
       lambda o: sched.OneCycleLR(o, 0.4, total_steps=30, three_phase=True),
       lambda o: sched.ReduceLROnPlateau(o, factor=0.5, patience=1, cooldown=1),
       lambda o: sched.SequentialLR(o, [sched.LinearLR(o, 0.5, 1.0, 3),
                                        sched.CosineAnnealingWarmRestarts(o, 4)], [5]),
       lambda o: sched.ChainedScheduler([sched.StepLR(o, 2, 0.8), sched.ExponentialLR(o, 0.95)])]


@pytest.mark.parametrize("make", ALL, ids=range(len(ALL)))
def test_state_dict_resumes_bitwise(make):
    def fresh():
        opt = st.optim.SGD(MODEL.parameters(), lr=0.1, momentum=0.9)
        return opt, make(opt)

    def advance(opt, s, steps, start):
        out = []
        for t in range(start, start + steps):
            s.step(METRICS[t % len(METRICS)]) if isinstance(s, sched.ReduceLROnPlateau) \
                else s.step()
            out.append((opt.lr, opt.momentum))
        return out

    opt, s = fresh()
    whole = advance(opt, s, 24, 0)
    opt, s = fresh()
    first = advance(opt, s, 11, 0)
    state, opt_state = s.state_dict(), opt.state_dict()
    opt, s = fresh()  # a new run: its constructor changed lr and momentum again
    opt.load_state_dict(opt_state)
    s.load_state_dict(state)
    assert first + advance(opt, s, 13, 11) == whole  # bitwise


def test_momentum_changes_between_steps_but_not_from_zero():
    params = MODEL.parameters()
    opt = st.optim.SGD(params, lr=0.1, momentum=0.9)
    opt.momentum = 0.5
    assert opt.hyperparameters()["momentum"] == 0.5
    with pytest.raises(ValueError, match="momentum"):
        opt.momentum = 0.0
    with pytest.raises(ValueError, match="momentum"):
        st.optim.RMSprop(params).momentum = 0.9
    adam = st.optim.Adam(params)
    adam.betas = (0.8, 0.99)
    assert adam.hyperparameters()["betas"] == (0.8, 0.99)
    with pytest.raises(ValueError, match="cycle_momentum"):
        sched.OneCycleLR(st.optim.SGD(params, lr=0.1), 1.0, total_steps=10)
    with pytest.raises(ValueError, match="cycle_momentum"):
        sched.OneCycleLR(st.optim.Adagrad(params), 1.0, total_steps=10)
    sched.OneCycleLR(st.optim.Adagrad(params), 1.0, total_steps=10, cycle_momentum=False)


def test_one_cycle_in_fit_matches_a_torch_loop(torch, rng):
    """OneCycleLR steps after every batch in fit, momentum included: the weights follow a
    torch loop that calls scheduler.step() after each optimizer.step()."""
    X, y = rng.normal(size=(48, 5)), rng.integers(0, 3, 48)
    model = st.Sequential(st.Dense(5, 8), st.Tanh(), st.Dense(8, 3), dtype="float64", seed=1)
    tmodel = to_torch(model)
    opt = st.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    epochs, batch = 4, 16
    one_cycle = sched.OneCycleLR(opt, 0.5, epochs=epochs, steps_per_epoch=3)
    history = model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=epochs,
                        batch_size=batch, shuffle=False, callbacks=[one_cycle], verbose=0)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, 0.5, epochs=epochs, steps_per_epoch=3)
    tX, ty = torch.tensor(X), torch.tensor(y)
    lrs = []
    for _ in range(epochs):
        lrs.append(topt.param_groups[0]["lr"])
        for i in range(0, 48, batch):
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tmodel(tX[i:i + batch]), ty[i:i + batch]).backward()
            topt.step()
            tsched.step()
    np.testing.assert_allclose(history["lr"], lrs, rtol=1e-14)
    assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-14)
    assert opt.momentum == pytest.approx(topt.param_groups[0]["momentum"], rel=1e-14)
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-10, atol=1e-12)


def test_per_batch_attribute_steps_any_scheduler_after_each_batch(rng):
    X, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    model = st.Sequential(st.Dense(3, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    cosine = sched.CosineAnnealingLR(opt, T_max=20)
    cosine.per_batch = True
    model.fit(X, y, loss=st.losses.MSE(), optimizer=opt, epochs=3, batch_size=8,
              callbacks=[cosine], verbose=0)
    assert cosine.last_epoch == 15  # 3 epochs of 5 batches
    assert opt.lr == pytest.approx(0.1 * (1 + np.cos(np.pi * 15 / 20)) / 2, rel=1e-13)


def test_a_failing_batch_callback_stops_fit_after_its_step(rng):
    class Boom(st.callbacks.Callback):
        def on_batch_end(self, batch, logs):
            assert np.isfinite(logs["loss"])
            if batch == 2:
                raise RuntimeError("boom at batch 2")

    X, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    model = st.Sequential(st.Dense(3, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    assert Boom().wants_batches() and not st.callbacks.EarlyStopping().wants_batches()
    with pytest.raises(RuntimeError, match="boom at batch 2"):
        model.fit(X, y, loss=st.losses.MSE(), optimizer=opt, epochs=2, batch_size=8,
                  callbacks=[Boom()], verbose=0)
    assert opt.steps == 3  # the model is as after the step the callback followed


def test_one_cycle_checkpoint_resume_is_bitwise(tmp_path, rng):
    """fit(checkpoint=...) with a per-batch OneCycleLR and Adam (beta1 cycles): a run
    interrupted after 2 epochs and resumed ends with bitwise the weights of a whole run."""
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)

    def run(epochs, path):
        model = st.Sequential(st.Dense(4, 6), st.ReLU(), st.Dense(6, 3), seed=3)
        opt = st.optim.Adam(model.parameters(), lr=0.01)
        one_cycle = sched.OneCycleLR(opt, 0.05, epochs=4, steps_per_epoch=4)
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=epochs,
                  batch_size=8, callbacks=[one_cycle], checkpoint=path, verbose=0)
        return model.flat_params().copy(), opt.betas, opt.lr

    whole = run(4, tmp_path / "a.ckpt")
    run(2, tmp_path / "b.ckpt")
    resumed = run(4, tmp_path / "b.ckpt")
    np.testing.assert_array_equal(resumed[0], whole[0])
    assert resumed[1:] == whole[1:]
