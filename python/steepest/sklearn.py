"""scikit-learn estimators trained by steepest: drop-in replacements for
``sklearn.neural_network.MLPClassifier`` and ``MLPRegressor``.

    from steepest.sklearn import MLPClassifier   # instead of sklearn.neural_network's
    clf = MLPClassifier(hidden_layer_sizes=(100,), random_state=0).fit(X, y)

The constructor parameters, their defaults and meaning, the fitted attributes (``coefs_`` and
``intercepts_`` in scikit-learn's (n_in, n_out) shapes, as views of the model's weights),
methods, warnings, error messages and stopping rules are scikit-learn's: its documentation
applies. The same random_state gives the same initial weights as scikit-learn's (Glorot
uniform, drawn in its order); shuffling and the early-stopping split draw from the same
generator afterwards. Differences, on purpose:

- ``dtype="float32"`` by default (scikit-learn trains in X's dtype); predictions are float64.
- Adam adds epsilon as torch.optim.Adam does (to sqrt(v) / sqrt(1 - beta_2^t)); 'sgd' keeps
  scikit-learn's velocity semantics when the learning rate changes.
- ``partial_fit`` is not offered with 'lbfgs' by either estimator.
- Sample weights must be non-negative (scikit-learn accepts negative ones silently).
- With several outputs, MLPRegressor's ``loss_`` is the loss its gradient descends (the
  halved squared error summed over the outputs); scikit-learn's averages over the outputs
  while its gradient sums them. The weights follow the same path.

Training runs in steepest's core, one C++ call per epoch, in scikit-learn's shuffled order;
a fit that is one batch per epoch ('lbfgs', or batch_size >= the samples: 'auto' on up to 200)
sums its gradients in float64 (see Sequential.float64_sums), so that sample weights of k
train as k copies of a sample would; with the core's batch-invariant matrix products (CPUs
with AVX2 + FMA) a weighted fit then equals the fit on repeated rows, as scikit-learn's
sample-weight checks ask.

Extra keyword parameters: ``dropout`` (after each hidden layer, stochastic solvers),
``solver`` also 'adamw', 'rmsprop' or 'adagrad' (torch.optim's, with learning_rate_init and
epsilon; AdamW's decoupled ``weight_decay``), ``class_weight`` (classifier: a dict or
'balanced', as scikit-learn's linear models take it), ``clip_grad_norm``, ``dtype``,
``n_threads`` (steepest's threads during fit and predict) and ``progress`` (a progress bar
over the iterations).

Pickling (and joblib, copy.deepcopy) holds the bytes of a steepest archive: no pickled object
besides the estimator's class.
"""
from __future__ import annotations

import contextlib
import copy
import time
import warnings
from numbers import Integral, Real

import numpy as np

try:
    import scipy.optimize
    from scipy.special import xlogy
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (_check_partial_fit_first_call, type_of_target,
                                          unique_labels)
    from sklearn.utils.optimize import _check_optimize_result
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - the extra is installed in the test run
    raise ImportError("steepest.sklearn needs scikit-learn >= 1.6 and SciPy: "
                      "pip install 'steepest[sklearn]'") from e

from . import optim
from .archive import FORMAT_VERSION, archive_bytes, read_archive
from .errors import TrainingDiverged, check_step
from .layers import Dense, Dropout, ReLU, Sigmoid, Tanh
from .losses import MSE, BinaryCrossEntropy, CrossEntropy, PoissonNLL, sigmoid, softmax
from .model import Sequential
from .optim import clip_threshold
from .progress import ProgressBar
from .saving import MODEL_FORMAT
from .threads import get_num_threads, set_num_threads
from .training import progress_reporter

__all__ = ["MLPClassifier", "MLPRegressor"]

_HIDDEN = {"identity": None, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
_STOCHASTIC = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
ESTIMATOR_FORMAT = "steepest.estimator"


class _BaseMLP(BaseEstimator):
    """What both estimators share: building the model, the objective, the solvers."""

    _parameter_constraints: dict = {
        **_SkMLPClassifier._parameter_constraints,
        "solver": [StrOptions({"lbfgs", *_STOCHASTIC})],
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

    def _make_optimizer(self):
        params = self._model.parameters()
        lr, eps = self.learning_rate_init, self.epsilon
        if self.solver == "sgd":
            return optim.SGD(params, lr=lr, momentum=self.momentum,
                             nesterov=self.nesterovs_momentum and self.momentum > 0)
        if self.solver == "adam":
            return optim.Adam(params, lr=lr, betas=(self.beta_1, self.beta_2), eps=eps)
        if self.solver == "adamw":
            return optim.AdamW(params, lr=lr, betas=(self.beta_1, self.beta_2), eps=eps,
                               weight_decay=self.weight_decay)
        if self.solver == "rmsprop":
            return optim.RMSprop(params, lr=lr, eps=eps)
        return optim.Adagrad(params, lr=lr, eps=eps)

    def _set_learning_rate(self, lr):
        """A new learning rate for the stochastic solver. scikit-learn's SGD keeps the
        learning rate inside its velocity (v = momentum v - lr g); torch's keeps the gradients
        (b = momentum b + g, step lr b): scaling b by old / new lr keeps scikit-learn's."""
        opt = self._optimizer
        buffer = opt.state_buffers().get("momentum_buffer")
        if buffer is not None and self.solver == "sgd" and lr > 0:
            buffer *= opt.lr / lr
        opt.lr = lr

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
            if self.solver in _STOCHASTIC:
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
        if self.solver in _STOCHASTIC:
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

    def _fit_lbfgs(self, X, Y, sample_weight):
        loss = self._loss()
        offset = self._loss_offset(Y, sample_weight)
        X, y, sample_weight = self._core_data(X, Y, sample_weight, loss)
        model = self._model
        model.float64_sums = True  # full batch: sums independent of the order of the rows
        flat, grads = model.flat_params(), model.flat_grads()

        def loss_and_grad(x):
            flat[...] = x
            value = model.loss_and_grad(X, y, loss, sample_weight)
            return value + offset, grads.astype(np.float64)

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        result = scipy.optimize.minimize(
            loss_and_grad, flat.astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = result.fun
        flat[...] = result.x

    def _fit_stochastic(self, X, Y, sample_weight, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
            self._lr_schedule = self.learning_rate if self.solver == "sgd" else "constant"
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            should_stratify = self._is_classifier() and self.n_outputs_ == 1
            stratify = Y if should_stratify else None
            split = train_test_split(
                X, Y, *([] if sample_weight is None else [sample_weight]),
                random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify)
            X, X_val, Y, Y_val = split[:4]
            sample_weight, sw_val = (None, None) if sample_weight is None else split[4:]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            y_val = self._decode(Y_val)
        else:
            X_val = y_val = sw_val = None

        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        loss = self._loss()
        offset = self._loss_offset(Y, sample_weight)
        X, y, sample_weight = self._core_data(X, Y, sample_weight, loss)
        # One batch per epoch: sums in float64, so that a sample of weight k trains as k copies
        # of it would (and the order of the rows does not matter).
        self._model.float64_sums = batch_size >= n_samples
        clip = clip_threshold(self.clip_grad_norm)
        epochs = 1 if incremental else self.max_iter
        bar = ProgressBar(epochs) if self.progress else None
        if bar is not None:
            bar.on_train_begin(self._model, self._optimizer)
        try:
            self.n_iter_ = 0
            order = np.arange(n_samples)
            for epoch in range(epochs):
                start = time.perf_counter()
                if self.shuffle:  # as scikit-learn's utils.shuffle: the last epoch's order,
                    order = order[self._random_state.permutation(n_samples)]  # shuffled again
                progress = None
                if bar is not None:
                    bar.on_epoch_begin(epoch, {"steps": -(-n_samples // batch_size),
                                               "samples": n_samples})
                    progress = progress_reporter([bar], epoch)
                self.loss_ = self._epoch(X, y, sample_weight, batch_size,
                                         order if self.shuffle else None, loss, clip,
                                         progress) + offset
                self.n_iter_ += 1
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if bar is not None:
                    bar.on_epoch_end(epoch, {"loss": self.loss_,
                                             "time": time.perf_counter() - start})
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
                if self._lr_schedule == "invscaling":
                    self._set_learning_rate(self.learning_rate_init
                                            / (self.t_ + 1) ** self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if self._trigger_stopping(msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and "
                                  "the optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            if bar is not None:
                bar.on_train_end()
        if early_stopping:  # restore the best weights
            self._model.flat_params()[...] = self._best_params

    def _epoch(self, X, y, sample_weight, batch_size, order, loss, clip, progress):
        """One pass over (X, y) in mini-batches of the rows in `order` (an index array, or
        None: in order), in one C++ call; returns the mean of the batch losses, weighted by
        their sizes. progress: train_epoch's (the progress bar's reporter), or None."""
        stats = self._model.train_epoch(X, y, loss, self._optimizer, batch_size, shuffle=False,
                                        clip=clip, progress=progress,
                                        sample_weight=sample_weight, order=order)
        if stats["error"] is not None:  # Ctrl-C: the model is as after the last step
            raise stats["error"]
        try:
            check_step(stats["status"], epoch=self.n_iter_, step=stats["steps"],
                       loss=stats["bad_loss"])
        except TrainingDiverged as e:
            raise ValueError(f"Solver produced non-finite parameter weights ({e.cause} at "
                             f"iteration {self.n_iter_ + 1}, the step was not applied). The "
                             "input data may contain large values and need to be "
                             "preprocessed.") from None
        return stats["loss"]

    def _trigger_stopping(self, msg):
        """scikit-learn's rule: stop, or for learning_rate='adaptive' divide the learning
        rate by 5 until it is 1e-6 or less."""
        if self._lr_schedule != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._optimizer.lr <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set_learning_rate(self._optimizer.lr / 5.0)
        if self.verbose:
            print(msg + " Setting learning rate to %f" % self._optimizer.lr)
        return False

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        if early_stopping:
            self.validation_scores_.append(self._score(X, y, sample_weight=sample_weight))
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_params = self._model.flat_params().copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

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

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

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

    # -- pickling: the bytes of a steepest archive -----------------------------------------
    def __getstate__(self):
        """Parameters and fitted state as JSON and plain arrays in a steepest archive; the
        model as its file's bytes, the optimizer's state as its archive's (rebuilt over the
        model when unpickled)."""
        arrays, header = {}, {"format": ESTIMATOR_FORMAT, "version": FORMAT_VERSION}
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("coefs_", "intercepts_", "_optimizer")}
        header["state"] = _encode(state, arrays, "state")
        if "_optimizer" in self.__dict__:
            opt = self._optimizer.__getstate__()
            arrays["optimizer"] = _as_bytes_array(opt[optim.OPTIMIZER_FORMAT])
            header["optimizer"] = {"type": type(self._optimizer).__name__,
                                   "params": opt["params"]}
        header["arrays"] = {name: [list(a.shape), a.dtype.str] for name, a in arrays.items()}
        return {ESTIMATOR_FORMAT: archive_bytes(header, arrays)}

    def __setstate__(self, state):
        header, arrays = read_archive(state[ESTIMATOR_FORMAT], ESTIMATOR_FORMAT,
                                      _declared_arrays)
        self.__dict__.update(_decode(header["state"], arrays))
        if "optimizer" in header:
            kind = optim.OPTIMIZERS[header["optimizer"]["type"]]
            self._optimizer = kind.__new__(kind)
            self._optimizer.__setstate__({
                "model": self._model, "params": header["optimizer"]["params"],
                optim.OPTIMIZER_FORMAT: arrays["optimizer"].tobytes()})
        if hasattr(self, "_model"):
            self._attach_views()


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier, trained by steepest
    (see steepest.sklearn for the few differences and the extra parameters)."""

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, weight_decay=0.01, class_weight=None, clip_grad_norm=None,
                 dtype="float32", n_threads=None, progress=False):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss="log_loss", shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            dropout=dropout, weight_decay=weight_decay, clip_grad_norm=clip_grad_norm,
            dtype=dtype, n_threads=n_threads, progress=progress)
        self.class_weight = class_weight

    _score_function = staticmethod(accuracy_score)

    def _is_classifier(self):
        return True

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def _class_weighted(self, Y, sample_weight, incremental):
        if self.class_weight is None:
            return sample_weight
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multi-label targets")
        if incremental and self.class_weight == "balanced":
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: "
                             "pass the class weights as a dict")
        weights = compute_sample_weight(self.class_weight, self._decode(Y))
        return weights if sample_weight is None else weights * sample_weight

    def _decode(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One iteration over (X, y). classes: every class, needed on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability of each class (n_samples, n_classes), in the order of classes_."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor, trained by steepest
    (see steepest.sklearn for the few differences and the extra parameters)."""

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, weight_decay=0.01, clip_grad_norm=None, dtype="float32",
                 n_threads=None, progress=False):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss=loss, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dropout=dropout, weight_decay=weight_decay,
            clip_grad_norm=clip_grad_norm, dtype=dtype, n_threads=n_threads, progress=progress)

    _score_function = staticmethod(r2_score)

    def _is_classifier(self):
        return False

    def _output_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        return X, y

    def _decode(self, Y):
        return Y[:, 0] if Y.shape[1] == 1 else Y

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One iteration over (X, y)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred


# -- output activations ------------------------------------------------------------------------
_OUTPUTS = {"softmax": softmax, "logistic": sigmoid, "identity": lambda z: z, "exp": np.exp}


def _dense(X):
    """Sparse input as a dense array (the first layer's product is dense either way)."""
    return X.toarray() if hasattr(X, "toarray") else X


# -- the estimator's state as JSON and plain arrays ---------------------------------------------
def _encode(value, arrays: dict, path: str):
    """value as JSON, its arrays moved into `arrays` (named by their path), a steepest model
    as the bytes of its own file. Only the kinds of values an estimator holds."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return {"scalar": [value.dtype.str, value.item()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, arrays, f"{path}.{i}") for i, v in enumerate(value)]
        return items if isinstance(value, list) else {"tuple": items}
    if isinstance(value, dict):
        return {"dict": [[_encode(k, arrays, f"{path}.k{i}"), _encode(v, arrays, f"{path}.{i}")]
                         for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, np.ndarray):
        strings = value.dtype == object  # feature names, labels: strings
        arrays[path] = value.astype(str) if strings else value
        return {"array": path, "object": bool(strings)}
    if isinstance(value, np.random.RandomState):
        return {"random_state": _encode(value.get_state(), arrays, path)}
    if isinstance(value, LabelBinarizer):
        return {"label_binarizer": _encode(dict(value.__dict__), arrays, path)}
    if isinstance(value, Sequential):
        arrays[path] = _as_bytes_array(value.__getstate__()[MODEL_FORMAT])
        return {"model": path}
    raise TypeError(f"cannot pickle {path} ({type(value).__name__}): a steepest estimator "
                    "pickles plain values only")


def _decode(value, arrays: dict):
    """The inverse of _encode."""
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "dict" in value:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value["dict"]}
    if "tuple" in value:
        return tuple(_decode(v, arrays) for v in value["tuple"])
    if "scalar" in value:
        return np.dtype(value["scalar"][0]).type(value["scalar"][1])
    if "array" in value:
        a = arrays[value["array"]]
        return a.astype(object) if value["object"] else a
    if "random_state" in value:
        random_state = np.random.RandomState()
        random_state.set_state(_decode(value["random_state"], arrays))
        return random_state
    if "label_binarizer" in value:
        binarizer = LabelBinarizer()
        binarizer.__dict__.update(_decode(value["label_binarizer"], arrays))
        return binarizer
    if "model" in value:
        model = Sequential.__new__(Sequential)
        model.__setstate__({MODEL_FORMAT: arrays[value["model"]].tobytes()})
        return model
    raise ValueError(f"<bytes>: unknown value {value!r} in a pickled estimator")


def _as_bytes_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def _declared_arrays(header: dict) -> dict:
    """{name: (shape, dtype)} of the arrays a pickled estimator's header declares."""
    try:
        declared = {name: (tuple(int(d) for d in shape), np.dtype(dtype))
                    for name, (shape, dtype) in header["arrays"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"<bytes>: bad array declarations in a pickled estimator ({e})") \
            from None
    if any(dtype.kind not in "biufU" for _, dtype in declared.values()):
        raise ValueError("<bytes>: a pickled estimator may hold plain arrays only")
    return declared
