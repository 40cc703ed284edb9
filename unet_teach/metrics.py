"""How good is a segmentation? Pixel accuracy, Dice and IoU, per class and averaged.

All functions take two label maps of the same shape - ``pred`` and ``target``, integer
class indices, numpy arrays or torch tensors, any number of dimensions (``H x W`` or
``N x H x W``) - and count over every pixel.

Everything comes from the confusion matrix: for class ``c``,
``TP = pred == c and target == c``, ``FP = pred == c and target != c``,
``FN = pred != c and target == c``. Then

* pixel accuracy = correct pixels / all pixels (pixel error = 1 - accuracy);
* Dice(c) = 2 TP / (2 TP + FP + FN)  (the F1 score of class c);
* IoU(c)  = TP / (TP + FP + FN)      (the Jaccard index; IoU = Dice / (2 - Dice)).

A class absent from both maps has no defined Dice or IoU: it is reported as ``nan`` and
left out of the means.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_labels(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == bool:
        x = x.astype(np.int64)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {x.dtype}; "
                        "turn scores into labels first, e.g. scores.argmax(dim=1) or "
                        "(probabilities > 0.5)")
    if x.size and x.min() < 0:
        raise ValueError(f"{name} holds negative class indices (min {x.min()})")
    return x


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _as_labels(pred, "pred"), _as_labels(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and "
                         f"{target.shape}; crop the target to the prediction (a valid-padding "
                         "U-Net's output is smaller than its input)")
    return pred, target


def confusion_matrix(pred, target, num_classes: int | None = None) -> np.ndarray:
    """``num_classes x num_classes`` counts: row = true class, column = predicted class.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        array([[1, 1],
               [0, 2]])
    """
    pred, target = _pair(pred, target)
    k = num_classes or int(max(pred.max(initial=0), target.max(initial=0)) + 1)
    if pred.size and max(pred.max(), target.max()) >= k:
        raise ValueError(f"found class index {max(pred.max(), target.max())} >= num_classes={k}")
    counts = np.bincount(target.ravel() * k + pred.ravel(), minlength=k * k)
    return counts.reshape(k, k)


def pixel_accuracy(pred, target) -> float:
    """Fraction of pixels whose predicted class is the true class.

    Example:
        >>> pixel_accuracy(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        0.75
    """
    pred, target = _pair(pred, target)
    return float((pred == target).mean())


def pixel_error(pred, target) -> float:
    """``1 - pixel_accuracy``: the ISBI challenge's pixel error.

    Example:
        >>> pixel_error(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        0.25
    """
    return 1.0 - pixel_accuracy(pred, target)


def _per_class(pred, target, num_classes, dice: bool) -> np.ndarray:
    cm = confusion_matrix(pred, target, num_classes)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp          # predicted c, truly something else
    fn = cm.sum(axis=1) - tp          # truly c, predicted something else
    num = 2 * tp if dice else tp
    den = 2 * tp + fp + fn if dice else tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def dice_per_class(pred, target, num_classes: int | None = None) -> np.ndarray:
    """Dice coefficient of every class, ``num_classes`` floats (``nan`` for absent classes).

    Example:
        >>> dice_per_class(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        array([0.66666667, 0.8       ])
    """
    return _per_class(pred, target, num_classes, dice=True)


def iou_per_class(pred, target, num_classes: int | None = None) -> np.ndarray:
    """Intersection over union of every class (``nan`` for absent classes).

    Example:
        >>> iou_per_class(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        array([0.5       , 0.66666667])
    """
    return _per_class(pred, target, num_classes, dice=False)


def _classes_needed(pred, target, cls: int) -> int:
    """Enough classes for ``cls`` and every label in either map (at least two)."""
    pred, target = _pair(pred, target)
    return max(cls + 1, 2, int(max(pred.max(initial=0), target.max(initial=0))) + 1)


def dice(pred, target, cls: int = 1) -> float:
    """Dice of one class (default 1, the foreground: membrane or nucleus).

    Example:
        >>> dice(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        0.8
    """
    return float(dice_per_class(pred, target, num_classes=_classes_needed(pred, target, cls))[cls])


def iou(pred, target, cls: int = 1) -> float:
    """IoU of one class (default 1).

    Example:
        >>> round(iou(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1])), 4)
        0.6667
    """
    return float(iou_per_class(pred, target, num_classes=_classes_needed(pred, target, cls))[cls])


def mean_dice(pred, target, num_classes: int | None = None) -> float:
    """Dice averaged over the classes present in ``pred`` or ``target``.

    Example:
        >>> round(mean_dice(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1])), 4)
        0.7333
    """
    return float(np.nanmean(dice_per_class(pred, target, num_classes)))


def mean_iou(pred, target, num_classes: int | None = None) -> float:
    """IoU averaged over the classes present (the usual "mIoU").

    Example:
        >>> round(mean_iou(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1])), 4)
        0.5833
    """
    return float(np.nanmean(iou_per_class(pred, target, num_classes)))


def segmentation_report(pred, target, num_classes: int = 2) -> dict[str, float]:
    """All the numbers above in one dict (for tables and training histories).

    Example:
        >>> r = segmentation_report(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        >>> sorted(r)
        ['accuracy', 'dice', 'dice_0', 'dice_1', 'iou', 'iou_0', 'iou_1', 'mean_dice', 'mean_iou']
    """
    d = dice_per_class(pred, target, num_classes)
    j = iou_per_class(pred, target, num_classes)
    report = {"accuracy": pixel_accuracy(pred, target),
              "dice": float(d[1]) if num_classes > 1 else float(d[0]),
              "iou": float(j[1]) if num_classes > 1 else float(j[0]),
              "mean_dice": float(np.nanmean(d)), "mean_iou": float(np.nanmean(j))}
    for c in range(num_classes):
        report[f"dice_{c}"], report[f"iou_{c}"] = float(d[c]), float(j[c])
    return report
