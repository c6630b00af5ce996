"""What the command line and the experiments share: an MLP from hidden widths and an
activation name, optimizers by recipe name ("momentum", "nesterov", ...) with a default
learning rate each, and a regression target's scale folded into a trained model's outputs."""
from __future__ import annotations

import numpy as np

from . import optim
from .layers import ACTIVATIONS, BatchNorm1d, Dense, Dropout, LayerNorm, Standardize
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

# recipe name -> the learning rate the command line uses when none is given: one that trains
# a 128-unit ReLU MLP on standardized digits, breast_cancer and diabetes in 20 epochs of
# batches of 32 (test accuracy 0.97-0.98 on digits for each)
DEFAULT_LRS = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "adam": 1e-3, "adamw": 1e-3,
               "rmsprop": 1e-3, "adagrad": 1e-2}


# normalization name -> the layer of a hidden width that build_mlp puts after each hidden Dense
NORMALIZATIONS = {"batch": BatchNorm1d, "layer": LayerNorm}


def build_mlp(n_in, hidden, n_out, activation="relu", dropout=0.0, dtype="float32", seed=0,
              init="torch_default", standardize=False, norm=None) -> Sequential:
    """An MLP: Dense (-> normalization) -> activation (-> Dropout) per hidden width, then a
    Dense output layer; norm: None, "batch" (BatchNorm1d) or "layer" (LayerNorm) before each
    hidden activation, as in the BatchNorm paper; standardize: a Standardize layer first (fit
    adapts it on its training data), so that the model takes raw features."""
    act = ACTIVATIONS[activation]
    layers, width = [Standardize()] if standardize else [], n_in
    for h in hidden:
        layers.append(Dense(width, h, init=init))
        if norm is not None:
            layers.append(NORMALIZATIONS[norm](h))
        layers.append(act())
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = h
    layers.append(Dense(width, n_out, init=init))
    return Sequential(*layers, dtype=dtype, seed=seed)


def make_optimizer(name, params, lr=None, weight_decay=0.0):
    """The optimizer recipe `name` (see OPTIMIZER_RECIPES) over params; lr None takes the
    recipe's DEFAULT_LRS."""
    return OPTIMIZER_RECIPES[name](params, DEFAULT_LRS[name] if lr is None else lr,
                                   weight_decay)


def unscale_outputs(model, mean, std) -> None:
    """Makes a model trained on targets (y - mean) / std give raw targets: the affine map is
    folded into its last layer (a Dense layer with a bias), computed in float64 and rounded
    once."""
    k = len(model) - 1
    last = model.layers[k]
    if not (isinstance(last, Dense) and last.bias):
        raise ValueError("unscaling the outputs needs a model that ends with a Dense layer "
                         "with a bias")
    state = model.state_dict()
    w, b = state[f"{k}.weight"], state[f"{k}.bias"]
    std = np.asarray(std, np.float64)
    w[...] = w.astype(np.float64) * std[:, None]
    b[...] = b * std + np.asarray(mean, np.float64)
