"""ConfusionMatrix against hand-computed numbers (semseg's definitions)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segdata.metrics import ConfusionMatrix


def _example() -> ConfusionMatrix:
    # target: 0 0 0 1 1 2 255 255 ; pred: 0 0 1 1 2 2 0 1
    target = np.array([[0, 0, 0, 1], [1, 2, 255, 255]], np.uint8)
    pred = np.array([[0, 0, 1, 1], [2, 2, 0, 1]], np.uint8)
    return ConfusionMatrix(3).update(pred, target)


def test_matrix_counts_and_ignore() -> None:
    cm = _example()
    # rows = target, cols = pred; the two 255 targets are not counted at all
    np.testing.assert_array_equal(cm.matrix[:, :3], [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert cm.matrix.sum() == 6


def test_iou_miou_macc_allacc_by_hand() -> None:
    cm = _example()
    # class 0: I=2, U=3+2-2=3; class 1: I=1, U=2+2-1=3; class 2: I=1, U=1+2-1=2
    np.testing.assert_allclose(cm.iou(), [2 / 3, 1 / 3, 1 / 2])
    assert cm.miou() == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    # per-class accuracy: 2/3, 1/2, 1/1
    assert cm.macc() == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert cm.all_acc() == pytest.approx(4 / 6)


def test_absent_classes_are_nan_and_skipped() -> None:
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 0, 1]), np.array([0, 1, 1]))
    iou = cm.iou()
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert cm.miou() == pytest.approx((1 / 2 + 1 / 2) / 2)
    # class 2 predicted but never in the target: IoU 0, counted in mIoU, not in mAcc
    cm.update(np.array([2]), np.array([0]))
    assert cm.iou()[2] == 0.0
    assert cm.miou() == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)
    assert cm.macc() == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_out_of_range_prediction_is_a_miss_only() -> None:
    cm = ConfusionMatrix(2).update(np.array([0, 7, 1]), np.array([0, 0, 1]))
    np.testing.assert_allclose(cm.iou(), [1 / 2, 1.0])
    assert cm.all_acc() == pytest.approx(2 / 3)


def test_merge_equals_one_pass_and_empty_is_nan() -> None:
    rng = np.random.default_rng(0)
    p, t = rng.integers(0, 5, (2, 64, 64))
    t[:4] = 255
    whole = ConfusionMatrix(5).update(p, t)
    a = ConfusionMatrix(5).update(p[:32], t[:32])
    a.merge(ConfusionMatrix(5).update(p[32:], t[32:]))
    np.testing.assert_array_equal(a.matrix, whole.matrix)
    with pytest.raises(ValueError):
        a.merge(ConfusionMatrix(4))
    empty = ConfusionMatrix(3)
    assert math.isnan(empty.miou()) and math.isnan(empty.all_acc())


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(2).update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_to_dict_is_json() -> None:
    d = ConfusionMatrix(3).update(np.array([0, 1]), np.array([0, 0])).to_dict(("a", "b", "c"))
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["per_class"]["a"] == {"iou": 0.5, "acc": 0.5, "pixels": 2}
    assert back["per_class"]["c"]["iou"] is None
    assert back["miou"] == pytest.approx(0.25)
    assert back["all_acc"] == pytest.approx(0.5)
