"""What the command line and the experiments share: an MLP from hidden widths and an
activation name, optimizers by recipe name ("momentum", "nesterov", ...), the default
learning rate."""
from __future__ import annotations

from . import optim
from .layers import ACTIVATIONS, Dense, Dropout
from .model import Sequential

# recipe name -> optimizer of params with learning rate lr and weight decay wd
OPTIMIZER_RECIPES = {
    "sgd": lambda params, lr, wd: optim.SGD(params, lr=lr, weight_decay=wd),
    "momentum": lambda params, lr, wd: optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd),
    "nesterov": lambda params, lr, wd: optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                                                 weight_decay=wd),
    "adam": lambda params, lr, wd: optim.Adam(params, lr=lr, weight_decay=wd),
    "adamw": lambda params, lr, wd: optim.AdamW(params, lr=lr, weight_decay=wd or 1e-2),
    "rmsprop": lambda params, lr, wd: optim.RMSprop(params, lr=lr, weight_decay=wd),
    "adagrad": lambda params, lr, wd: optim.Adagrad(params, lr=lr, weight_decay=wd),
}

DEFAULT_LR = 1e-3  # the command line's learning rate when none is given


def build_mlp(n_in, hidden, n_out, activation="relu", dropout=0.0, dtype="float32", seed=0,
              init="torch_default") -> Sequential:
    """An MLP: Dense -> activation (-> Dropout) per hidden width, then a Dense output layer."""
    act = ACTIVATIONS[activation]
    layers, width = [], n_in
    for h in hidden:
        layers += [Dense(width, h, init=init), act()]
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = h
    layers.append(Dense(width, n_out, init=init))
    return Sequential(*layers, dtype=dtype, seed=seed)


def make_optimizer(name, params, lr, weight_decay=0.0):
    """The optimizer recipe `name` (see OPTIMIZER_RECIPES) over params."""
    return OPTIMIZER_RECIPES[name](params, lr, weight_decay)
