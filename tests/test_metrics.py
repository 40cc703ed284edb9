"""Pixel accuracy, Dice, IoU and the confusion matrix against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import dice as scipy_dice_dissimilarity
from scipy.spatial.distance import jaccard as scipy_jaccard_distance

from unet_teach.metrics import (confusion_matrix, dice, dice_per_class, iou, iou_per_class,
                                mean_dice, mean_iou, pixel_accuracy, pixel_error,
                                segmentation_report)


def _random_pair(rng, shape, k=2, p_flip=0.2):
    target = rng.integers(0, k, shape)
    flip = rng.random(shape) < p_flip
    pred = np.where(flip, rng.integers(0, k, shape), target)
    return pred, target


def _scipy_dice(pred, target, c):
    """Dice of class c from scipy's Dice dissimilarity (1 - Dice for boolean vectors)."""
    return 1.0 - scipy_dice_dissimilarity((pred == c).ravel(), (target == c).ravel())


def _scipy_iou(pred, target, c):
    return 1.0 - scipy_jaccard_distance((pred == c).ravel(), (target == c).ravel())


# --------------------------------------------------------------------------- hand-computed


def test_tiny_case_by_hand():
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    target = np.array([[0, 0, 1], [1, 1, 0]])
    # class 1: TP = 2 (positions (0,2),(1,0)), FP = 1 (0,1), FN = 1 (1,1)
    # class 0: TP = 2 ((0,0),(1,2)), FP = 1 (1,1), FN = 1 (0,1)
    np.testing.assert_array_equal(confusion_matrix(pred, target), [[2, 1], [1, 2]])
    assert pixel_accuracy(pred, target) == pytest.approx(4 / 6)
    assert pixel_error(pred, target) == pytest.approx(2 / 6)
    np.testing.assert_allclose(dice_per_class(pred, target), [4 / 6, 4 / 6])
    np.testing.assert_allclose(iou_per_class(pred, target), [2 / 4, 2 / 4])
    assert dice(pred, target) == pytest.approx(2 / 3)
    assert iou(pred, target) == pytest.approx(0.5)
    assert iou(pred, target, cls=0) == pytest.approx(0.5)


def test_asymmetric_case_by_hand():
    pred = np.array([0, 1, 1, 1])
    target = np.array([0, 0, 1, 1])
    # row = true class, column = predicted class
    np.testing.assert_array_equal(confusion_matrix(pred, target), [[1, 1], [0, 2]])
    np.testing.assert_allclose(dice_per_class(pred, target), [2 / 3, 0.8])
    np.testing.assert_allclose(iou_per_class(pred, target), [0.5, 2 / 3])
    assert mean_dice(pred, target) == pytest.approx((2 / 3 + 0.8) / 2)
    assert mean_iou(pred, target) == pytest.approx((0.5 + 2 / 3) / 2)
    assert pixel_accuracy(pred, target) == 0.75
    assert pixel_error(pred, target) == 0.25
    # swapping pred and target transposes the confusion matrix, Dice/IoU are symmetric
    np.testing.assert_array_equal(confusion_matrix(target, pred), [[1, 0], [1, 2]])
    np.testing.assert_allclose(dice_per_class(target, pred), dice_per_class(pred, target))


def test_perfect_and_all_wrong():
    t = np.array([[0, 1], [1, 1]])
    assert pixel_accuracy(t, t) == 1.0 and pixel_error(t, t) == 0.0
    np.testing.assert_array_equal(dice_per_class(t, t), [1.0, 1.0])
    np.testing.assert_array_equal(iou_per_class(t, t), [1.0, 1.0])
    wrong = 1 - t
    assert pixel_accuracy(wrong, t) == 0.0
    np.testing.assert_array_equal(dice_per_class(wrong, t), [0.0, 0.0])
    assert dice(wrong, t) == 0.0 and iou(wrong, t) == 0.0


def test_return_types_are_python_floats():
    t = np.array([0, 1, 1])
    for fn in (pixel_accuracy, pixel_error, dice, iou, mean_dice, mean_iou):
        assert type(fn(t, t)) is float, fn.__name__


# --------------------------------------------------------------------------- vs references


@pytest.mark.parametrize("seed", range(5))
def test_binary_against_scipy_and_numpy(seed):
    rng = np.random.default_rng(seed)
    pred, target = _random_pair(rng, (3, 17, 23))
    # pixel accuracy: numpy hand count
    assert pixel_accuracy(pred, target) == pytest.approx(np.count_nonzero(pred == target) / pred.size)
    assert pixel_error(pred, target) == pytest.approx(np.count_nonzero(pred != target) / pred.size)
    for c in (0, 1):
        tp = np.count_nonzero((pred == c) & (target == c))
        fp = np.count_nonzero((pred == c) & (target != c))
        fn = np.count_nonzero((pred != c) & (target == c))
        assert dice_per_class(pred, target)[c] == pytest.approx(_scipy_dice(pred, target, c))
        assert dice_per_class(pred, target)[c] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert iou_per_class(pred, target)[c] == pytest.approx(_scipy_iou(pred, target, c))
        assert iou_per_class(pred, target)[c] == pytest.approx(tp / (tp + fp + fn))
    assert dice(pred, target) == pytest.approx(_scipy_dice(pred, target, 1))
    assert iou(pred, target) == pytest.approx(_scipy_iou(pred, target, 1))
    assert dice(pred, target, cls=0) == pytest.approx(_scipy_dice(pred, target, 0))
    assert mean_dice(pred, target) == pytest.approx(
        np.mean([_scipy_dice(pred, target, c) for c in (0, 1)]))
    assert mean_iou(pred, target) == pytest.approx(
        np.mean([_scipy_iou(pred, target, c) for c in (0, 1)]))


@pytest.mark.parametrize("seed", range(5))
def test_iou_dice_identity(seed):
    rng = np.random.default_rng(100 + seed)
    pred, target = _random_pair(rng, (64, 64), k=2, p_flip=rng.uniform(0.05, 0.9))
    d = dice_per_class(pred, target)
    j = iou_per_class(pred, target)
    np.testing.assert_allclose(j, d / (2 - d), rtol=1e-12)
    np.testing.assert_allclose(d, 2 * j / (1 + j), rtol=1e-12)
    assert np.all(j <= d)


def test_confusion_matrix_matches_hand_counts():
    rng = np.random.default_rng(7)
    pred, target = _random_pair(rng, (5, 31, 29), k=2)
    cm = confusion_matrix(pred, target)
    assert cm[0, 0] == np.count_nonzero((target == 0) & (pred == 0))
    assert cm[0, 1] == np.count_nonzero((target == 0) & (pred == 1))
    assert cm[1, 0] == np.count_nonzero((target == 1) & (pred == 0))
    assert cm[1, 1] == np.count_nonzero((target == 1) & (pred == 1))
    assert cm.sum() == pred.size
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(target.ravel(), minlength=2))
    np.testing.assert_array_equal(cm.sum(axis=0), np.bincount(pred.ravel(), minlength=2))


@pytest.mark.parametrize("seed", range(3))
def test_three_class_confusion_matrix_vs_double_loop(seed):
    rng = np.random.default_rng(seed)
    pred, target = _random_pair(rng, (2, 13, 11), k=3, p_flip=0.5)
    naive = np.zeros((3, 3), dtype=np.int64)
    for t, p in zip(target.ravel(), pred.ravel()):
        naive[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(pred, target), naive)
    np.testing.assert_array_equal(confusion_matrix(pred, target, num_classes=3), naive)
    # extra classes give empty rows / columns
    cm5 = confusion_matrix(pred, target, num_classes=5)
    assert cm5.shape == (5, 5)
    np.testing.assert_array_equal(cm5[:3, :3], naive)
    assert cm5[3:].sum() == 0 and cm5[:, 3:].sum() == 0
    # per-class scores against scipy for all three classes
    d, j = dice_per_class(pred, target), iou_per_class(pred, target)
    assert d.shape == j.shape == (3,)
    for c in range(3):
        assert d[c] == pytest.approx(_scipy_dice(pred, target, c))
        assert j[c] == pytest.approx(_scipy_iou(pred, target, c))
    assert mean_dice(pred, target) == pytest.approx(d.mean())
    assert mean_iou(pred, target) == pytest.approx(j.mean())
    assert pixel_accuracy(pred, target) == pytest.approx(np.trace(naive) / naive.sum())


def test_dice_and_iou_of_one_class_on_three_class_maps():
    """``dice``/``iou`` of class 1 must work when the maps also hold class 2.

    (``evaluate`` and ``fit`` call ``dice(pred, target)`` on the argmax of any K-class net.)
    """
    rng = np.random.default_rng(11)
    pred, target = _random_pair(rng, (20, 20), k=3, p_flip=0.4)
    assert dice(pred, target) == pytest.approx(_scipy_dice(pred, target, 1))
    assert iou(pred, target) == pytest.approx(_scipy_iou(pred, target, 1))
    assert dice(pred, target, cls=2) == pytest.approx(_scipy_dice(pred, target, 2))


def test_segmentation_report_consistent():
    rng = np.random.default_rng(3)
    pred, target = _random_pair(rng, (40, 40))
    r = segmentation_report(pred, target)
    assert r["accuracy"] == pytest.approx(pixel_accuracy(pred, target))
    assert r["dice"] == pytest.approx(_scipy_dice(pred, target, 1)) == r["dice_1"]
    assert r["iou"] == pytest.approx(_scipy_iou(pred, target, 1)) == r["iou_1"]
    assert r["dice_0"] == pytest.approx(_scipy_dice(pred, target, 0))
    assert r["mean_dice"] == pytest.approx(mean_dice(pred, target))
    assert r["mean_iou"] == pytest.approx(mean_iou(pred, target))
    r3 = segmentation_report(*_random_pair(rng, (10, 10), k=3), num_classes=3)
    assert {"dice_2", "iou_2"} <= set(r3)


# --------------------------------------------------------------------------- absent classes


def test_absent_class_is_nan_and_left_out_of_means():
    pred = np.array([0, 0, 1, 1])
    target = np.array([0, 1, 1, 1])
    d = dice_per_class(pred, target, num_classes=3)
    j = iou_per_class(pred, target, num_classes=3)
    assert math.isnan(d[2]) and math.isnan(j[2])
    np.testing.assert_allclose(d[:2], [2 / 3, 0.8])
    assert mean_dice(pred, target, num_classes=3) == pytest.approx((2 / 3 + 0.8) / 2)
    assert mean_iou(pred, target, num_classes=3) == pytest.approx((0.5 + 2 / 3) / 2)


def test_foreground_absent_everywhere():
    zeros = np.zeros((4, 4), dtype=np.int64)
    assert math.isnan(dice(zeros, zeros))
    assert math.isnan(iou(zeros, zeros))
    assert mean_dice(zeros, zeros) == 1.0          # only class 0 counts
    assert mean_iou(zeros, zeros, num_classes=2) == 1.0
    r = segmentation_report(zeros, zeros)
    assert math.isnan(r["dice"]) and r["mean_dice"] == 1.0 and r["accuracy"] == 1.0


def test_class_in_pred_only_scores_zero_not_nan():
    pred = np.array([0, 2, 0, 0])
    target = np.array([0, 0, 0, 0])
    d = dice_per_class(pred, target)
    assert d.shape == (3,)
    assert d[2] == 0.0 and math.isnan(d[1])
    assert d[0] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))


# --------------------------------------------------------------------------- input handling


def test_torch_inputs_equal_numpy_inputs():
    rng = np.random.default_rng(5)
    pred, target = _random_pair(rng, (2, 16, 16), k=3)
    tp, tt = torch.from_numpy(pred), torch.from_numpy(target)
    for fn in (pixel_accuracy, pixel_error, mean_dice, mean_iou, dice, iou):
        if fn in (dice, iou):
            a, b = fn(pred.clip(0, 1), target.clip(0, 1)), fn(tp.clamp(0, 1), tt.clamp(0, 1))
        else:
            a, b = fn(pred, target), fn(tp, tt)
        assert a == b, fn.__name__
    np.testing.assert_array_equal(confusion_matrix(tp, tt), confusion_matrix(pred, target))
    np.testing.assert_array_equal(dice_per_class(tp, tt), dice_per_class(pred, target))
    np.testing.assert_array_equal(iou_per_class(tp, tt), iou_per_class(pred, target))
    # mixed numpy / torch, int32, uint8 and lists work too
    assert pixel_accuracy(tp, target) == pixel_accuracy(pred, target)
    assert pixel_accuracy(pred.astype(np.int32), target.astype(np.uint8)) == pixel_accuracy(pred, target)
    assert pixel_accuracy([0, 1, 1], [0, 1, 0]) == pytest.approx(2 / 3)
    # a tensor that requires grad (e.g. straight from a net) is accepted
    assert mean_dice(tp, tt) == mean_dice(pred, target)


def test_bool_masks_are_classes_0_and_1():
    rng = np.random.default_rng(9)
    p, t = rng.random((8, 8)) > 0.5, rng.random((8, 8)) > 0.5
    assert dice(p, t) == pytest.approx(_scipy_dice(p.astype(int), t.astype(int), 1))
    assert dice(torch.from_numpy(p), torch.from_numpy(t)) == dice(p, t)


def test_shape_mismatch_raises_helpful_error():
    with pytest.raises(ValueError, match="same shape") as info:
        pixel_accuracy(np.zeros((4, 4), int), np.zeros((4, 5), int))
    assert "(4, 4)" in str(info.value) and "(4, 5)" in str(info.value)
    assert "crop" in str(info.value)
    for fn in (dice, iou, mean_dice, confusion_matrix, dice_per_class):
        with pytest.raises(ValueError, match="same shape"):
            fn(np.zeros((2, 388, 388), int), np.zeros((2, 572, 572), int))


def test_float_input_raises_helpful_error():
    scores = np.random.default_rng(0).random((4, 4))
    with pytest.raises(TypeError, match="pred must hold integer class indices") as info:
        dice(scores, np.zeros((4, 4), int))
    assert "float64" in str(info.value) and "argmax" in str(info.value)
    with pytest.raises(TypeError, match="target must hold integer"):
        pixel_accuracy(np.zeros((4, 4), int), torch.rand(4, 4))


def test_negative_and_out_of_range_classes():
    with pytest.raises(ValueError, match="negative"):
        pixel_accuracy(np.array([0, -1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="num_classes=2"):
        confusion_matrix(np.array([0, 2]), np.array([0, 1]), num_classes=2)
