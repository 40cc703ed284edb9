"""Pixel accuracy, Dice, IoU and the confusion matrix against independent references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import dice as scipy_dice_dissimilarity
from scipy.spatial.distance import jaccard as scipy_jaccard_distance
from skimage.measure import label as skimage_label
from skimage.metrics import adapted_rand_error

from unet_teach.metrics import (best_threshold, confusion_matrix, dice, dice_per_class, iou,
                                iou_per_class, mean_dice, mean_iou, pixel_accuracy, pixel_error,
                                rand_error, segmentation_report, threshold_sweep,
                                variation_of_information)


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


# --------------------------------------------------------------------------- region scores
# Hand-made membrane maps in the package convention: 1 = membrane, 0 = cell interior.


def _two_cells():
    """6 x 9: a membrane column (col 4) between two 6 x 4 cells of 24 pixels each."""
    target = np.zeros((6, 9), dtype=np.int64)
    target[:, 4] = 1
    return target


def _entropy(*p):
    p = np.array(p, dtype=float)
    return float(-(p * np.log2(p)).sum())


def _brute_force_scores(pred, target, regions=0):
    """Adapted Rand F-score and (split, merge) by counting, independent of the package.

    Cells = 4-connected components (skimage.measure.label, connectivity=1); only pixels inside
    target cells count; the prediction's non-region pixels form one segment (its label 0).
    """
    t = skimage_label(target == regions, connectivity=1).ravel()
    p = skimage_label(pred == regions, connectivity=1).ravel()
    keep = np.flatnonzero(t > 0)
    same_t = same_p = same_both = 0
    for i, j in itertools.combinations(keep, 2):          # every unordered pair of pixels
        st, sp = t[i] == t[j], p[i] == p[j]
        same_t, same_p, same_both = same_t + st, same_p + sp, same_both + (st and sp)
    f_score = 2 * same_both / (same_t + same_p)
    # conditional entropies from the contingency table n[true cell, predicted segment]
    n = {}
    for a, b in zip(t[keep], p[keep]):
        n[a, b] = n.get((a, b), 0) + 1
    total = len(keep)
    rows = {a: sum(v for (x, _), v in n.items() if x == a) for a, _ in n}
    cols = {b: sum(v for (_, y), v in n.items() if y == b) for _, b in n}
    split = -sum(v / total * math.log2(v / rows[a]) for (a, b), v in n.items())
    merge = -sum(v / total * math.log2(v / cols[b]) for (a, b), v in n.items())
    return 1 - f_score, split, merge


def test_identical_prediction_scores_zero():
    target = _two_cells()
    assert rand_error(target, target) == 0.0
    assert variation_of_information(target, target) == (0.0, 0.0)


def test_one_split_is_split_not_merge():
    target = _two_cells()
    pred = target.copy()
    pred[3, :4] = 1        # an extra membrane line cuts the left cell: 12 px above, 8 below
    assert rand_error(pred, target) > 0
    split, merge = variation_of_information(pred, target)
    # The 4 pixels under the new line are pred label 0, inside the left cell only, so every
    # predicted segment lies in one true cell: no merge. The left cell (half the pixels) is
    # spread over segments of 12, 4 and 8 of its 24 pixels.
    assert merge == pytest.approx(0, abs=1e-12)
    assert split == pytest.approx(0.5 * _entropy(12 / 24, 4 / 24, 8 / 24))


def test_one_merge_is_merge_not_split():
    target = _two_cells()
    pred = np.zeros_like(target)          # the membrane between the cells is missing
    split, merge = variation_of_information(pred, target)
    assert split == pytest.approx(0, abs=1e-12)
    assert merge == pytest.approx(1.0)    # one segment, two equal cells: 1 bit
    # pairs: 2 C(24,2) same-cell pairs, all kept; the prediction has C(48,2) same pairs
    same_t, same_p = 2 * math.comb(24, 2), math.comb(48, 2)
    assert rand_error(pred, target) == pytest.approx(1 - 2 * same_t / (same_t + same_p))


def test_thicker_membrane_costs_because_pred_label_0_is_one_segment():
    """The prediction's membrane is 1 px thicker on each side (cols 3-5 instead of 4).

    The partition of the cells is the same, but their border columns (3 and 5, 6 px each)
    are predicted membrane. skimage ignores label 0 of the *truth* only: in the prediction
    the 12 pixels of label 0 are one ordinary segment spanning both cells. So the error is
    not 0: pairs across the cells inside that segment are false merges, pairs between a border
    pixel and the rest of its cell are false splits.
    """
    target = _two_cells()
    pred = target.copy()
    pred[:, 3:6] = 1
    # contingency table: left cell -> 18 in segment A, 6 in segment 0; right -> 6 in 0, 18 in B
    same_both = 2 * math.comb(18, 2) + 2 * math.comb(6, 2)       # 336
    same_t = 2 * math.comb(24, 2)                                 # 552
    same_p = 2 * math.comb(18, 2) + math.comb(12, 2)              # 372
    assert rand_error(pred, target) == pytest.approx(1 - 2 * same_both / (same_t + same_p))
    assert rand_error(pred, target) == pytest.approx(1 - 672 / 924)
    split, merge = variation_of_information(pred, target)
    assert split == pytest.approx(_entropy(0.75, 0.25))          # each cell: 18 + 6 pixels
    assert merge == pytest.approx(12 / 48 * 1.0)                 # segment 0: 6 + 6 pixels
    # label 0 in the prediction is an ordinary label: renaming it changes nothing ...
    renamed = skimage_label(pred == 0, connectivity=1)
    renamed[renamed == 0] = renamed.max() + 1
    cells = skimage_label(target == 0, connectivity=1)
    assert adapted_rand_error(cells, renamed)[0] == pytest.approx(rand_error(pred, target))
    # ... and the same count by brute force agrees
    assert _brute_force_scores(pred, target) == pytest.approx((rand_error(pred, target),
                                                               split, merge))


def test_cells_are_4_connected():
    """Two predicted cells touching only at a corner are two cells, not one."""
    target = np.ones((6, 6), dtype=np.int64)
    target[:3, :3] = 0            # cell A
    target[3:, 3:] = 0            # cell B
    target[2, 2] = 1              # in the truth A and B do not even touch at a corner
    pred = target.copy()
    pred[2, 2] = 0                # the prediction's A touches B at a corner: (2, 2)-(3, 3)
    # (2, 2) is target membrane, ignored; with 4-connectivity the partitions are the same
    assert rand_error(pred, target) == 0.0
    assert variation_of_information(pred, target) == (0.0, 0.0)
    # with 8-connectivity the prediction would be one segment: a merge
    eight = skimage_label(pred == 0, connectivity=2)
    assert eight.max() == 1


@pytest.mark.parametrize("seed", range(6))
def test_rand_error_and_vi_against_pair_counting(seed):
    rng = np.random.default_rng(seed)
    target = (rng.random((6, 7)) < 0.3).astype(np.int64)
    pred = np.where(rng.random((6, 7)) < 0.2, 1 - target, target)
    error, split, merge = _brute_force_scores(pred, target)
    assert rand_error(pred, target) == pytest.approx(error)
    assert variation_of_information(pred, target) == pytest.approx((split, merge))


def test_isbi_labels_with_regions_255_match_package_masks():
    rng = np.random.default_rng(4)
    target = (rng.random((3, 20, 20)) < 0.3).astype(np.int64)     # 1 = membrane
    pred = np.where(rng.random((3, 20, 20)) < 0.1, 1 - target, target)

    def isbi(x):                                                  # 255 = cell, 0 = membrane
        return np.where(x == 0, 255, 0).astype(np.uint8)

    assert rand_error(isbi(pred), isbi(target), regions=255) == pytest.approx(
        rand_error(pred, target))
    assert variation_of_information(isbi(pred), isbi(target), regions=255) == pytest.approx(
        variation_of_information(pred, target))


def test_stack_is_scored_image_by_image_and_averaged():
    target = _two_cells()
    merged = np.zeros_like(target)
    stack_t, stack_p = np.stack([target, target]), np.stack([target, merged])
    # image 0 scores 0, image 1 is the one-merge case: the stack scores their mean
    assert rand_error(stack_p, stack_t) == pytest.approx(rand_error(merged, target) / 2)
    assert variation_of_information(stack_p, stack_t) == pytest.approx((0.0, 0.5))
    assert rand_error(torch.from_numpy(stack_p), torch.from_numpy(stack_t)) == \
        rand_error(stack_p, stack_t)


def test_region_scores_bad_input():
    target = _two_cells()
    with pytest.raises(ValueError, match="same shape"):
        rand_error(target[:, :5], target)
    with pytest.raises(ValueError, match="regions=255"):
        rand_error(np.ones_like(target), np.ones_like(target))      # no cell in the target
    with pytest.raises(ValueError, match="H x W or N x H x W"):
        variation_of_information(target[None, None], target[None, None])


def test_segmentation_report_region_entries():
    target = _two_cells()
    pred = np.zeros_like(target)
    assert "rand_error" not in segmentation_report(pred, target)
    r = segmentation_report(pred, target, regions=0)
    assert r["rand_error"] == rand_error(pred, target)
    assert (r["vi_split"], r["vi_merge"]) == variation_of_information(pred, target)
    assert r["accuracy"] == pixel_accuracy(pred, target)


# --------------------------------------------------------------------------- threshold sweep


def _gap_and_specks():
    """7 x 9, membrane col 4 (p = 0.9) with a weak pixel (p = 0.4), three specks (p = 0.45)."""
    target = np.zeros((7, 9), dtype=np.int64)
    target[:, 4] = 1
    probabilities = np.where(target == 1, 0.9, 0.1)
    probabilities[3, 4] = 0.4
    probabilities[0, 0] = probabilities[6, 0] = probabilities[6, 8] = 0.45
    return probabilities, target


def test_sweep_pixel_error_and_rand_error_choose_differently():
    probabilities, target = _gap_and_specks()
    sweep = threshold_sweep(probabilities, target, thresholds=[0.3, 0.5, 0.95])
    np.testing.assert_allclose(sweep["thresholds"], [0.3, 0.5, 0.95])
    # t = 0.3: the 3 specks are membrane; t = 0.5: the gap opens; t = 0.95: no membrane at all
    np.testing.assert_allclose(sweep["pixel_error"], [3 / 63, 1 / 63, 7 / 63])
    # t = 0.3: left cell 26 + 2 specks (segment 0), right cell 27 + 1 speck
    same_both, same_t = math.comb(26, 2) + 1 + math.comb(27, 2), 2 * math.comb(28, 2)
    same_p = math.comb(26, 2) + math.comb(27, 2) + math.comb(3, 2)
    # t = 0.5: one segment holds both cells of 28
    merged = 1 - 2 * same_t / (same_t + math.comb(56, 2))
    np.testing.assert_allclose(sweep["rand_error"],
                               [1 - 2 * same_both / (same_t + same_p), merged, merged])
    assert sweep["best"] == {"pixel_error": 0.5, "rand_error": 0.3}
    assert best_threshold(probabilities, target, [0.3, 0.5, 0.95]) == 0.3
    assert best_threshold(probabilities, target, [0.3, 0.5, 0.95], metric="pixel_error") == 0.5


def test_sweep_finds_the_clean_threshold_and_vi():
    probabilities, target = _gap_and_specks()
    probabilities[0, 0] = probabilities[6, 0] = probabilities[6, 8] = 0.2   # specks fainter
    sweep = threshold_sweep(probabilities, target, thresholds=[0.1, 0.3, 0.6],
                            metrics=("pixel_error", "rand_error", "vi_split", "vi_merge", "vi"))
    # 0.3 sits between everything interior (<= 0.2) and everything membrane (>= 0.4)
    assert sweep["best"] == dict.fromkeys(("pixel_error", "rand_error", "vi_split",
                                           "vi_merge", "vi"), 0.3)
    for m in ("pixel_error", "rand_error", "vi_split", "vi_merge", "vi"):
        assert sweep[m][1] == pytest.approx(0, abs=1e-12), m
    np.testing.assert_allclose(sweep["vi"], sweep["vi_split"] + sweep["vi_merge"])
    assert sweep["vi_merge"][2] == pytest.approx(1.0)       # the gap merges two equal cells
    assert sweep["vi_split"][2] == pytest.approx(0, abs=1e-12)


def test_sweep_default_thresholds_shapes_and_averaging():
    probabilities, target = _gap_and_specks()
    perfect = target.astype(float)
    stack_p, stack_t = np.stack([probabilities, perfect]), np.stack([target, target])
    sweep = threshold_sweep(torch.from_numpy(stack_p), torch.from_numpy(stack_t))
    assert set(sweep) == {"thresholds", "pixel_error", "rand_error", "best"}
    np.testing.assert_allclose(sweep["thresholds"], np.arange(1, 20) * 0.05)
    assert sweep["pixel_error"].shape == sweep["rand_error"].shape == (19,)
    one = threshold_sweep(probabilities, target)
    # the perfect image scores 0 at every threshold strictly below 1: the mean halves
    np.testing.assert_allclose(sweep["rand_error"], one["rand_error"] / 2, atol=1e-12)
    np.testing.assert_allclose(sweep["pixel_error"], one["pixel_error"] / 2)


def test_sweep_regions_1_scores_foreground_objects():
    """Nuclei: the objects are the foreground (class 1), above the threshold."""
    target = np.zeros((5, 9), dtype=np.int64)
    target[1:4, 1:4] = target[1:4, 5:8] = 1                  # two nuclei, one column apart
    probabilities = np.where(target == 1, 0.8, 0.1)
    probabilities[2, 4] = 0.5                                 # a bridge between the nuclei
    sweep = threshold_sweep(probabilities, target, thresholds=[0.3, 0.6], regions=1,
                            metrics=("rand_error", "vi_merge"))
    assert sweep["rand_error"][1] == 0.0 and sweep["rand_error"][0] > 0
    assert sweep["vi_merge"][0] == pytest.approx(1.0)         # bridged: one object, two nuclei
    assert sweep["best"] == {"rand_error": 0.6, "vi_merge": 0.6}


def test_sweep_bad_input():
    probabilities, target = _gap_and_specks()
    with pytest.raises(ValueError, match="same shape"):
        threshold_sweep(probabilities[:, :5], target)
    with pytest.raises(ValueError, match=r"\[0, 1\].*sigmoid"):
        threshold_sweep(probabilities * 4 - 2, target)                  # logits, not probabilities
    with pytest.raises(ValueError, match="nan"):
        threshold_sweep(np.full_like(probabilities, np.nan), target)
    with pytest.raises(ValueError, match="probs\\[:, 1\\]"):
        threshold_sweep(np.stack([1 - probabilities, probabilities])[None], target[None, None])
    with pytest.raises(ValueError, match="no pixel labelled regions=0"):
        threshold_sweep(probabilities, np.ones_like(target))
    with pytest.raises(ValueError, match="no pixel labelled regions=1"):
        threshold_sweep(probabilities, np.zeros_like(target), regions=1)
    with pytest.raises(ValueError, match=r"label == 0"):
        threshold_sweep(probabilities, np.where(target == 0, 255, 0))   # an ISBI label file
    with pytest.raises(ValueError, match="regions must be 0"):
        threshold_sweep(probabilities, target, regions=255)
    with pytest.raises(ValueError, match="thresholds"):
        threshold_sweep(probabilities, target, thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="metrics"):
        threshold_sweep(probabilities, target, metrics=("dice",))
    with pytest.raises(ValueError, match="metrics"):
        threshold_sweep(probabilities, target, metrics="rand_error")
    # pixel error alone needs no cells
    assert threshold_sweep(probabilities, np.ones_like(target), [0.5],
                           metrics=("pixel_error",))["pixel_error"].shape == (1,)


# ----------------------------------------------------------------------- instances

def _brute_match(pred, target, thr=0.5):
    """IoU of every pair by boolean masks; greedy one-to-one matching from the best IoU."""
    p_ids = [i for i in np.unique(pred) if i]
    t_ids = [i for i in np.unique(target) if i]
    cand = []
    for a in p_ids:
        for b in t_ids:
            inter = np.sum((pred == a) & (target == b))
            union = np.sum((pred == a) | (target == b))
            if inter and inter / union >= thr:
                cand.append((inter / union, a, b))
    used_a, used_b = set(), set()
    for _, a, b in sorted(cand, reverse=True):
        if a not in used_a and b not in used_b:
            used_a.add(a)
            used_b.add(b)
    merged = 0
    for a in p_ids:
        k = sum(np.sum((pred == a) & (target == b)) * 2 > np.sum(target == b) for b in t_ids)
        merged += k * (k - 1) // 2
    return len(used_a), len(p_ids) - len(used_a), len(t_ids) - len(used_b), merged


def test_match_instances_against_brute_force():
    from unet_teach.data import separate_touching, synthetic_nuclei
    from unet_teach.metrics import label_instances, match_instances
    _, masks, instances = synthetic_nuclei(4, 64, seed=2)
    rng = np.random.default_rng(0)
    for i in range(4):
        truth = separate_touching(instances[i])
        # predictions: the glued semantic mask (merges), an eroded one, a noisy one
        for fg in (masks[i], ndimage.binary_erosion(truth > 0, iterations=2),
                   (truth > 0) ^ (rng.random(truth.shape) < 0.02)):
            pred = label_instances(fg)
            got = match_instances(pred, truth)
            tp, fp, fn, merged = _brute_match(pred, truth)
            assert (got["tp"], got["fp"], got["fn"], got["merged"]) == (tp, fp, fn, merged)
            assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_match_instances_hand_cases():
    from unet_teach.metrics import label_instances, match_instances
    truth = np.array([[1, 1, 0, 2, 2, 0, 3, 3]])
    perfect = match_instances(truth, truth)
    assert (perfect["tp"], perfect["fp"], perfect["fn"], perfect["merged"]) == (3, 0, 0, 0)
    assert perfect["f1"] == 1.0
    # one blob over all three: no match at IoU 0.5, three merged pairs
    blob = np.array([[1, 1, 1, 1, 1, 1, 1, 1]])
    r = match_instances(blob, truth)
    assert (r["tp"], r["fp"], r["fn"], r["merged"]) == (0, 1, 3, 3)
    # labels need not match; stacks add up
    relabelled = np.array([[7, 7, 0, 5, 5, 0, 9, 9]])
    r = match_instances(np.stack([relabelled, blob]), np.stack([truth, truth]))
    assert (r["tp"], r["fp"], r["fn"], r["merged"]) == (3, 1, 3, 3)
    # a gap of background pixels separates 4-connected components only
    assert label_instances(np.array([[1, 0], [0, 1]])).max() == 2
    with pytest.raises(ValueError, match="same shape"):
        match_instances(truth, truth[:, :4])


def _brute_merges(pred, target):
    """By boolean masks: each predicted object and the true objects with more than half of
    their pixels in it, kept where there are two or more."""
    out = {}
    for a in (i for i in np.unique(pred) if i):
        inside = [int(b) for b in np.unique(target) if b
                  and 2 * np.sum((pred == a) & (target == b)) > np.sum(target == b)]
        if len(inside) >= 2:
            out[int(a)] = inside
    return out


def test_merges_against_brute_force_both_ways():
    from unet_teach.data import separate_touching, synthetic_nuclei
    from unet_teach.metrics import label_instances, merges
    _, masks, instances = synthetic_nuclei(4, 64, seed=2)
    rng = np.random.default_rng(1)
    seen = 0
    for i in range(4):
        truth = separate_touching(instances[i])
        for fg in (masks[i], (truth > 0) ^ (rng.random(truth.shape) < 0.05)):
            pred = label_instances(fg)
            assert merges(pred, truth) == _brute_merges(pred, truth)      # merges
            assert merges(truth, pred) == _brute_merges(truth, pred)      # splits
            seen += len(merges(pred, truth))
    assert seen > 0                                 # the glued masks do merge nuclei


def test_merges_hand_cases_and_the_half_rule():
    from unet_teach.metrics import merges
    truth = np.array([[1, 1, 1, 1, 0, 2, 2, 2, 2]])
    # the predicted object holds 3 of 1's 4 pixels and 2 of 2's 4: exactly half is not
    # "mostly inside", so nothing merged
    assert merges(np.array([[0, 5, 5, 5, 5, 5, 5, 0, 0]]), truth) == {}
    # one more pixel of 2 and it is
    assert merges(np.array([[0, 5, 5, 5, 5, 5, 5, 5, 0]]), truth) == {5: [1, 2]}
    # the split of a cell into two pieces, each mostly inside it
    assert merges(truth, np.array([[3, 3, 0, 4, 0, 6, 6, 6, 6]])) == {1: [3, 4]}
    assert merges(truth, truth) == {} and merges(np.zeros_like(truth), truth) == {}
    with pytest.raises(ValueError, match="image by image"):
        merges(np.stack([truth, truth]), np.stack([truth, truth]))
