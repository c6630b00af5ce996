"""Training never loses work: divergence, checkpoint/resume after a hard kill, Ctrl-C."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import steepest as st
from conftest import CrashAtEpochEnd


def _regression(n=200, scale=1e3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 10)), rng.normal(size=(n, 1)) * scale


def _all_finite(model, opt):
    return np.isfinite(model.flat_params()).all() and all(
        np.isfinite(v).all() for v in opt.state_buffers().values())


@pytest.mark.parametrize("make_opt", [
    lambda p: st.optim.SGD(p, lr=10.0, momentum=0.9),
    lambda p: st.optim.Adam(p, lr=1e20),  # Adam moves each weight by about lr per step
    lambda p: st.optim.RMSprop(p, lr=1e20),  # so does RMSprop
])
def test_fit_divergence_raises_and_keeps_last_finite_step(make_opt):
    X, y = _regression()
    model = st.Sequential(st.Dense(10, 64), st.ReLU(), st.Dense(64, 1), seed=0)
    opt = make_opt(model.parameters())
    with pytest.raises(st.TrainingDiverged) as info:
        model.fit(X, y, loss=st.losses.MSE(), optimizer=opt, epochs=200, batch_size=16,
                  verbose=0)
    err = info.value
    assert isinstance(err, ArithmeticError)
    assert err.epoch is not None and err.step is not None
    assert err.cause in ("non-finite loss", "non-finite gradient")
    assert _all_finite(model, opt)


def test_fit_divergence_from_bad_targets_inside_the_data_is_refused_up_front():
    X, y = _regression()
    y[5, 0] = np.inf
    model = st.Sequential(st.Dense(10, 1), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    before = model.flat_params().copy()
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        model.fit(X, y, loss=st.losses.MSE(), optimizer=opt, epochs=1, verbose=0)
    np.testing.assert_array_equal(before, model.flat_params())


def test_train_step_divergence_leaves_parameters_untouched():
    X, y = _regression(scale=1e30)
    model = st.Sequential(st.Dense(10, 8), st.Tanh(), st.Dense(8, 1), dtype="float32", seed=0)
    opt = st.optim.Adam(model.parameters())
    before = model.flat_params().copy()
    with pytest.raises(st.TrainingDiverged, match="non-finite"):
        model.train_step(X, y, st.losses.MSE(), opt)  # (1e30)^2 overflows float32
    np.testing.assert_array_equal(before, model.flat_params())
    assert opt.steps == 0


def test_step_api_guard_refuses_non_finite_gradient_and_overflowing_update():
    X, y = _regression()
    model = st.Sequential(st.Dense(10, 4), st.Dense(4, 1), seed=0)
    loss = st.losses.MSE()
    opt = st.optim.SGD(model.parameters(), lr=1e37)
    loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())
    before = model.flat_params().copy()
    with pytest.raises(st.TrainingDiverged, match="overflow"):
        opt.step()  # lr * grad exceeds float32's range
    np.testing.assert_array_equal(before, model.flat_params())
    assert opt.steps == 0
    model.flat_grads()[0] = np.nan
    with pytest.raises(st.TrainingDiverged, match="non-finite gradient"):
        opt.step()
    np.testing.assert_array_equal(before, model.flat_params())


def test_fit_overflowing_update_restores_the_epoch_start():
    X, y = _regression()  # gradients ~1e3: lr * grad overflows float32 on the first update
    model = st.Sequential(st.Dense(10, 1), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=1e38)
    before = model.flat_params().copy()
    with pytest.raises(st.TrainingDiverged):
        model.fit(X, y, loss=st.losses.MSE(), optimizer=opt, epochs=3, batch_size=50,
                  verbose=0)
    assert _all_finite(model, opt)
    np.testing.assert_array_equal(before, model.flat_params())


TRAIN_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import steepest as st

    path, out, kill_at, how = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12)); y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)

    class Killer(st.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == kill_at:
                if how == "exit":
                    os._exit(3)
                os.kill(os.getpid(), signal.SIGKILL)

    model = st.Sequential(st.Dense(12, 32), st.ReLU(), st.Dropout(0.3), st.Dense(32, 2),
                          seed=3)
    opt = st.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    callbacks = [st.schedules.StepLR(opt, step_size=2, gamma=0.5),
                 st.callbacks.EarlyStopping(monitor="loss", patience=50), Killer()]
    history = model.fit(X, y, loss=st.losses.CrossEntropy(label_smoothing=0.1), optimizer=opt,
                        epochs=7, batch_size=32, callbacks=callbacks, checkpoint=path,
                        verbose=0)
    np.savez(out, params=model.flat_params(), loss=np.array(history["loss"]),
             lr=np.array(history["lr"]))
""")


def _run(tmp_path, ckpt, out, kill_at, how="exit"):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    return subprocess.run([sys.executable, str(script), str(ckpt), str(out), str(kill_at), how],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how,kill_at", [("exit", 0), ("kill", 3), ("exit", 5)])
def test_killed_run_resumes_to_bitwise_identical_weights(tmp_path, how, kill_at):
    ref = _run(tmp_path, tmp_path / "ref.ckpt", tmp_path / "ref.npz", kill_at=-1)
    assert ref.returncode == 0, ref.stderr
    killed = _run(tmp_path, tmp_path / "run.ckpt", tmp_path / "run.npz", kill_at, how)
    assert killed.returncode != 0 and not (tmp_path / "run.npz").exists()
    resumed = _run(tmp_path, tmp_path / "run.ckpt", tmp_path / "run.npz", kill_at=-1)
    assert resumed.returncode == 0, resumed.stderr
    a, b = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "run.npz")
    np.testing.assert_array_equal(a["params"], b["params"])
    np.testing.assert_array_equal(a["loss"], b["loss"])
    np.testing.assert_array_equal(a["lr"], b["lr"])
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_checkpoint_of_another_run_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    path = tmp_path / "run.ckpt"

    def fit(batch_size, X=X, layers=(st.Dense(4, 3),), optimizer=st.optim.Adam,
            loss=st.losses.CrossEntropy()):
        model = st.Sequential(*layers, seed=0)
        opt = optimizer(model.parameters())
        return model.fit(X, y, loss=loss, optimizer=opt, epochs=2, batch_size=batch_size,
                         checkpoint=path, verbose=0)

    fit(10)
    with pytest.raises(ValueError, match="different run.*batch_size"):
        fit(20)
    with pytest.raises(ValueError, match="different run.*data"):
        fit(10, X=X + 1)
    with pytest.raises(ValueError, match="different run.*layers"):
        fit(10, layers=(st.Dense(4, 5), st.ReLU(), st.Dense(5, 3)))
    with pytest.raises(ValueError, match="different run.*optimizer"):
        fit(10, optimizer=st.optim.AdamW)
    with pytest.raises(ValueError, match="different run.*loss"):
        fit(10, loss=st.losses.CrossEntropy(label_smoothing=0.1))
    # The same run again is complete already: it resumes at the end and trains no more.
    assert len(fit(10)["loss"]) == 2


def test_checkpoint_resume_continues_when_more_epochs_are_asked(tmp_path):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(64, 5)), rng.normal(size=(64, 2))

    def fit(epochs, checkpoint):
        model = st.Sequential(st.Dense(5, 8), st.Tanh(), st.Dense(8, 2), seed=2)
        opt = st.optim.RMSprop(model.parameters(), lr=0.01, momentum=0.5)
        model.fit(X, y, loss=st.losses.Huber(), optimizer=opt, epochs=epochs, batch_size=8,
                  checkpoint=checkpoint, verbose=0)
        return model.flat_params().copy()

    straight = fit(6, None)
    fit(2, tmp_path / "c.ckpt")
    np.testing.assert_array_equal(straight, fit(6, tmp_path / "c.ckpt"))


def test_csv_logger_does_not_repeat_the_epochs_a_resumed_run_trains_again(tmp_path):
    import csv

    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)

    def fit(log, crash_at, checkpoint=None):
        model = st.Sequential(st.Dense(5, 8), st.ReLU(), st.Dense(8, 3), seed=4)
        opt = st.optim.Adam(model.parameters(), lr=0.01)
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=5, batch_size=16,
                  checkpoint=checkpoint, verbose=0,
                  callbacks=[st.callbacks.CSVLogger(log), CrashAtEpochEnd(crash_at)])

    def rows(log):  # every column but the wall-clock time
        with open(log, newline="") as f:
            return [{k: v for k, v in r.items() if k != "time"} for r in csv.DictReader(f)]

    fit(tmp_path / "straight.csv", crash_at=-1)
    ckpt, log = tmp_path / "run.ckpt", tmp_path / "run.csv"
    with pytest.raises(RuntimeError, match="crash"):
        fit(log, crash_at=2, checkpoint=ckpt)  # epoch 3's row is written, its checkpoint not
    assert [r["epoch"] for r in rows(log)] == ["1", "2", "3"]
    fit(log, crash_at=-1, checkpoint=ckpt)
    assert rows(log) == rows(tmp_path / "straight.csv")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


INTERRUPT_SCRIPT = textwrap.dedent("""
    import os, signal, threading, time
    import numpy as np
    import steepest as st

    X = np.random.default_rng(0).normal(size=(20000, 128)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = st.Sequential(st.Dense(128, 256), st.ReLU(), st.Dense(256, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.01)
    sent = []

    def interrupt():
        time.sleep(1.0)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=1000,
                  batch_size=1, verbose=0)
    except KeyboardInterrupt:
        print("latency", time.perf_counter() - sent[0])
        print("steps", opt.steps)
        print("finite", bool(np.isfinite(model.flat_params()).all()))
        print("history", isinstance(model.history, dict))
""")


def test_ctrl_c_stops_fit_between_steps_quickly(tmp_path):
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT_SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    # "A fraction of a second": generous for a loaded machine; typically ~0.02 s.
    assert float(report["latency"]) < 0.5
    assert int(report["steps"]) > 0
    assert report["finite"] == "True" and report["history"] == "True"


FULL_BATCH_INTERRUPT_SCRIPT = textwrap.dedent("""
    import os, signal, threading, time
    import numpy as np
    import steepest as st

    # One full-batch step of this model takes seconds (16000 rows through 512-1024-1024-10).
    X = np.random.default_rng(0).normal(size=(16000, 512)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = st.Sequential(st.Dense(512, 1024), st.ReLU(), st.Dropout(0.1), st.Dense(1024, 1024),
                          st.ReLU(), st.Dense(1024, 10), seed=0)
    opt = st.optim.Adam(model.parameters(), lr=1e-3)
    before = model.flat_params().copy(), model.rng_state
    sent = []

    class SendSigint(st.callbacks.Callback):  # half a second into the first step
        def on_train_begin(self, model, optimizer):
            def send():
                time.sleep(0.5)
                sent.append(time.perf_counter())
                os.kill(os.getpid(), signal.SIGINT)
            threading.Thread(target=send, daemon=True).start()

    started = time.perf_counter()
    try:
        model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=5,
                  batch_size=None, callbacks=[SendSigint()], verbose=0)
    except KeyboardInterrupt:
        print("latency", time.perf_counter() - sent[0])
        print("steps", opt.steps)
        print("params", np.array_equal(model.flat_params(), before[0]))
        print("rng", model.rng_state == before[1])
        print("state", all(not v.any() for v in opt.state_buffers().values()))
        print("usable", np.isfinite(model.predict(X[:5])).all())
""")


def test_ctrl_c_abandons_a_full_batch_step_quickly():
    # The step in flight is abandoned at the next boundary inside it (an operation, a piece of
    # a matrix product): the model stays as before it. Waiting for the step took 1-10 s.
    result = subprocess.run([sys.executable, "-c", FULL_BATCH_INTERRUPT_SCRIPT],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    print(f"Ctrl-C latency in a full-batch step: {float(report['latency']) * 1e3:.0f} ms")
    assert float(report["latency"]) < 1.0  # typically 20-60 ms
    assert report == {**report, "steps": "0", "params": "True", "rng": "True", "state": "True",
                      "usable": "True"}


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


@pytest.fixture
def alarm_raises_stop():
    """signal.setitimer(signal.ITIMER_REAL, t) then raises _Stop in the main thread."""
    old = signal.signal(signal.SIGALRM, _raise_stop)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def test_an_interrupted_train_step_changes_nothing_and_the_next_is_whole(alarm_raises_stop):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6000, 256)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)

    def build():
        model = st.Sequential(st.Dense(256, 1024), st.ReLU(), st.Dropout(0.2),
                              st.Dense(1024, 1024), st.Tanh(), st.Dense(1024, 2), seed=3)
        return model, st.optim.Adam(model, lr=1e-3)

    loss = st.losses.CrossEntropy()
    model, opt = build()
    twin, twin_opt = build()
    model.train_step(X, y, loss, opt)
    twin.train_step(X, y, loss, twin_opt)
    params, state, rng_state = (model.flat_params().copy(), opt.state_dict()["state"],
                                model.rng_state)
    signal.setitimer(signal.ITIMER_REAL, 0.05)  # well inside the step
    with pytest.raises(_Stop):
        model.train_step(X, y, loss, opt)
    np.testing.assert_array_equal(model.flat_params(), params)
    for name, buffer in opt.state_buffers().items():
        np.testing.assert_array_equal(buffer, state[name])
    assert opt.steps == 1 and model.rng_state == rng_state
    model.train_step(X, y, loss, opt)  # the same step again, whole: the dropout masks too
    twin.train_step(X, y, loss, twin_opt)
    np.testing.assert_array_equal(model.flat_params(), twin.flat_params())


def test_an_interrupted_predict_raises_and_the_model_stays_usable(alarm_raises_stop):
    model = st.Sequential(st.Dense(256, 2048), st.ReLU(), st.Dense(2048, 10), seed=0)
    X = np.random.default_rng(2).normal(size=(100_000, 256)).astype(np.float32)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    with pytest.raises(_Stop):
        model.predict(X)  # about 5e10 multiply-adds
    np.testing.assert_array_equal(model.predict(X[:7]), model.predict(X[:7]))


def test_sigint_handler_exception_propagates_and_model_stays_usable():
    # A custom handler's exception comes out of fit as it is.
    class Stop(Exception):
        pass

    def handler(signum, frame):
        raise Stop()

    X = np.random.default_rng(0).normal(size=(4000, 64))
    y = (X[:, 0] > 0).astype(np.int64)
    model = st.Sequential(st.Dense(64, 128), st.ReLU(), st.Dense(128, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.01)

    class Fire(st.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 0:
                signal.setitimer(signal.ITIMER_REAL, 0.05)

    old = signal.signal(signal.SIGALRM, handler)
    try:
        with pytest.raises(Stop):
            model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=10_000,
                      batch_size=1, callbacks=[Fire()], verbose=0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(model.history["loss"]) >= 1
    assert np.isfinite(model.predict(X[:10])).all()


def test_optimizer_state_of_other_hyperparameters_is_refused():
    model = st.Sequential(st.Dense(3, 2), seed=0)
    state = st.optim.Adam(model.parameters(), betas=(0.8, 0.99)).state_dict()
    with pytest.raises(ValueError, match="betas"):
        st.optim.Adam(model.parameters()).load_state_dict(state)
    other = st.optim.Adam(model.parameters(), lr=0.5, betas=(0.8, 0.99))
    other.load_state_dict(state)  # only lr (and beta1) may differ: they are restored
    assert other.lr == state["hyperparameters"]["lr"]
