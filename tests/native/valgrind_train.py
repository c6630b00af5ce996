"""A short training run for valgrind's memcheck (see tests/native/valgrind.sh): every layer,
loss and optimizer, shuffled mini-batches with a partial last batch, dropout, clipping,
the step-by-step API, predict from two threads, save/load, a save from another thread while
fit runs (the step-boundary hand-over), then everything dropped."""
import gc
import os
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

print("valgrind_train: ok", file=sys.stderr)
