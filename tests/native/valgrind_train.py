"""A short training run for valgrind's memcheck (see tests/native/valgrind.sh): every layer,
loss and optimizer, shuffled mini-batches with a partial last batch, dropout, clipping,
the step-by-step API, predict from two threads, save/load, a save from another thread while
fit runs (the step-boundary hand-over), data read in place, sample weights, float64 sums, a
per-batch callback, a fork while a thread trains, normalization layers (adapted, in both
modes, their buffers copied while a thread trains), then everything dropped."""
import gc
import os
import signal
import sys
import tempfile
import threading

import numpy as np

import steepest as st

st.set_num_threads(2)
rng = np.random.default_rng(0)
X = rng.normal(size=(150, 6))
labels = rng.integers(0, 3, size=150)
targets = rng.normal(size=(150, 3))
probs = rng.uniform(size=(150, 3))

activations = [st.ReLU(), st.LeakyReLU(0.1), st.ELU(0.5), st.GELU(), st.SiLU(), st.Sigmoid(),
               st.Tanh(), st.Softplus(), st.Softmax(), st.Dropout(0.3)]
losses = [(st.losses.CrossEntropy(0.1), labels), (st.losses.MSE(), targets),
          (st.losses.L1(), targets), (st.losses.Huber(0.5), targets),
          (st.losses.BinaryCrossEntropy(), probs)]
optimizers = [lambda p: st.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
              lambda p: st.optim.Adam(p, amsgrad=True), lambda p: st.optim.AdamW(p),
              lambda p: st.optim.RMSprop(p, momentum=0.5, centered=True),
              lambda p: st.optim.Adagrad(p)]

for i, act in enumerate(activations):
    dtype = "float64" if i % 2 else "float32"
    loss, y = losses[i % len(losses)]
    model = st.Sequential(st.Dense(6, 16), act, st.Dense(16, 8, init="he_normal"),
                          st.Dropout(0.2), st.Dense(8, 3, bias=bool(i % 3)), dtype=dtype, seed=i)
    opt = optimizers[i % len(optimizers)](model.parameters())
    model.fit(X, y, loss=loss, optimizer=opt, epochs=2, batch_size=32, verbose=0,
              clip_grad_norm=1.0, validation_data=(X[:20], y[:20]))
    model.train_step(X[:7], y[:7], loss, opt)
    opt.zero_grad()
    loss.forward(model.forward(X[:9], training=True), y[:9])
    model.backward(loss.backward())
    opt.step()
    st.clip_grad_norm_(model, 0.5)

    outs = [None, None]

    def work(k):
        outs[k] = model.predict(X)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(outs[0], outs[1]) and np.isfinite(outs[0]).all()

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.stp")
        model.save(path)
        assert np.array_equal(st.load(path).predict(X), outs[0])
    del model, opt
    gc.collect()

model = st.Sequential(st.Dense(6, 32), st.ReLU(), st.Dense(32, 3), seed=0)
opt = st.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
trainer = threading.Thread(target=lambda: model.fit(
    X, labels, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=20, batch_size=4, verbose=0))
trainer.start()
copies = 0
with tempfile.TemporaryDirectory() as folder:
    while trainer.is_alive() or copies == 0:
        model.save(os.path.join(folder, "m.stp"))
        copies += 1
trainer.join()
assert opt.steps == 20 * 38 and np.isfinite(model.state_dict(copy=True)["0.weight"]).all()
del model, opt

# The newer epoch paths: data read in place (a memory map, shards of another dtype), a given
# row order with sample weights and float64 sums, a per-batch callback, the full-batch
# objective, and a process forked while another thread trains (it refuses the model).
model = st.Sequential(st.Dense(6, 16), st.Tanh(), st.Dense(16, 3), seed=1)
opt = st.optim.Adam(model.parameters())
ce = st.losses.CrossEntropy()


class EveryBatch(st.callbacks.Callback):
    def wants_batches(self):
        return True

    def on_batch_end(self, batch, logs):
        self.optimizer.lr = 1e-3 / (1 + batch)


with tempfile.TemporaryDirectory() as folder:
    np.save(os.path.join(folder, "x.npy"), X.astype(np.float32))
    np.save(os.path.join(folder, "a.npy"), X[:70])
    np.save(os.path.join(folder, "b.npy"), X[70:].astype(np.float16))
    mapped = np.load(os.path.join(folder, "x.npy"), mmap_mode="r")
    model.fit(mapped, labels, loss=ce, optimizer=opt, epochs=2, batch_size=16, verbose=0,
              callbacks=[EveryBatch()])
    shards = [os.path.join(folder, name) for name in ("a.npy", "b.npy")]
    model.fit(shards, labels, loss=ce, optimizer=opt, epochs=1, batch_size=32, verbose=0)
    assert model.predict(shards).shape == (150, 3)
model.float64_sums = True
Xc, yc = model.check_data(X, labels, ce)
weights = model.check_sample_weight(rng.uniform(0.5, 2.0, 150), 150)
model.train_epoch(Xc, yc, ce, opt, 16, order=rng.permutation(150), sample_weight=weights)
assert np.isfinite(model.loss_and_grad(Xc, yc, ce, sample_weight=weights, training=True))
# A fork while a thread trains (tests/test_reliability_faults.py runs the same scenario with
# every route the child may take).
in_epoch, forked = threading.Event(), threading.Event()


class HoldFirstStep(st.callbacks.Callback):
    def wants_batches(self):
        return True

    def on_batch_end(self, batch, logs):
        if not in_epoch.is_set():
            in_epoch.set()
            forked.wait()


trainer = threading.Thread(target=lambda: model.fit(
    X, labels, loss=ce, optimizer=opt, epochs=1, batch_size=8, verbose=0,
    callbacks=[HoldFirstStep()]))
trainer.start()
in_epoch.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(600)  # a copy that waits forever ends the child (valgrind is slow)
    try:
        model.state_dict(copy=True)
        os._exit(1)
    except RuntimeError:
        os._exit(0)
forked.set()
assert os.waitpid(pid, 0)[1] == 0
trainer.join()
del model, opt

# Normalization layers: Standardize / MinMaxScale adapted by fit (and on shards), BatchNorm1d
# in training and eval mode, with and without running statistics, LayerNorm with and without
# its affine parameters; buffers and counts copied while a thread trains, saved and loaded.
for i, dtype in enumerate(("float32", "float64")):
    model = st.Sequential((st.Standardize, st.MinMaxScale)[i](), st.Dense(6, 16),
                          st.BatchNorm1d(16, track_running_stats=not i), st.ReLU(),
                          st.Dense(16, 8), st.LayerNorm(8, elementwise_affine=bool(i)),
                          st.GELU(), st.Dense(8, 3), dtype=dtype, seed=i)
    opt = st.optim.AdamW(model.parameters())
    trainer = threading.Thread(target=lambda: model.fit(
        X, labels, loss=ce, optimizer=opt, epochs=3, batch_size=16, verbose=0))
    trainer.start()
    states = []
    while trainer.is_alive() or not states:
        states.append(model.state_dict(copy=True))
    trainer.join()
    model.eval()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.stp")
        model.save(path)
        assert np.array_equal(st.load(path).predict(X), model.predict(X))
        np.save(os.path.join(folder, "x.npy"), X)
        model.adapt([os.path.join(folder, "x.npy")])
    out = model.forward(X[:9], training=True)
    loss = st.losses.MSE()
    loss.forward(out, targets[:9])
    model.backward(loss.backward())
    assert np.isfinite(model.predict(X)).all() and len(states) > 0
    del model, opt, states
    gc.collect()

print("valgrind_train: ok", file=sys.stderr)
