"""Command line: ``steepest train`` and ``steepest experiments`` (also ``python -m steepest``)."""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time

from .datasets import NAMES, Standardizer, load, train_test_split
from .distributed import Group, launched_by_mpi
from .experiments.report import experiments_parser
from .losses import MSE, CrossEntropy
from .presets import ACTIVATIONS, DEFAULT_LR, OPTIMIZER_RECIPES, build_mlp, make_optimizer
from .threads import get_num_threads, set_num_threads


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def train_parser(sub):
    p = sub.add_parser(
        "train", help="train an MLP on a data set and report train/test accuracy or error",
        description="Train a multi-layer perceptron with backpropagation and gradient descent. "
                    f"DATA is one of {', '.join(NAMES)} (scikit-learn's real data sets need "
                    "the sklearn extra; spirals and sine need nothing), or a .npz file with "
                    "arrays X and y, or a .csv file whose last column is the target.")
    p.add_argument("--data", default="digits", metavar="DATA", help="data set (default digits)")
    p.add_argument("--hidden", type=_positive_int, nargs="*", default=[128],
                   help="hidden layer widths (default: 128)")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden layer")
    p.add_argument("--init", default="torch_default",
                   help="initializer: torch_default, glorot_uniform, he_normal, ...")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZER_RECIPES), default="adam")
    p.add_argument("--lr", type=float, default=DEFAULT_LR,
                   help=f"learning rate (default {DEFAULT_LR:g})")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32,
                   help="samples per update; 0 = full batch (default 32)")
    p.add_argument("--epochs", type=_positive_int, default=20)
    p.add_argument("--test-size", type=float, default=0.2, help="held-out fraction (0.2)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads")
    p.add_argument("--save", metavar="PATH", help="write the trained model to PATH (.npz)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")
    p.add_argument("--distributed", action=argparse.BooleanOptionalAction, default=None,
                   help="data-parallel over MPI ranks (needs the mpi extra); default: on when "
                        "started by mpiexec or srun with several ranks")
    p.set_defaults(run=run_train)


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
    data = load(args.data, seed=args.seed)
    X_train, X_test, y_train, y_test = train_test_split(data["X"], data["y"], args.test_size,
                                                        seed=args.seed)
    scaler = Standardizer().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    classify = data["task"] == "classification"
    n_out = data["n_classes"] if classify else data["y"].shape[1]
    model = build_mlp(X_train.shape[1], args.hidden, n_out, args.activation, args.dropout,
                      args.dtype, args.seed, args.init)
    loss = CrossEntropy() if classify else MSE()
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay)
    print(f"data: {data['name']}  {data['task']}  train {len(X_train)}  test {len(X_test)}  "
          f"features {X_train.shape[1]}" + (f"  classes {n_out}" if classify else ""))
    print(model)
    print(f"optimizer: {opt!r}  batch size: {args.batch_size or 'full'}  "
          f"threads: {get_num_threads()}")
    start = time.perf_counter()
    model.fit(X_train, y_train, loss=loss, optimizer=opt, epochs=args.epochs,
              batch_size=args.batch_size or None, validation_data=(X_test, y_test),
              verbose=0 if args.quiet else 2, distributed=group)
    seconds = time.perf_counter() - start
    train, test = model.evaluate(X_train, y_train, loss), model.evaluate(X_test, y_test, loss)
    if classify:
        print(f"train accuracy {train['accuracy']:.4f}  test accuracy {test['accuracy']:.4f}  "
              f"(loss {train['loss']:.4f} / {test['loss']:.4f})  {seconds:.2f} s")
    else:
        print(f"train MSE {train['loss']:.4f}  test MSE {test['loss']:.4f}  {seconds:.2f} s")
    if group is not None:
        print(f"ranks: {group.size} (data-parallel, global batch {args.batch_size or 'full'})")
    if args.save and (group is None or group.rank == 0):
        model.save(args.save)
        print(f"saved to {args.save}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="steepest", description="Train neural networks on the CPU with steepest.")
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser(sub)
    experiments_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, ImportError, OSError) as e:
        print(f"steepest: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
