"""The core's batch rules (check_batch.hpp) as Python sees them: the one implementation of what
a batch must be, asked by the validation and re-checked by every entry point that reads data,
so that even the trainer's unchecked entry points cannot read out of bounds."""
from __future__ import annotations

import numpy as np
import pytest

import steepest as st
from steepest import _core

RULE = _core.BatchRule


def spec(loss):
    return loss._spec


@pytest.mark.parametrize("x, rule", [
    (np.zeros((3, 4), np.float32), RULE.Ok),
    (np.zeros(4, np.float32), RULE.XShape),
    (np.zeros((0, 4), np.float32), RULE.XEmpty),
    (np.zeros((3, 5), np.float32), RULE.XFeatures),
    (np.zeros((3, 4), np.float64), RULE.XType),
    (np.zeros((3, 4), ">f4"), RULE.XType),
    (np.zeros((4, 3), np.float32).T, RULE.XLayout),
    (np.array([[0, 0, 0, np.nan]] * 3, np.float32), RULE.XNonFinite),
])
def test_feature_rules(x, rule):
    check = _core.check_features(x, 4, "float32")
    assert check.rule == rule and check.ok == (rule == RULE.Ok)
    if rule == RULE.XFeatures:
        assert (check.got, check.want) == (5, 4)


def test_target_rules():
    ce, bce, mse = (spec(st.losses.CrossEntropy()), spec(st.losses.BinaryCrossEntropy()),
                    spec(st.losses.MSE()))
    labels = np.array([0, 2, 1], np.int64)
    assert _core.check_targets(labels, 3, 3, ce, "float32").ok
    assert _core.check_targets(labels, 4, 3, ce, "float32").rule == RULE.YLength
    assert _core.check_targets(labels.astype(np.int32), 3, 3, ce, "float32").rule == RULE.YType
    assert _core.check_targets(labels[:, None], 3, 3, ce, "float32").rule == RULE.YShape
    wide = _core.check_targets(np.array([0, 7, -1], np.int64), 3, 3, ce, "float32")
    assert wide.rule == RULE.LabelRange and (wide.label_min, wide.label_max, wide.want) == (-1, 7, 3)
    probs = np.array([[0.0], [1.0], [1.5]], np.float64)
    assert _core.check_targets(probs, 3, 1, bce, "float64").rule == RULE.TargetRange
    assert _core.check_targets(probs, 3, 1, mse, "float64").ok
    assert _core.check_targets(probs[:, 0], 3, 1, mse, "float64").ok  # (rows,) when C is 1
    assert _core.check_targets(probs, 3, 2, mse, "float64").rule == RULE.YShape


def test_step_status_is_an_enum():
    model = st.Sequential(st.Dense(2, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=1e30)
    X, y = np.ones((4, 2), np.float32) * 1e30, np.array([0, 1, 0, 1])
    with pytest.raises(st.TrainingDiverged, match="non-finite"):
        model.train_step(X, y, st.losses.CrossEntropy(), opt)
    stats = model.train_epoch(*model.check_data(np.ones((4, 2)), y, st.losses.CrossEntropy()),
                              st.losses.CrossEntropy(), st.optim.SGD(model.parameters(), lr=0.1),
                              batch_size=2)
    assert stats["status"] == _core.StepStatus.Ok


def test_unchecked_entry_points_refuse_what_would_read_out_of_bounds():
    """train_epoch trusts check_data for values, never for shapes or label range."""
    model = st.Sequential(st.Dense(4, 3), seed=0)
    loss, opt = st.losses.CrossEntropy(), st.optim.SGD(model.parameters(), lr=0.1)
    X = np.zeros((5, 4), np.float32)
    before = model.flat_params().copy()
    bad = [(X, np.array([0, 1, 2, 3, 9])),             # a label past the outputs
           (X, np.array([0, 1, 2], np.int64)),         # too few labels
           (np.zeros((5, 2), np.float32), np.zeros(5, np.int64)),  # too few features
           (np.zeros(20, np.float32), np.zeros(5, np.int64))]      # not 2-D
    # (Another numeric dtype reads nothing out of bounds: the epoch converts it per batch, as
    # for memory maps; tests/test_data.py.)
    for Xb, yb in bad:
        with pytest.raises((ValueError, TypeError)):
            model.train_epoch(Xb, yb, loss, opt, batch_size=2)
        with pytest.raises((ValueError, TypeError)):
            model.evaluate_checked(Xb, yb, loss)
    np.testing.assert_array_equal(model.flat_params(), before)


def test_train_step_converts_then_checks_once_more():
    model = st.Sequential(st.Dense(3, 2), seed=0)
    loss, opt = st.losses.CrossEntropy(), st.optim.SGD(model.parameters(), lr=0.1)
    fast = st.Sequential(st.Dense(3, 2), seed=0)
    fast_opt = st.optim.SGD(fast.parameters(), lr=0.1)
    X = np.arange(12, dtype=np.float64).reshape(4, 3) / 10  # converted to float32
    y = [0, 1, 1, 0]                                          # a list: converted to int64
    a = model.train_step(X, y, loss, opt)
    b = fast.train_step(X.astype(np.float32), np.array(y, np.int64), loss, fast_opt)
    assert a == b
    np.testing.assert_array_equal(model.flat_params(), fast.flat_params())
    # not class indices of 2 outputs, and three labels cannot name them (see test_labels)
    with pytest.raises(ValueError, match=r"y holds 3 distinct labels .* labels must be in "
                                         r"\[0, 1\]"):
        model.train_step(X.astype(np.float32), np.array([0, 1, 5, 0]), loss, opt)
    with pytest.raises(ValueError, match=r"y holds labels in \[0, 5\]"):
        model.evaluate(X.astype(np.float32), np.array([0, 1, 5, 0]), loss)
