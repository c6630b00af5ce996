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

The package: the two estimators here (what differs: labels and output activation, input
checks, predictions), their shared base in ``common`` (parameters, network, objective, fit,
predicting), the solvers in ``solvers`` and the pickled state in ``state``.
"""
from __future__ import annotations

import numpy as np

try:
    from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import column_or_1d
    from sklearn.utils._param_validation import StrOptions
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (_check_partial_fit_first_call, type_of_target,
                                          unique_labels)
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - the extra is installed in the test run
    raise ImportError("steepest.sklearn needs scikit-learn >= 1.6 and SciPy: "
                      "pip install 'steepest[sklearn]'") from e

from ..labels import class_weighted
from .common import BaseMLP

__all__ = ["MLPClassifier", "MLPRegressor"]


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier, trained by steepest
    (see steepest.sklearn for the few differences and the extra parameters)."""

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
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
        return X, self._one_hot(y)

    def _one_hot(self, y):
        """The binarizer's transform of y (every label of y is one of classes_ here): one
        column for two classes, one per class otherwise, as bool. Single-label targets are
        looked up in the sorted classes_ directly (the binarizer checks the target type twice
        more and builds a sparse matrix: most of a short fit's set-up time)."""
        binarizer, classes = self._label_binarizer, self.classes_
        if binarizer.y_type_ in ("binary", "multiclass") and y.ndim == 1 and len(classes) > 1:
            index = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
            if np.array_equal(classes[index], y):
                if len(classes) == 2:
                    return (index == 1)[:, None]
                return index[:, None] == np.arange(len(classes))
        return binarizer.transform(y).astype(bool)

    def _class_weighted(self, Y, sample_weight, incremental):
        if self.class_weight is None:
            return sample_weight
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multi-label targets")
        if incremental and self.class_weight == "balanced":
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: "
                             "pass the class weights as a dict")
        index = Y.argmax(axis=1) if Y.shape[1] > 1 else Y[:, 0].astype(np.int64)
        class_weight = self.class_weight
        if isinstance(class_weight, dict):  # scikit-learn's weights of the classes present
            present = np.unique(index)
            labels = self.classes_[present]
            weights = compute_class_weight(class_weight, classes=labels, y=labels)
            class_weight = dict(zip(present.tolist(), weights))
        # scikit-learn's 'balanced' counts the rows, not their sample weights
        return class_weighted(class_weight, index, len(self.classes_), sample_weight,
                              count_weights=False)

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


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor, trained by steepest
    (see steepest.sklearn for the few differences and the extra parameters)."""

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
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

