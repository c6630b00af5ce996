"""steepest.sklearn's estimators vs scikit-learn's MLP: the same data, architecture, solver
and parameters; time per epoch side by side, and the accuracy (R^2 for regression) on a
held-out quarter after the same number of epochs.

Each round times one epoch (``partial_fit`` over the training set, shuffled; for 'lbfgs' a
fit of a few iterations, per iteration) of both estimators in turn, in alternating order
(timing as in compare.py); times are medians over the rounds and the speedup is the median of
the per-round quotients. Default parameters otherwise (float32 for steepest: its default).

    python bench/sklearn_compare.py            # a few minutes
    python bench/sklearn_compare.py --quick
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from compare import digits_784, fmt_ratio, fmt_time, machine, set_threads, side_by_side
from sklearn import datasets, neural_network
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from steepest import sklearn as steepest_sklearn

# (data set, hidden layers, solver, epochs for the accuracy)
CASES = [
    ("digits", (100,), "adam", 50),
    ("digits", (100,), "sgd", 50),
    ("digits", (100,), "lbfgs", 50),
    ("digits 784 x5", (256, 128), "adam", 20),
    ("digits 784 x5", (256, 128), "sgd", 20),
    ("friedman1", (100,), "adam", 50),
]


def load(name):
    """(X_train, X_test, y_train, y_test, regression?) of a data set, X standardized. "digits
    784 xK": the digits upscaled to 28 x 28, the training quarter's images K times (the test
    images are other digits)."""
    if name == "friedman1":
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


def epoch_timers(X, y, regression, hidden, solver):
    """name -> a call that runs one epoch (or, for lbfgs, one fit of 5 iterations), and the
    number of epochs (iterations) it ran, for a per-epoch time."""
    fns, per_call = {}, 1
    for name, est in estimators(regression, hidden, solver).items():
        if solver == "lbfgs":
            est.set_params(max_iter=5)
            fns[name] = lambda est=est: est.fit(X, y)
            per_call = 5
        else:
            first = {} if regression else {"classes": np.unique(y)}
            est.partial_fit(X[:200], y[:200], **first)
            fns[name] = lambda est=est: est.partial_fit(X, y)
    return fns, per_call


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
    warnings.filterwarnings("ignore")  # ConvergenceWarning of the short fits

    print(f"Machine: {machine()}\n")
    print(f"Per epoch: median of {repeat} rounds, both estimators timed side by side in each "
          "round ('lbfgs': per iteration). Speedup: median over rounds of scikit-learn's time "
          "/ steepest's. Score: accuracy (R^2 for friedman1) on a held-out 25 % after the "
          "same number of epochs, random_state=0; steepest in float32, scikit-learn in "
          "float64 (each one's default).\n")
    head = ["data (train samples x features)", "hidden", "solver", "threads",
            "steepest epoch", "scikit-learn epoch", "speedup", "epochs",
            "steepest score", "scikit-learn score"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(" --- " for _ in head) + "|")
    data = {}
    for name, hidden, solver, epochs in cases:
        if name not in data:
            data[name] = load(name)
        X, X_test, y, y_test, regression = data[name]
        for t in threads:
            set_threads(t)
            fns, per_call = epoch_timers(X, y, regression, hidden, solver)
            r = side_by_side(fns, repeat, 0.0)
            scores = {}
            for est_name, est in estimators(regression, hidden, solver,
                                            max_iter=epochs).items():
                est.fit(X, y)
                scores[est_name] = est.score(X_test, y_test)
            row = [f"{name} ({X.shape[0]} x {X.shape[1]})", "-".join(map(str, hidden)), solver,
                   str(t), fmt_time(r["steepest"] / per_call), fmt_time(r["sklearn"] / per_call),
                   fmt_ratio(r.ratio("sklearn")), str(epochs),
                   f"{scores['steepest']:.4f}", f"{scores['sklearn']:.4f}"]
            print("| " + " | ".join(row) + " |", flush=True)
            time.sleep(0.05)


if __name__ == "__main__":
    main()
