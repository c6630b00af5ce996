"""steepest.sklearn's estimators vs scikit-learn's MLP: the same data, architecture, solver
and parameters; time per epoch side by side, and the accuracy (R^2 for regression) on a
held-out quarter after the same number of epochs.

Each round times a fit of a few epochs (for 'lbfgs' iterations) with the stopping rules off,
of every estimator in turn, in alternating order (timing as in compare.py); the time per
epoch is the fit's over its epochs (set-up and validation included, as in a real fit); times
are medians over the rounds and the speedup is the median of the per-round quotients. Default
parameters otherwise (float32 for steepest, X's dtype for scikit-learn: float64, and float32
in a second column).

    python bench/sklearn_compare.py            # a few minutes
    python bench/sklearn_compare.py --quick
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from compare import (digits_784, fmt_ratio, fmt_time, gemm_only, machine, set_threads,
                     side_by_side)
from sklearn import datasets, neural_network
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import steepest as st
from steepest import sklearn as steepest_sklearn

# epochs (lbfgs: iterations) of each timed fit, per data set
TIMED_EPOCHS = {"digits": 10, "digits 784 x5": 3, "friedman1": 5, "mnist": 3}
# (data set, hidden layers, solver, epochs for the accuracy)
CASES = [
    ("digits", (100,), "adam", 50),
    ("digits", (100,), "sgd", 50),
    ("digits", (100,), "lbfgs", 50),
    ("digits 784 x5", (256, 128), "adam", 20),
    ("digits 784 x5", (256, 128), "sgd", 20),
    ("friedman1", (100,), "adam", 50),
    ("mnist", (256, 128), "adam", 20),  # with the mnist extra (skipped without it)
]


def load(name):
    """(X_train, X_test, y_train, y_test, regression?) of a data set, X standardized. "digits
    784 xK": the digits upscaled to 28 x 28, the training quarter's images K times (the test
    images are other digits)."""
    if name == "mnist":
        X, y = st.datasets.mnist()
    elif name == "friedman1":
        X, y = datasets.make_friedman1(n_samples=20000, n_features=10, noise=0.5,
                                       random_state=0)
    elif name.startswith("digits 784"):
        X, y = digits_784(1)
    else:
        X, y = datasets.load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    if name.startswith("digits 784"):
        copies = int(name.rsplit("x", 1)[1])
        X_train, y_train = np.tile(X_train, (copies, 1)), np.tile(y_train, copies)
    scaler = StandardScaler().fit(X_train)
    return (scaler.transform(X_train), scaler.transform(X_test), y_train, y_test,
            name == "friedman1")


def estimators(regression, hidden, solver, **params):
    kind = "MLPRegressor" if regression else "MLPClassifier"
    return {name: getattr(module, kind)(hidden_layer_sizes=hidden, solver=solver,
                                        random_state=0, **params)
            for name, module in (("steepest", steepest_sklearn),
                                 ("sklearn", neural_network))}


def epoch_timers(X, y, regression, hidden, solver, epochs):
    """name -> a fit of `epochs` epochs (lbfgs: iterations), stopping rules off: its time over
    `epochs` is the time per epoch of a fit, its set-up included. "sklearn float32" is
    scikit-learn on float32 data (it then trains in float32)."""
    fns = {}
    ests = estimators(regression, hidden, solver, max_iter=epochs, n_iter_no_change=np.inf)
    ests["sklearn float32"] = estimators(regression, hidden, solver, max_iter=epochs,
                                         n_iter_no_change=np.inf)["sklearn"]
    for name, est in ests.items():
        Xt = X.astype(np.float32) if name == "sklearn float32" else X
        fns[name] = lambda est=est, Xt=Xt: est.fit(Xt, y)
    fns["products"] = products_epochs(X, y, regression, hidden, solver, epochs)
    return fns


def products_epochs(X, y, regression, hidden, solver, epochs):
    """`epochs` epochs of nothing but the training steps' matrix products, in float32 with
    numpy's sgemm (forward, weight gradients, input gradients; 'lbfgs': one full batch per
    iteration): the time no float32 implementation of these epochs goes below at this sgemm's
    speed, so scikit-learn's time over it bounds any speedup."""
    n = X.shape[0]
    batch = n if solver == "lbfgs" else min(200, n)
    outputs = 1 if regression or len(np.unique(y)) == 2 else len(np.unique(y))
    sizes = [X.shape[1], *hidden, outputs]
    X32 = X.astype(np.float32)
    steps = [gemm_only(sizes, batch, X32[:batch])] * (n // batch)
    if n % batch:
        steps.append(gemm_only(sizes, n % batch, X32[:n % batch]))

    def run():
        for _ in range(epochs):
            for step in steps:
                step()
    return run


def float64_sums_epochs(X, y, hidden, batch):
    """name -> one epoch (Adam, the estimators' loss) of the same model with the float64 sums
    off and on."""
    fns = {}
    for on in (False, True):
        layers, width = [], X.shape[1]
        for h in hidden:
            layers += [st.Dense(width, h), st.ReLU()]
            width = h
        model = st.Sequential(*layers, st.Dense(width, int(y.max()) + 1), seed=0)
        model.float64_sums = on
        loss = st.losses.CrossEntropy(l2=1e-4)
        opt = st.optim.Adam(model.parameters())
        Xc, yc = model.check_data(X, y, loss)
        fns["float64" if on else "float32"] = \
            lambda m=model, o=opt, a=Xc, b=yc: m.train_epoch(a, b, loss, o, batch)
    return fns


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds, no 2-thread run")
    ap.add_argument("--repeat", type=int, default=None, help="rounds (default 7, quick 3)")
    ap.add_argument("--threads", default=None, help="thread counts (default 1,2; quick 2)")
    ap.add_argument("--cases", default=None, help=f"indices into the {len(CASES)} cases")
    args = ap.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 7)
    threads = [int(t) for t in (args.threads or ("2" if args.quick else "1,2")).split(",")]
    cases = [CASES[int(i)] for i in args.cases.split(",")] if args.cases else CASES
    try:  # MNIST comes with the mnist extra
        st.datasets.mnist()
    except ImportError:
        cases = [case for case in cases if case[0] != "mnist"]
    warnings.filterwarnings("ignore")  # ConvergenceWarning of the short fits

    print(f"Machine: {machine()}\n")
    print(f"Per epoch: a fit of {TIMED_EPOCHS} epochs ('lbfgs': iterations) with the stopping "
          f"rules off, over its epochs; median of {repeat} rounds, the estimators timed side "
          "by side in each round. Speedup: median over rounds of scikit-learn's time / "
          "steepest's; scikit-learn trains in X's dtype: float64 (its default, as for a "
          "drop-in) and, in the next column, float32. Score: accuracy (R^2 for friedman1) on "
          "a held-out 25 % after the same number of epochs, random_state=0, each in its "
          "default dtype (steepest float32, scikit-learn float64). Products epoch: the same "
          "epochs' matrix products alone, float32 numpy sgemm; speedup bound: scikit-learn's "
          "time over it, the most any float32 implementation at that sgemm speed could "
          "gain.\n")
    head = ["data (train samples x features)", "hidden", "solver", "threads",
            "steepest epoch", "scikit-learn epoch", "speedup", "speedup vs float32 scikit-learn",
            "products epoch", "speedup bound", "epochs", "steepest score", "scikit-learn score"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(" --- " for _ in head) + "|")
    data = {}
    for name, hidden, solver, epochs in cases:
        if name not in data:
            data[name] = load(name)
        X, X_test, y, y_test, regression = data[name]
        for t in threads:
            set_threads(t)
            per_call = TIMED_EPOCHS[name]
            r = side_by_side(epoch_timers(X, y, regression, hidden, solver, per_call), repeat,
                             0.0)
            scores = {}
            for est_name, est in estimators(regression, hidden, solver,
                                            max_iter=epochs).items():
                est.fit(X, y)
                scores[est_name] = est.score(X_test, y_test)
            row = [f"{name} ({X.shape[0]} x {X.shape[1]})", "-".join(map(str, hidden)), solver,
                   str(t), fmt_time(r["steepest"] / per_call), fmt_time(r["sklearn"] / per_call),
                   fmt_ratio(r.ratio("sklearn")), fmt_ratio(r.ratio("sklearn float32")),
                   fmt_time(r["products"] / per_call),
                   fmt_ratio(r.ratio("sklearn", ours="products")), str(epochs),
                   f"{scores['steepest']:.4f}", f"{scores['sklearn']:.4f}"]
            print("| " + " | ".join(row) + " |", flush=True)
            time.sleep(0.05)

    print("\nThe cost of float64 sums (Sequential.float64_sums, on in the estimators' full-batch "
          "fits): one epoch, Adam, side by side; float32 sums are the default\n")
    print("| data | hidden | batch | threads | float32 sums | float64 sums | cost |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, hidden, batch in (("digits", (100,), None), ("digits 784 x5", (256, 128), 200)):
        X, _, y, _, _ = data.get(name) or load(name)
        for t in threads:
            set_threads(t)
            r = side_by_side(float64_sums_epochs(X, y, hidden, batch or len(X)), repeat, 0.0)
            print(f"| {name} ({X.shape[0]} x {X.shape[1]}) | {'-'.join(map(str, hidden))} | "
                  f"{batch or 'full'} | {t} | {fmt_time(r['float32'])} | "
                  f"{fmt_time(r['float64'])} | {r.ratio('float32', ours='float64')**-1:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
