"""A model's inference (part of the model): outputs, labels and probabilities, and the
evaluation's loss and accuracy (also as sums that several processes add up).

``Sequential`` inherits ``ModelInference``: predict runs the core network (``_net``, built by
the constructor in steepest.model) in eval mode, with the GIL released; a memory map or a
list of .npy files is read a chunk at a time (steepest.data).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

from . import _checks, _core, data
from .losses import Loss, check_loss, sigmoid, softmax


class ModelInference:
    """Predicting with and evaluating a built Sequential (see the module's notes)."""

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Outputs (N, out_features) for X (N, in_features); dropout off. Thread-safe: runs
        with the GIL released and may be called from many threads at once. A memory map or a
        list of .npy paths is read a chunk at a time."""
        self._require_adapted()
        shards = data.shards_of(X, "X")
        if shards is None:
            return self._net.infer(_checks.features(X, "X", self.in_features, self.dtype))
        if not len(shards):
            raise ValueError("X is empty: it has no samples")
        out = np.empty((len(shards), self.out_features), self.dtype)
        for first, rows, name in shards.chunks():
            out[first:first + len(rows)] = self._net.infer(
                _checks.features(rows, name, self.in_features, self.dtype))
        return out

    def predict_classes(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels (N,): the largest output's index, or for one output the sign of
        its logit (0 or 1), mapped through classes_ when the model has them. A multi-label
        model (trained with BinaryCrossEntropy on several outputs) gives 0/1 per output
        (N, outputs). A model ending in Softmax or Sigmoid is thresholded at 0.5."""
        out = self.predict(X)
        threshold = 0.5 if self._ends_with_probabilities() else 0.0
        if self.out_features == 1:
            index = (out[:, 0] > threshold).astype(np.int64)
        elif self.multilabel:
            return (out > threshold).astype(np.int64)
        else:
            index = out.argmax(axis=1)
        return index if self._classes is None else self._classes[index]

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Probabilities from the outputs, which are logits for CrossEntropy and
        BinaryCrossEntropy: the softmax over the outputs (N, C) of a multi-class model; the
        sigmoid of each output (N, outputs) for one output (the positive class's probability,
        as torch.sigmoid gives it) and for a multi-label model. A model ending in Softmax or
        Sigmoid already outputs probabilities: they are returned as they are."""
        out = self.predict(X)
        if self._ends_with_probabilities():
            return out
        return sigmoid(out) if self.out_features == 1 or self.multilabel else softmax(out)

    def evaluate(self, X: ArrayLike, y: ArrayLike, loss: Loss,
                 sample_weight: Optional[ArrayLike] = None) -> dict[str, float]:
        """{"loss": mean loss (weighted by sample_weight when given, see steepest.losses),
        "accuracy": fraction correct (classification losses, unweighted: the largest logit at
        the label for CrossEntropy, rows with its ignore_index left out; every logit on the
        target's side of 0 for BinaryCrossEntropy)}."""
        check_loss(loss)
        self._require_adapted()
        X, y = self.check_data(X, y, loss)
        sample_weight = _checks.sample_weight(sample_weight, "sample_weight", len(X))
        return self.evaluate_checked(X, y, loss, sample_weight)

    def evaluate_checked(self, X: np.ndarray, y: np.ndarray, loss: Loss,
                         sample_weight: Optional[np.ndarray] = None) -> dict[str, float]:
        """evaluate() on (X, y) as check_data returns them and sample_weight as
        check_sample_weight does: nothing is checked again (fit's validation data, checked
        once before the first epoch)."""
        return self.evaluation(self.evaluate_sums(X, y, loss, sample_weight), loss)

    def evaluate_sums(self, X: np.ndarray, y: np.ndarray, loss: Loss,
                      sample_weight: Optional[np.ndarray] = None,
                      rows: Optional[tuple[int, int]] = None) -> dict[str, float]:
        """The sums an evaluation of rows [start, stop) = rows (all by default) adds up, so
        that the sums of several shares (processes) give the whole's (see evaluation):
        "loss" (the loss times its weight), "weight" (the rows, or their weights as the loss
        counts them), "correct" and "scored" (classification: rows right, rows counted)."""
        start, stop = rows if rows is not None else (0, len(X))
        sums = {"loss": 0.0, "weight": 0.0, "correct": 0, "scored": 0}
        first = start  # the pieces are consecutive rows
        for xs, ys in data.pieces(X, y, start, stop):  # one piece for arrays in memory
            first += len(xs)
            if not len(xs):
                continue
            ws = None if sample_weight is None else sample_weight[first - len(xs):first]
            out = self._net.infer(np.ascontiguousarray(xs, dtype=self.dtype))
            ys = loss.targets(ys, len(ys), self.out_features, self.dtype)
            value, _, weight = _core.loss_forward(loss._spec, out, ys, ws)
            sums["loss"] += value * weight
            sums["weight"] += weight
            if loss.classification:
                sums["correct"] += int(np.count_nonzero(loss.correct(out, ys)))
                sums["scored"] += loss.scored(ys)
        return sums

    @staticmethod
    def evaluation(sums: dict[str, float], loss: Loss) -> dict[str, float]:
        """{"loss": mean loss, "accuracy": fraction correct (classification)} from
        evaluate_sums's sums."""
        result = {"loss": sums["loss"] / sums["weight"] if sums["weight"] > 0 else 0.0}
        if loss.classification:
            result["accuracy"] = sums["correct"] / max(sums["scored"], 1)
        return result

