"""What steepest.sklearn's MLPClassifier and MLPRegressor share: ``BaseMLP``, scikit-learn's
parameters and their checks, the network (scikit-learn's initial weights in a Sequential),
the objective as the core's loss, the fit (input checks, then a solver of
steepest.sklearn.solvers), predicting with the output activation, and pickling
(steepest.sklearn.state).
"""
from __future__ import annotations

import contextlib
import copy
from numbers import Integral, Real

import numpy as np
from scipy.special import xlogy
from sklearn.base import BaseEstimator, _fit_context
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..layers import Dense, Dropout, ReLU, Sigmoid, Tanh
from ..losses import MSE, BinaryCrossEntropy, CrossEntropy, PoissonNLL, sigmoid, softmax
from ..model import Sequential
from ..threads import get_num_threads, set_num_threads
from .solvers import STOCHASTIC, Solvers
from .state import estimator_bytes, restore

_HIDDEN = {"identity": None, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}


class BaseMLP(Solvers, BaseEstimator):
    """What both estimators share: their parameters, building the model, the objective,
    the fit (into the solvers), predicting and pickling."""

    _parameter_constraints: dict = {
        **_SkMLPClassifier._parameter_constraints,
        "solver": [StrOptions({"lbfgs", *STOCHASTIC})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "clip_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "dtype": [StrOptions({"float32", "float64"})],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "progress": ["boolean"],
    }

    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size,
                 learning_rate, learning_rate_init, power_t, max_iter, loss, shuffle,
                 random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                 early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                 n_iter_no_change, max_fun, dropout, weight_decay, clip_grad_norm, dtype,
                 n_threads, progress):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.clip_grad_norm = clip_grad_norm
        self.dtype = dtype
        self.n_threads = n_threads
        self.progress = progress

    # -- the network ----------------------------------------------------------------------
    def _build(self, layer_units):
        """The Sequential for layer_units [n_features, *hidden, n_outputs] with scikit-learn's
        initial weights (Glorot uniform from self._random_state, in its order)."""
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(layer_units[:-1], layer_units[1:])):
            layers.append(Dense(fan_in, fan_out))
            if i < len(layer_units) - 2:
                if _HIDDEN[self.activation] is not None:
                    layers.append(_HIDDEN[self.activation]())
                if self.dropout > 0:
                    layers.append(Dropout(self.dropout))
        factor = 2.0 if self.activation == "logistic" else 6.0
        weights = []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            weights.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)).T)
            weights.append(self._random_state.uniform(-bound, bound, fan_out))
        # The model's own generator (dropout masks) is seeded from a copy of the random
        # state: the stream itself stays scikit-learn's (split, shuffles).
        seed = int(copy.deepcopy(self._random_state).randint(np.iinfo(np.int32).max))
        self._model = Sequential(*layers, dtype=self.dtype, seed=seed)
        self._model.load_state_dict(dict(zip(self._model.state_dict(), weights)))
        self._attach_views()

    def _attach_views(self):
        """coefs_ (n_in, n_out) and intercepts_ (n_out,): views of the model's parameters, so
        that they are the model's weights (writing them writes the model)."""
        params = [p.data for p in self._model.parameters()]
        self.coefs_ = [w.T for w in params[0::2]]
        self.intercepts_ = params[1::2]


    # -- the objective: scikit-learn's, as the core's loss ---------------------------------
    def _loss(self):
        """The core's loss whose gradient is scikit-learn's: its log losses sum over the
        outputs (scale k), its squared error is halved and summed over the outputs (scale
        k / 2 on steepest's mean), alpha is its L2 penalty on the weights per unit of sample
        weight (l2)."""
        k, kind = self.n_outputs_, self.out_activation_
        if kind == "softmax":
            return CrossEntropy(l2=self.alpha)
        if kind == "logistic":
            return BinaryCrossEntropy(scale=k, l2=self.alpha)
        if kind == "exp":
            return PoissonNLL(scale=k, l2=self.alpha)
        return MSE(scale=k / 2, l2=self.alpha)

    def _core_data(self, X, Y, sample_weight, loss):
        """(X, targets, sample weights) checked and converted once for the core: class indices
        for the softmax, the binarized or real targets otherwise."""
        X, y = self._model.check_data(X, Y.argmax(axis=1) if self.out_activation_ == "softmax"
                                      else Y, loss)
        return X, y, self._model.check_sample_weight(sample_weight, X.shape[0])

    def _loss_offset(self, Y, sample_weight):
        """What scikit-learn's half Poisson deviance adds to PoissonNLL's exp(z) - y z:
        sum_c (y log y - y), averaged over the samples (0 for the other losses)."""
        if self.out_activation_ != "exp":
            return 0.0
        return float(np.average((xlogy(Y, Y) - Y).sum(axis=1), weights=sample_weight))

    # -- fitting ---------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y (class labels in classification);
        sample_weight: per-sample weights (non-negative). Returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes)
        first_pass = not hasattr(self, "_model") or (not self.warm_start and not incremental)

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
            if not sample_weight.any():  # (what scikit-learn >= 1.8 checks itself)
                raise ValueError("Sample weights must contain at least one non-zero number.")
        X = _dense(X).astype(self.dtype, copy=False)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        sample_weight = self._class_weighted(y, sample_weight, incremental)
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden_layer_sizes + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        with self._threads():
            if first_pass:
                self._initialize(y, layer_units)
            elif layer_units != self._layer_units:
                raise ValueError(f"warm_start and partial_fit keep the layers of the first fit "
                                 f"{self._layer_units}, got {layer_units}")
            Y = y.astype(np.float64)
            if self.solver in STOCHASTIC:
                self._fit_stochastic(X, Y, sample_weight, incremental)
            else:
                self._fit_lbfgs(X, Y, sample_weight)
        if not np.isfinite(self._model.flat_params()).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _class_weighted(self, Y, sample_weight, incremental):
        """sample_weight times the class weights (the classifier's class_weight), or as is;
        Y: the targets as the solver fits them."""
        return sample_weight

    def _initialize(self, y, layer_units):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        self._layer_units = layer_units
        self._build(layer_units)
        self._best_params = self._model.flat_params().copy()
        if self.solver in STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    @contextlib.contextmanager
    def _threads(self):
        """steepest's thread count set to n_threads for the duration, then restored."""
        if self.n_threads is None:
            yield
            return
        before = get_num_threads()
        set_num_threads(self.n_threads)
        try:
            yield
        finally:
            set_num_threads(before)


    # -- predicting ------------------------------------------------------------------------
    def _forward_pass_fast(self, X, check_input=True):
        """The output activation of the network for X (N, n_outputs), float64."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        with self._threads():
            out = self._model.predict(_dense(X)).astype(np.float64)
        return _OUTPUTS[self.out_activation_](out)

    def predict(self, X):
        """The predicted classes (classifier; (n_samples, n_classes) for multi-label) or
        values (regressor; float64), (n_samples,) for one output."""
        check_is_fitted(self)
        return self._predict(X)

    def _score(self, X, y, sample_weight=None):
        """The validation score of early stopping (accuracy, R^2), without input checks."""
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_model")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- pickling: the bytes of a steepest archive (steepest.sklearn.state) -----------------
    def __getstate__(self):
        """Parameters and fitted state as JSON and plain arrays in a steepest archive; the
        model as its file's bytes, the optimizer's state as its archive's (rebuilt over the
        model when unpickled)."""
        return estimator_bytes(self)

    def __setstate__(self, state):
        restore(self, state)
        if hasattr(self, "_model"):
            self._attach_views()


# -- output activations ------------------------------------------------------------------------
_OUTPUTS = {"softmax": softmax, "logistic": sigmoid, "identity": lambda z: z, "exp": np.exp}


def _dense(X):
    """Sparse input as a dense array (the first layer's product is dense either way)."""
    return X.toarray() if hasattr(X, "toarray") else X
