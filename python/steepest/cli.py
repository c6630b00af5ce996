"""Command line: ``steepest train`` and ``steepest experiments`` (also ``python -m steepest``)."""
from __future__ import annotations

import argparse
import sys
import time

from .experiments import experiments_parser

ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softplus")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")


def build_model(n_in, hidden, n_out, activation="relu", dropout=0.0, dtype="float32", seed=0,
                init="torch_default"):
    """An MLP: Dense -> activation (-> Dropout) per hidden width, then a Dense output layer."""
    import steepest as st

    act = {"relu": st.ReLU, "leaky_relu": st.LeakyReLU, "elu": st.ELU, "gelu": st.GELU,
           "silu": st.SiLU, "sigmoid": st.Sigmoid, "tanh": st.Tanh,
           "softplus": st.Softplus}[activation]
    layers, width = [], n_in
    for h in hidden:
        layers += [st.Dense(width, h, init=init), act()]
        if dropout > 0:
            layers.append(st.Dropout(dropout))
        width = h
    layers.append(st.Dense(width, n_out, init=init))
    return st.Sequential(*layers, dtype=dtype, seed=seed)


def make_optimizer(name, params, lr, weight_decay=0.0):
    import steepest as st

    o = st.optim
    return {"sgd": lambda: o.SGD(params, lr=lr, weight_decay=weight_decay),
            "momentum": lambda: o.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay),
            "nesterov": lambda: o.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                                      weight_decay=weight_decay),
            "adam": lambda: o.Adam(params, lr=lr, weight_decay=weight_decay),
            "adamw": lambda: o.AdamW(params, lr=lr, weight_decay=weight_decay or 1e-2),
            "rmsprop": lambda: o.RMSprop(params, lr=lr, weight_decay=weight_decay),
            "adagrad": lambda: o.Adagrad(params, lr=lr, weight_decay=weight_decay)}[name]()


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def train_parser(sub):
    from .datasets import NAMES

    p = sub.add_parser(
        "train", help="train an MLP on a data set and report train/test accuracy or error",
        description="Train a multi-layer perceptron with backpropagation and gradient descent. "
                    f"DATA is one of {', '.join(NAMES)} (scikit-learn's real data sets need "
                    "the sklearn extra; spirals and sine need nothing), or a .npz file with "
                    "arrays X and y, or a .csv file whose last column is the target.")
    p.add_argument("--data", default="digits", metavar="DATA", help="data set (default digits)")
    p.add_argument("--hidden", type=_positive_int, nargs="*", default=[128],
                   help="hidden layer widths (default: 128)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden layer")
    p.add_argument("--init", default="torch_default",
                   help="initializer: torch_default, glorot_uniform, he_normal, ...")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
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
    p.set_defaults(run=run_train)


def run_train(args) -> int:
    import steepest as st
    from .datasets import Standardizer, load, train_test_split

    if args.threads:
        st.set_num_threads(args.threads)
    data = load(args.data, seed=args.seed)
    X_train, X_test, y_train, y_test = train_test_split(data["X"], data["y"], args.test_size,
                                                        seed=args.seed)
    scaler = Standardizer().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    classify = data["task"] == "classification"
    n_out = data["n_classes"] if classify else data["y"].shape[1]
    model = build_model(X_train.shape[1], args.hidden, n_out, args.activation, args.dropout,
                        args.dtype, args.seed, args.init)
    loss = st.losses.CrossEntropy() if classify else st.losses.MSE()
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay)
    print(f"data: {data['name']}  {data['task']}  train {len(X_train)}  test {len(X_test)}  "
          f"features {X_train.shape[1]}" + (f"  classes {n_out}" if classify else ""))
    print(model)
    print(f"optimizer: {opt!r}  batch size: {args.batch_size or 'full'}  "
          f"threads: {st.get_num_threads()}")
    start = time.perf_counter()
    model.fit(X_train, y_train, loss=loss, optimizer=opt, epochs=args.epochs,
              batch_size=args.batch_size or None, validation_data=(X_test, y_test),
              verbose=0 if args.quiet else 2)
    seconds = time.perf_counter() - start
    train, test = model.evaluate(X_train, y_train, loss), model.evaluate(X_test, y_test, loss)
    if classify:
        print(f"train accuracy {train['accuracy']:.4f}  test accuracy {test['accuracy']:.4f}  "
              f"(loss {train['loss']:.4f} / {test['loss']:.4f})  {seconds:.2f} s")
    else:
        print(f"train MSE {train['loss']:.4f}  test MSE {test['loss']:.4f}  {seconds:.2f} s")
    if args.save:
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
