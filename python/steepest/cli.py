"""Command line: ``steepest train | predict | evaluate | info | experiments`` (also
``python -m steepest``).

A model that ``train --save`` writes is the whole model: it takes the raw features of the
data it was trained on (its first layer is a Standardize layer adapted on the training rows,
and a regression target's scale is folded into its last layer), predicts the original class labels (the model's ``classes_``)
and keeps a training summary in its metadata, so ``predict`` and ``evaluate`` need nothing
else.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time

import numpy as np

from ._version import __version__
from .datasets import NAMES, TASKS, Standardizer, load, read_csv, train_test_split
from .distributed import Group, launched_by_mpi
from .experiments.report import experiments_parser
from .losses import MSE, CrossEntropy
from .model import load as load_model
from .presets import (ACTIVATIONS, DEFAULT_LRS, OPTIMIZER_RECIPES, build_mlp, make_optimizer,
                      unscale_outputs)
from .progress import ProgressBar, is_terminal
from .saving import read as read_model_file
from .threads import get_num_threads, set_num_threads


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _fraction(low_closed):
    def parse(text):
        value = float(text)
        if not (0 <= value < 1 if low_closed else 0 < value < 1):
            raise argparse.ArgumentTypeError(f"must be in {'[0' if low_closed else '(0'}, 1), "
                                             f"got {value}")
        return value
    return parse


DATA_HELP = (f"one of {', '.join(NAMES)} (scikit-learn's real data sets need the sklearn "
             "extra, mnist the mnist extra; spirals and sine need nothing), a .npz file with arrays X and y, or a "
             ".csv file of numbers whose last column is the target (it may hold text labels)")


def _header_option(p):
    p.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                   help="whether a .csv file's first row names the columns (default: detected "
                        "and said)")


def train_parser(sub):
    p = sub.add_parser(
        "train", help="train an MLP on a data set and report train/test accuracy or error",
        description="Train a multi-layer perceptron with backpropagation and gradient "
                    f"descent. DATA is {DATA_HELP}.")
    p.add_argument("--data", default="digits", metavar="DATA", help="data set (default digits)")
    p.add_argument("--task", choices=TASKS, default=None,
                   help="default: guessed from the target (text or at most 20 distinct "
                        "integers: classification), and said")
    _header_option(p)
    p.add_argument("--hidden", type=_positive_int, nargs="*", default=[128],
                   help="hidden layer widths (default: 128)")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden layer")
    p.add_argument("--init", default="torch_default",
                   help="initializer: torch_default, glorot_uniform, he_normal, ...")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZER_RECIPES), default="adam")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default per optimizer: " +
                        ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LRS.items()) + ")")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32,
                   help="samples per update; 0 = full batch (default 32)")
    p.add_argument("--epochs", type=_positive_int, default=20)
    p.add_argument("--test-size", type=_fraction(False), default=0.2,
                   help="fraction of the rows held out as the test set, evaluated once at the "
                        "end (default 0.2)")
    p.add_argument("--val-fraction", type=_fraction(True), default=0.0,
                   help="fraction of the training rows held out for validation, evaluated "
                        "after every epoch (default 0: none)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads")
    p.add_argument("--save", metavar="PATH",
                   help="write the trained model to PATH (.npz): it takes raw data")
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")
    p.add_argument("--distributed", action=argparse.BooleanOptionalAction, default=None,
                   help="data-parallel over MPI ranks (needs the mpi extra); default: on when "
                        "started by mpiexec or srun with several ranks")
    p.set_defaults(run=run_train)


def predict_parser(sub):
    p = sub.add_parser("predict", help="predict with a saved model on raw data",
                       description="Write a saved model's predictions for DATA (the class "
                                   "labels it was trained on, or regression values), one row "
                                   f"per sample, as CSV. DATA is {DATA_HELP}; a target column "
                                   "is optional (with it, the accuracy or MSE is reported on "
                                   "stderr).")
    p.add_argument("--model", required=True, metavar="PATH", help="a model saved by train")
    p.add_argument("--data", required=True, metavar="DATA")
    p.add_argument("--out", metavar="PATH", help="CSV file to write (default: stdout)")
    p.add_argument("--proba", action="store_true",
                   help="class probabilities, one column per class, instead of labels")
    _header_option(p)
    p.set_defaults(run=run_predict)


def evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="a saved model's loss and accuracy (or MSE) on raw "
                                        "data with targets",
                       description=f"Evaluate a saved model on DATA. DATA is {DATA_HELP}.")
    p.add_argument("--model", required=True, metavar="PATH", help="a model saved by train")
    p.add_argument("--data", required=True, metavar="DATA")
    _header_option(p)
    p.set_defaults(run=run_evaluate)


def info_parser(sub):
    p = sub.add_parser("info", help="a saved model's architecture, training summary and file "
                                    "version")
    p.add_argument("model", metavar="PATH", help="a model file (.npz)")
    p.set_defaults(run=run_info)


# -- train --------------------------------------------------------------------------------------
def run_train(args) -> int:
    group = None
    if args.distributed or (args.distributed is None and launched_by_mpi()):
        group = Group(threads=args.threads)  # one thread per rank on shared cores by default
    elif args.threads:
        set_num_threads(args.threads)
    # Every rank trains; rank 0 alone prints and saves.
    with contextlib.redirect_stdout(io.StringIO()) if group and group.rank else \
            contextlib.nullcontext():
        return train_and_report(args, group)


def train_and_report(args, group) -> int:
    data = load(args.data, seed=args.seed, task=args.task, header=args.header)
    X, classify = data["X"], data["task"] == "classification"
    y = data["classes"][data["y"]] if classify else data["y"]  # the original labels
    other = [t for t in TASKS if t != data["task"]][0]
    print(f"data: {data['name']}  {len(X)} rows  {X.shape[1]} features" +
          (f"  {data['n_classes']} classes" if classify else ""))
    print(f"task: {data['task']} ({data['reason']}; --task {other} to change)")
    if data["header"]:
        flag = "--no-header" if data["header"].startswith("a ") else "--header"
        print(f"file: {data['header']}; {flag} to change")
    X_train, X_test, y_train, y_test = train_test_split(X, y, args.test_size, seed=args.seed)
    validation = None
    if args.val_fraction:
        X_train, X_val, y_train, y_val = train_test_split(X_train, y_train, args.val_fraction,
                                                          seed=args.seed + 1)
        validation = (X_val, y_val)
    print(f"rows: train {len(X_train)}" + (f"  validation {len(X_val)}" if validation else "") +
          f"  test {len(X_test)} (evaluated once, at the end)")

    # The model standardizes its own input (its Standardize layer learns the training rows'
    # statistics when fit starts); a regression target is trained standardized, its scale
    # folded into the last layer afterwards: the saved model takes and gives raw data.
    targets = None if classify else Standardizer().fit(y_train)
    scaled = (lambda X_, y_: (X_, y_ if classify else targets.transform(y_)))
    n_out = data["n_classes"] if classify else y.shape[1]
    model = build_mlp(X.shape[1], args.hidden, n_out, args.activation, args.dropout,
                      args.dtype, args.seed, args.init, standardize=True)
    if classify:  # every label of the data, also those the training rows may lack
        model.classes_ = data["classes"]
    loss = CrossEntropy() if classify else MSE()
    opt = make_optimizer(args.optimizer, model, args.lr, args.weight_decay)
    print(model)
    print(f"optimizer: {args.optimizer}, lr {opt.lr:g}{'' if args.lr else ' (its default)'}"
          f"{f', weight decay {args.weight_decay:g}' if args.weight_decay else ''}  "
          f"batch size: {args.batch_size or 'full'}  threads: {get_num_threads()}")
    epochs = [] if args.quiet else [ProgressBar(args.epochs, stream=sys.stdout,
                                                backend="auto" if is_terminal(sys.stdout)
                                                else "text")]
    start = time.perf_counter()
    model.fit(*scaled(X_train, y_train), loss=loss, optimizer=opt, epochs=args.epochs,
              batch_size=args.batch_size or None,
              validation_data=scaled(*validation) if validation else None,
              callbacks=epochs, verbose=0, distributed=group)
    seconds = time.perf_counter() - start
    if not classify:
        unscale_outputs(model, targets.mean, targets.std)

    results = {part: model.evaluate(Xp, yp, loss) for part, (Xp, yp) in
               (("test", (X_test, y_test)), ("train", (X_train, y_train)), ("all", (X, y)))}
    print(f"trained in {seconds:.2f} s" + (f" on {group.size} ranks (data-parallel, global "
                                             f"batch {args.batch_size or 'full'})"
                                             if group else ""))
    print(f"test {_score(results['test'])} on {len(X_test)} held-out rows")
    print(f"train {_score(results['train'])} on {len(X_train)} rows")
    print(f"all {len(X)} rows of {data['name']}: {_score(results['all'])} (as predict and "
          "evaluate report it)")
    if args.save and (group is None or group.rank == 0):
        model.metadata = {
            "task": data["task"],
            "preprocessing": "layer 0 (Standardize) holds the training rows' mean and "
                             "standard deviation" +
                             ("" if classify else "; the target's scale is folded into the "
                              "last layer"),
            "training": {"data": data["name"], "command": args.command_line,
                         "rows": {"train": len(X_train), "test": len(X_test),
                                  "validation": len(validation[0]) if validation else 0},
                         "epochs": args.epochs, "batch_size": args.batch_size or "full",
                         "optimizer": repr(opt), "loss": type(loss).__name__,
                         "seconds": round(seconds, 3), "results": results},
        }
        model.save(args.save)
        print(f"saved to {args.save}: it takes raw data (steepest predict --model {args.save} "
              f"--data ...)")
    return 0


def _score(result) -> str:
    if "accuracy" in result:
        return f"accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f})"
    return f"MSE {result['loss']:.6g}"


# -- predict and evaluate -----------------------------------------------------------------------
def _saved_model(path):
    model = load_model(path)
    if model.metadata.get("task") not in TASKS:
        raise ValueError(f"{path} was not written by 'steepest train --save' (no task in its "
                         "metadata): load it with steepest.load and call predict")
    return model


def _read_for(model, data, header, need_targets):
    """(X (N, model.in_features), targets (N,) or None) of a data set for a saved model: a
    .csv's last column is its target when the file has one column more than the model's
    features, or text."""
    n = model.in_features
    if os.fspath(data).endswith(".csv"):
        table = read_csv(data, header)
        numbers, text = table["numbers"], table["text"]
        if text is not None:
            X, y = numbers, text
        elif numbers.shape[1] == n + 1:
            X, y = numbers[:, :-1], numbers[:, -1]
        else:
            X, y = numbers, None
    else:
        d = load(data, task=model.metadata["task"])
        X = d["X"]
        y = d["classes"][d["y"]] if d["task"] == "classification" else d["y"]
    if X.shape[1] != n:
        raise ValueError(f"{data} has {X.shape[1]} feature columns but the model takes {n}")
    if need_targets and y is None:
        raise ValueError(f"{data} has no target column ({n} columns, as many as the model's "
                         "features)")
    return X, y


def _evaluate(model, X, y, data) -> dict:
    """The loss (and accuracy) on a data set's labels, mapped through the model's classes_."""
    loss = CrossEntropy() if model.metadata["task"] == "classification" else MSE()
    return model.evaluate_checked(*model.check_data(X, y, loss, ("X", f"{data}'s target")),
                                  loss)


def run_predict(args) -> int:
    model = _saved_model(args.model)
    X, y = _read_for(model, args.data, args.header, need_targets=False)
    classify = model.metadata["task"] == "classification"
    if args.proba:
        if not classify:
            raise ValueError("--proba needs a classification model")
        classes = model.classes_ if model.classes_ is not None else range(model.out_features)
        columns, rows = [str(c) for c in classes], model.predict_proba(X)
    elif classify:
        columns, rows = ["prediction"], model.predict_classes(X)[:, None]
    else:
        rows = model.predict(X)
        columns = ["prediction"] if rows.shape[1] == 1 else [f"prediction_{i}"
                                                             for i in range(rows.shape[1])]
    text = ",".join(columns) + "\n" + "".join(",".join(map(_cell, row)) + "\n" for row in rows)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if y is not None:
        print(f"{args.data}: {_score(_evaluate(model, X, y, args.data))} on {len(X)} rows",
              file=sys.stderr)
    return 0


def _cell(value) -> str:
    text = repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)
    return f'"{text}"' if any(c in text for c in ',"\n') else text


def run_evaluate(args) -> int:
    model = _saved_model(args.model)
    X, y = _read_for(model, args.data, args.header, need_targets=True)
    result = _evaluate(model, X, y, args.data)
    print(f"{args.data}: {_score(result)} on {len(X)} rows")
    return 0


# -- info ---------------------------------------------------------------------------------------
def run_info(args) -> int:
    model = load_model(args.model)
    header = read_model_file(args.model)[0]
    print(f"{args.model}: {header.get('format')} format version {header.get('version')}, "
          f"written by {header.get('written_by', 'steepest (before 0.1.0)')}")
    model.summary()
    notes = model.metadata
    if notes.get("task"):
        classes = [] if model.classes_ is None else model.classes_.tolist()
        print(f"task: {notes['task']}" + ("" if not classes else
              f"; classes ({len(classes)}): {', '.join(map(str, classes[:20]))}"
              f"{', ...' if len(classes) > 20 else ''}"))
    if notes.get("preprocessing"):
        print(f"preprocessing: {notes['preprocessing']}")
    run = notes.get("training")
    if run:
        rows = run["rows"]
        print(f"trained by: steepest {run['command']}")
        print(f"  {run['data']}: {rows['train']} training, {rows['validation']} validation, "
              f"{rows['test']} test rows; {run['epochs']} epochs, batch size "
              f"{run['batch_size']}, {run['loss']}, {run['seconds']:.2f} s")
        print(f"  {run['optimizer']}")
        for part, result in run["results"].items():
            print(f"  {part}: {_score(result)}")
    other = {k: v for k, v in notes.items()
             if k not in ("task", "preprocessing", "training")}
    if other:
        print(f"metadata: {json.dumps(other)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="steepest", description="Train neural networks on the CPU with steepest.")
    parser.add_argument("--version", action="version", version=f"steepest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser(sub)
    predict_parser(sub)
    evaluate_parser(sub)
    info_parser(sub)
    experiments_parser(sub)
    args = parser.parse_args(argv)
    args.command_line = " ".join(sys.argv[1:] if argv is None else map(str, argv))
    try:
        return args.run(args)
    except BrokenPipeError:  # e.g. `steepest predict ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, ImportError, OSError) as e:
        print(f"steepest: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
