"""scikit-learn's two ways of fitting an MLP, on steepest's core: 'lbfgs' (SciPy's L-BFGS-B
on the full-batch objective, one C++ call per evaluation) and the stochastic solvers (one
C++ epoch per iteration in scikit-learn's shuffled order, its learning-rate schedules,
early stopping on a held-out split and its stopping rules).

``Solvers`` is a part of the estimators' base class (steepest.sklearn.common), which
provides the model, the objective (_loss, _core_data, _loss_offset) and the scores.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result

from .. import optim
from ..errors import TrainingDiverged, check_step
from ..optim import clip_threshold
from ..progress import ProgressBar
from ..training import progress_reporter

STOCHASTIC = ("sgd", "adam", "adamw", "rmsprop", "adagrad")  # every solver but 'lbfgs'


class Solvers:
    """The solvers of a steepest.sklearn estimator (see the module's notes)."""

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

    def _check_solver(self):
        if self.solver not in STOCHASTIC:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

