"""A model's training entry points (part of the model): the data checked once, one step,
one C++ epoch, the full-batch objective, and fit (the loop itself is steepest.training's).

``Sequential`` inherits ``ModelTraining``, the way Keras's Model inherits its Trainer: these
methods run the core network (``_net``, built by the constructor in steepest.model) with the
optimizer's core object (``optimizer._impl``); check_data converts (X, y) once, and
train_epoch, loss_and_grad and the evaluation take its results without checking them again.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _checks, data, training
from .archive import PathLike
from .callbacks import Callback
from .errors import check_step
from .losses import LOSSES, BinaryCrossEntropy, CrossEntropy, Loss, check_loss
from .optim import Optimizer, check_optimizer, clip_threshold

_CORE_LOSSES = frozenset(LOSSES.values())  # losses whose targets are exactly the core's rules


class ModelTraining:
    """Training a built Sequential (see the module's notes)."""

    def _note_training_loss(self, loss) -> None:
        """Before training with loss: remembers a multi-label model and warns (once per loss
        type) when a Sigmoid or Softmax feeds a loss that applies it itself."""
        if loss.classification:
            self.multilabel = isinstance(loss, BinaryCrossEntropy) and self.out_features > 1
        if type(loss) in self._losses_seen:
            return
        self._losses_seen.add(type(loss))
        if loss.classification and self._ends_with_probabilities():
            inner = "softmax" if isinstance(loss, CrossEntropy) else "sigmoid"
            warnings.warn(
                f"the model ends with {type(self.layers[-1]).__name__}, but "
                f"{type(loss).__name__} takes logits and applies the {inner} itself, so "
                "training sees it twice and learns badly: remove the last layer "
                "(predict_proba gives probabilities)", UserWarning, stacklevel=3)


    def check_data(self, X: ArrayLike, y: ArrayLike, loss: Loss,
                   names: tuple[str, str] = ("X", "y"),
                   training: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) validated and converted once for this model and loss: C-contiguous arrays of
        the model's dtype (int64 class indices for CrossEntropy; labels are mapped through
        classes_). Errors name the arguments `names`. With training (the data to train on),
        labels that are not class indices set classes_, and the loss is checked against the
        last layer. A memory map or a list of .npy paths is validated a chunk at a time and
        returned as steepest.data.Shards, read in place (converted per batch): its labels
        must be class indices. train_epoch and evaluate_checked take data from here and check
        nothing again."""
        X = self._features(X, names[0])
        classes = self._classes
        if training:
            self._note_training_loss(loss)
        shards = data.shards_of(y, names[1])
        if shards is not None:
            if classes is not None and loss.classification:
                raise ValueError(f"{names[1]} is read in place, so it must hold class indices, "
                                 "but this model maps its labels through classes_: pass "
                                 f"{names[1]} as an array in memory")
            return X, data.validate(shards, lambda rows, name: loss.targets(
                rows, len(rows), self.out_features, self.dtype, name), names[1], len(X))
        if training and classes is None and loss.classification:
            classes = loss.learn_classes(y, self.out_features, names[1])
        y = loss.targets(y, len(X), self.out_features, self.dtype, names[1], classes)
        if classes is not None:
            self.classes_ = classes
        return X, y

    def _features(self, X, name):
        """X converted once, or Shards of a memory map / .npy list validated in chunks."""
        shards = data.shards_of(X, name)
        if shards is None:
            return _checks.features(X, name, self.in_features, self.dtype)
        return data.validate(shards, lambda rows, part: _checks.features(
            rows, part, self.in_features, self.dtype), name)

    def train_step(self, x: ArrayLike, y: ArrayLike, loss: Loss, optimizer: Optimizer,
                   clip_grad_norm: Optional[float] = None, *,
                   sample_weight: Optional[ArrayLike] = None) -> float:
        """zero_grad + forward + loss + backward + optimizer step in one C++ call; returns the
        loss. sample_weight (N,): the loss is then sum_i w_i l_i / sum_i w_i (see
        steepest.losses). Raises TrainingDiverged, without updating, if the loss or gradients
        are not finite."""
        check_loss(loss)
        check_optimizer(optimizer, self)
        if self._rescales:
            self._require_adapted()
        clip = clip_threshold(clip_grad_norm)
        self._note_training_loss(loss)
        if (self._classes is not None or not (type(x) is np.ndarray and type(y) is np.ndarray
                                              and type(loss) in _CORE_LOSSES)):
            x, y = self.check_data(x, y, loss, ("x", "y"), training=True)
        w = _checks.sample_weight(sample_weight, "sample_weight", len(x) if x.ndim else 0)
        # The core checks the batch by its rules first (the one implementation of them) and
        # runs the step only when it passes; otherwise convert (labels that are not class
        # indices: through classes_, learnt here), or raise naming x and y.
        check, status, value = self._net.train_step(x, y, loss._spec, optimizer._impl, clip, w)
        if not check.ok:
            x, y = self.check_data(x, y, loss, ("x", "y"), training=True)
            check, status, value = self._net.train_step(x, y, loss._spec, optimizer._impl, clip,
                                                         w)
        self._last = None  # the core's forward state now belongs to this step
        check_step(status, loss=value)
        return value


    # -- the whole loop ---------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, *, loss: Loss, optimizer: Optimizer,
            epochs: int = 1, batch_size: Optional[int] = 32, shuffle: bool = True,
            validation_data: Optional[tuple[ArrayLike, ArrayLike]] = None,
            validation_split: Optional[float] = None,
            callbacks: Sequence[Callback] = (), verbose: int = 1,
            clip_grad_norm: Optional[float] = None, checkpoint: Optional[PathLike] = None,
            diagnostics: bool = False, distributed: Any = None,
            sample_weight: Optional[ArrayLike] = None,
            class_weight: Union[None, str, dict[Any, float]] = None
            ) -> dict[str, list[Any]]:
        """Trains for `epochs` passes over (X, y); each epoch is one C++ call with the GIL
        released.

        batch_size=None is (full) batch gradient descent: one update per epoch from the whole
        data set; batch_size=1 is stochastic gradient descent: one update per sample;
        anything between is mini-batch gradient descent.

        validation_data=(X_val, y_val) (or (X_val, y_val, sample_weight_val)) is evaluated
        after every epoch; validation_split=0.1 instead holds out the last tenth of (X, y) (and
        of sample_weight) for it, before any shuffling (as Keras).

        sample_weight (N,): each row's weight, >= 0; every batch's loss is then sum_i w_i l_i
        / sum_i w_i over its rows (scikit-learn's MLP and Keras's convention), the weights
        shuffled with their rows. class_weight: "balanced" (n_samples / (n_classes *
        count(class)), scikit-learn's, counting sample weights) or {class: weight} (classes
        left out weigh 1), for CrossEntropy with class labels or a one-output
        BinaryCrossEntropy with two classes: multiplies each row's sample weight by its
        class's weight. The history's accuracy stays the unweighted fraction of rows.
        verbose: 0 silent, 1 a progress bar (see steepest.progress), 2 a line per epoch.

        Returns the history (also kept as ``model.history``): per epoch "loss", "val_loss"
        (with validation data), "accuracy"/"val_accuracy" (classification), "lr", "time"
        (seconds) and "grad_norm" (per Dense layer, the mean L2 norm of its gradient over the
        epoch's steps: the vanishing/exploding-gradient signal). diagnostics=True adds, per
        epoch, weight norms, update-to-weight ratios, the first/last layer gradient ratio, the
        fraction of dead ReLU and saturated sigmoid/tanh units (see steepest.diagnostics), and
        warns (GradientWarning) when gradients vanish or explode.

        Failure modes: a non-finite loss or gradient raises TrainingDiverged with the model as
        after the last finite step (an update that would overflow a parameter restores the
        state of the epoch's start). Ctrl-C stops between two steps and re-raises
        KeyboardInterrupt; ``model.history`` keeps the finished epochs. With checkpoint=path
        the whole training state is written atomically after every epoch, and a later fit
        with the same model, optimizer, loss, data and batch size resumes from it and ends
        with bitwise the same weights as an uninterrupted run. The checkpoint's folder is
        checked before the first step, and temporaries of a checkpoint write killed in an
        earlier run are removed. Resuming restores the model, optimizer, random generator,
        epoch, history and the state of every callback the checkpoint has; callbacks that
        steer training (EarlyStopping, schedules, custom ones with state) must be the same
        as in the checkpoint's run, loggers and other observers may be added (they start
        fresh) or dropped (see steepest.checkpoint).

        X and y may be memory maps or lists of .npy paths, read in place (steepest.data).
        distributed=True (run under mpiexec or srun): data-parallel over the MPI ranks, each
        rank training on its share of every global batch of batch_size rows, the gradients
        summed before every update; see steepest.distributed.
        """
        return training.fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs,
                            batch_size=batch_size, shuffle=shuffle,
                            validation_data=validation_data,
                            validation_split=validation_split, callbacks=callbacks,
                            verbose=verbose, clip_grad_norm=clip_grad_norm,
                            checkpoint=checkpoint, diagnostics=diagnostics,
                            distributed=distributed, sample_weight=sample_weight,
                            class_weight=class_weight)

    def train_epoch(self, X: np.ndarray, y: np.ndarray, loss: Loss, optimizer: Optimizer,
                    batch_size: int, shuffle: bool = True, clip: float = 0.0,
                    progress: Optional[Callable[[int, int, float], None]] = None,
                    group: Any = None,
                    on_step: Optional[Callable[[int, float], None]] = None,
                    sample_weight: Optional[np.ndarray] = None,
                    order: Optional[np.ndarray] = None) -> dict[str, Any]:
        """One epoch of train_step over (X, y) from check_data (the core checks their shapes,
        types and label range again, not their values), in batches of batch_size (the rows
        shuffled by the model's generator, or in `order`: N row indices), in one C++ call with
        the GIL released; clip: clip_grad_norm's threshold (0: off); progress: None or a
        function called as progress(steps, samples, mean loss) between steps, at most every
        50 ms; on_step: None or a function called as on_step(step, loss) after every step
        (fit's per-batch callbacks: it may change the optimizer, not the model; what it raises
        ends the epoch after that step); sample_weight: one weight per row, from
        check_sample_weight. fit's loop calls it; it stops at the first non-finite loss or
        gradient, or at Ctrl-C (within a step: the step is abandoned). Returns the core's
        record: "loss" (mean), "steps", "samples", "correct", "status" (the core's
        StepStatus), "bad_loss", "grad_norms" (per Dense layer, mean over the steps), "error"
        (the exception a signal or the sum raised, or None), "sum_seconds" and "sum_error".
        X and y may be steepest.data.Shards (read in place). group (a
        steepest.distributed.Group of several ranks): data-parallel, this process trains on
        its share of every global batch of batch_size rows and the gradients are summed over
        the group before each update ("sum_seconds": the time in those sums, "sum_error": the
        exception a failed sum raised, or None); it takes no sample weights and no l2
        penalty."""
        if order is not None:
            order = np.asarray(order)
            if (order.dtype != np.int64 or order.shape != (len(X),) or (len(X) and (
                    order.min() < 0 or order.max() >= len(X) or not (np.bincount(order, minlength=len(X)) == 1).all()))):
                raise ValueError("order must be a permutation of the rows (int64)")
            order = np.ascontiguousarray(order)
        self._last = None  # backward() needs a new forward() after training
        parts = [d.parts if isinstance(d, data.Shards) else d for d in (X, y)]
        parallel = {} if group is None or group.size == 1 else {
            "rank": group.rank, "size": group.size,
            "sum": group.in_place_sum(self._net.reduce_buffer), "stop": group.stop_requested}
        return self._net.train_epoch(*parts, batch_size, bool(shuffle), loss._spec,
                                     optimizer._impl, clip, progress, on_step=on_step,
                                     weights=sample_weight, order=order, **parallel)

    def check_sample_weight(self, sample_weight, n_samples: int, name="sample_weight"):
        """sample_weight as train_epoch and loss_and_grad take it: None, or (N,) float64,
        finite, non-negative, not all zero."""
        return _checks.sample_weight(sample_weight, name, n_samples)

    def loss_and_grad(self, X, y, loss, sample_weight=None, training: bool = False) -> float:
        """The loss on the whole of (X, y) (from check_data; sample_weight from
        check_sample_weight), its l2 penalty included, with its gradient in flat_grads()
        (overwritten): one C++ call, no update. The objective of full-batch optimizers such
        as L-BFGS. Dropout is active when training."""
        self._last = None
        return self._net.gradient(X, y, loss._spec, sample_weight, bool(training))

    @property
    def float64_sums(self) -> bool:
        """Whether training sums the weight and bias gradients over the rows in float64
        (rounded once): the gradient then depends neither on the order of the rows nor on
        whether a row of sample weight k stands for k copies of itself. Off by default; the
        weight-gradient products take about 2.5x as long."""
        return self._net.float64_sums

    @float64_sums.setter
    def float64_sums(self, on: bool) -> None:
        self._net.float64_sums = bool(on)

