"""Checks for exercise 1 (pixel metrics): call one right after you answer a question.

Each check runs your function on a few fixed inputs and compares it with the reference in
:mod:`unet_teach.metrics`. When everything matches it prints one line with the points the
question is worth. When something does not, it raises ``CheckFailed`` (an ``AssertionError``)
with a message that says which input failed, what was expected and what came back, and a
hint, and that ends with the check's id, e.g.::

    CheckFailed: dice(pred, target) is wrong on 'a 2 x 3 example' (pred and target:
    shape (2, 3), int64): expected 0.666667, got 0.5 (off by 0.166667).
    Hint: that is the IoU, TP / (TP + FP + FN); Dice counts the overlap twice: 2 TP / (2 TP + FP + FN)
    [check: pixel_metrics.dice.iou]

``MESSAGES[id]`` is the fixed text a grader shows for it (see ``_common.CheckFailed``).

The inputs are small integer numpy arrays and all comparisons are done in float64 on the
CPU, so a check gives the same verdict on every machine (a result computed on a GPU, or in
float32, passes when it agrees to 1e-6). The graded version of every question also runs
hidden tests (edge cases the text of the exercise describes), so passing a check is
necessary, not sufficient.

The library is not the answer key: an answer that calls :mod:`unet_teach.metrics`' version of
what the question asks for (``metrics.dice`` for ``dice``, or ``dice_per_class`` or
``confusion_matrix``, which do the counting) scores no points for that question, with that
reason in the message (see :func:`~unet_teach.course.checks.losses.call_own`). The mean IoU
may use an ``iou`` function, as the question says, even the library's.

Example:
    >>> import numpy as np
    >>> check_pixel_accuracy(lambda pred, target: float(np.mean(pred == target)))
    pixel_accuracy: all 4 checks passed - 2 points
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ... import metrics
from ._common import call_own, fail, report_passed

TOLERANCE = 1e-6
# What a grader may copy into a feedback file for each check that fails, by the id the check
# raises with (see _common.CheckFailed): a fixed text, what is wrong and where to look.
MESSAGES: dict[str, str] = {
    # the form of the answer (every question)
    "pixel_metrics.returned_none":
        "The function returned None instead of a number.\nHint: look at the end of your "
        "function: the value it computes must be given back with `return`.",
    "pixel_metrics.not_a_number":
        "The function returned something that is not a number (a string, a list, a "
        "dictionary...).\nHint: look at what your `return` line gives back: one float.",
    "pixel_metrics.not_one_number":
        "The function returned an array of values instead of one number for the whole input "
        "(one value per image or per row, for example).\nHint: look at the axes you sum or "
        "average over: count over every pixel of every image at once.",
    "pixel_metrics.changed_input":
        "The function changed the arrays it was given (pred or target).\nHint: look for an "
        "assignment into pred or target (pred[...] = ..., pred -= ...); a metric only reads "
        "them: build new arrays, e.g. from comparisons.",
    # Q1 pixel accuracy
    "pixel_metrics.pixel_accuracy.value":
        "pixel_accuracy gives the wrong value on at least one of the check's inputs.\nHint: "
        "the accuracy is the fraction of pixels whose predicted class equals the true one; "
        "compare the formula in the question with what you divide by what.",
    "pixel_metrics.pixel_accuracy.count":
        "pixel_accuracy returns the number of correct pixels, not their fraction.\nHint: look "
        "at the last step: a fraction divides by the number of pixels.",
    "pixel_metrics.pixel_accuracy.error":
        "pixel_accuracy returns the pixel error (1 - accuracy): the fraction of wrong pixels."
        "\nHint: look at the comparison you count: the accuracy counts the pixels where pred "
        "and target agree.",
    "pixel_metrics.pixel_accuracy.per_row":
        "pixel_accuracy averages over one axis only and then adds the rows up.\nHint: look at "
        "the axis argument of your mean or sum: average over every pixel at once.",
    # Q2 Dice
    "pixel_metrics.dice.value":
        "dice gives the wrong value on at least one of the check's inputs.\nHint: count the "
        "true positives, false positives and false negatives of class 1 (membrane) and compare "
        "your formula with the question's, 2 TP / (2 TP + FP + FN).",
    "pixel_metrics.dice.class0":
        "dice computes the Dice of class 0 (cell interior); the question asks for class 1 "
        "(membrane).\nHint: look at the class your comparisons select.",
    "pixel_metrics.dice.iou":
        "dice computes the IoU, TP / (TP + FP + FN), not the Dice.\nHint: compare your formula "
        "with the question's: Dice counts the overlap twice, in the numerator and in the "
        "denominator.",
    "pixel_metrics.dice.precision":
        "dice computes the precision, TP / (TP + FP): it leaves out the missed membrane pixels."
        "\nHint: look at the denominator: Dice counts the false negatives too.",
    "pixel_metrics.dice.recall":
        "dice computes the recall, TP / (TP + FN): it leaves out the false alarms.\nHint: look "
        "at the denominator: Dice counts the false positives too.",
    "pixel_metrics.dice.accuracy":
        "dice computes the pixel accuracy, which counts both classes.\nHint: Dice looks at "
        "class 1 (membrane) only: look at which pixels you count.",
    # Q3 IoU
    "pixel_metrics.iou.value":
        "iou gives the wrong value on at least one of the check's inputs.\nHint: compare your "
        "formula with the question's: the pixels of class cls in both maps divided by those "
        "in either map.",
    "pixel_metrics.iou.class0":
        "iou computes the IoU of class 0 (cell interior) where the check asks for class 1 "
        "(membrane), the default.\nHint: look at the class your comparisons select and at "
        "the default of cls.",
    "pixel_metrics.iou.dice":
        "iou computes the Dice coefficient, not the IoU.\nHint: compare your formula with the "
        "question's: IoU divides the overlap by the union and counts the overlap once.",
    # Q4 mean IoU
    "pixel_metrics.mean_iou.value":
        "mean_iou gives the wrong value on at least one of the check's inputs.\nHint: average "
        "the IoU of class 0 and of class 1, leaving out a class that is absent from both maps "
        "(its IoU is nan); look at how you average.",
    "pixel_metrics.mean_iou.class1_only":
        "mean_iou returns the IoU of class 1 only.\nHint: the mean IoU averages over both "
        "classes, 0 and 1: look at which classes you loop over.",
    "pixel_metrics.mean_iou.mean_dice":
        "mean_iou averages the Dice of the classes, not their IoU.\nHint: look at which "
        "function you call per class: use your iou.",
    # Q5 baseline
    "pixel_metrics.baseline_accuracy.value":
        "baseline_accuracy is not the pixel accuracy of the all-interior predictor on the demo "
        "masks.\nHint: build the prediction that calls every pixel class 0, the same shape as "
        "masks, and pass it to your pixel_accuracy.",
    "pixel_metrics.baseline_accuracy.membrane_fraction":
        "baseline_accuracy is the fraction of membrane pixels, not the accuracy of the "
        "all-interior predictor.\nHint: that predictor is right on every interior pixel: "
        "look at which pixels you count as correct.",
    "pixel_metrics.baseline_dice.value":
        "baseline_dice is not the membrane Dice of the all-interior predictor on the demo "
        "masks.\nHint: build the prediction that calls every pixel class 0 and pass it to "
        "your dice.",
    "pixel_metrics.baseline_dice.one":
        "baseline_dice is 1, but the all-interior predictor finds no membrane pixel at all.\n"
        "Hint: with no predicted membrane pixel, TP = 0: look at what your dice is given.",
    "pixel_metrics.baseline_dice.accuracy":
        "baseline_dice is the predictor's accuracy, not its membrane Dice.\nHint: Dice of class "
        "1 counts membrane pixels only: look at which function you called.",
}

POINTS = {"pixel_accuracy": 2, "dice": 3, "iou": 2, "mean_iou": 2, "baseline": 1}

# The library functions that answer each question (and may not be called by the answer), the
# helpers a question hands out even though they call one of those, and what to do instead.
_COUNTING = (metrics.confusion_matrix, metrics.segmentation_report)
REFERENCES = {
    "pixel_accuracy": (metrics.pixel_accuracy, metrics.pixel_error) + _COUNTING,
    "dice": (metrics.dice, metrics.dice_per_class) + _COUNTING,
    "iou": (metrics.iou, metrics.iou_per_class) + _COUNTING,
    "mean_iou": (metrics.mean_iou, metrics.iou_per_class) + _COUNTING,
}
ALLOWED = {"mean_iou": (metrics.iou,)}        # "use your iou"
ADVICE = ("count the pixels yourself with numpy, e.g. np.sum((pred == 1) & (target == 1)) "
          "for the true positives")


# --------------------------------------------------------------------------- inputs

def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(description, pred, target)`` triples: fixed, small, int64."""
    rng = np.random.default_rng(2015)
    batch_t = (rng.random((3, 8, 8)) < 0.3).astype(np.int64)
    batch_p = np.where(rng.random((3, 8, 8)) < 0.8, batch_t, 1 - batch_t)
    tall_t = np.zeros((12, 5), dtype=np.int64)
    tall_t[:, 2] = 1                                    # a vertical membrane
    tall_p = np.zeros_like(tall_t)
    tall_p[2:, 1:3] = 1                                 # thicker, shifted, shorter
    return [
        ("a 2 x 3 example", np.array([[0, 1, 1], [0, 0, 1]]), np.array([[0, 1, 0], [0, 1, 1]])),
        ("a 12 x 5 image with one thick, shifted membrane", tall_p, tall_t),
        ("a batch of 3 random 8 x 8 masks (N x H x W)", batch_p, batch_t),
        ("a perfect prediction", batch_t[0].copy(), batch_t[0].copy()),
    ]


def _describe(pred: np.ndarray, target: np.ndarray) -> str:
    return f"pred and target: shape {pred.shape}, {pred.dtype}"


# --------------------------------------------------------------------------- helpers

def _scalar(value, name: str, where: str) -> float:
    """``value`` as a float, or a :class:`CheckFailed` that says why it is not one number."""
    if value is None:
        fail("pixel_metrics.returned_none", f"{name} returned None on {where}; did you "
                                            "forget `return`?")
    if hasattr(value, "detach"):                        # a torch tensor, maybe on a GPU
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        fail("pixel_metrics.not_a_number", f"{name} returned {type(value).__name__} "
                                           f"{value!r:.60} on {where}; return one number (a float)")
    if arr.size != 1:
        fail("pixel_metrics.not_one_number",
             f"{name} returned an array of shape {arr.shape} on {where}; return one number for "
             "the whole input: count over every pixel of every image, not per image or per row")
    return float(arr.reshape(()))


def _close(got: float, expected: float) -> bool:
    if math.isnan(expected) or math.isnan(got):
        return math.isnan(expected) and math.isnan(got)
    return abs(got - expected) <= TOLERANCE * max(1.0, abs(expected))


def _call(fn: Callable, name: str, pred: np.ndarray, target: np.ndarray, where: str) -> float:
    """``fn(pred, target)`` as one float, with a message that says what went wrong."""
    p, t = pred.copy(), target.copy()                 # your function gets copies ...
    value = call_own(fn, name, p, t, where=f"{where} ({_describe(pred, target)})",
                     references=REFERENCES[name], allowed=ALLOWED.get(name, ()), advice=ADVICE)
    if not (np.array_equal(p, pred) and np.array_equal(t, target)):   # ... to catch this
        fail("pixel_metrics.changed_input",
             f"{name} changed its input arrays on {where}; a metric must only read pred and "
             "target (work on a copy, e.g. pred == 1)")
    return _scalar(value, name, where)


def _check_metric(fn: Callable, name: str, reference: Callable, hint: str, value_id: str,
                  mistakes: Callable, points: float | None) -> None:
    """Compare ``fn`` with ``reference`` on every case; a wrong value fails with the first
    mistake of ``mistakes(pred, target)`` (``(value, why, check id)`` triples) it matches, or
    with ``hint`` and ``value_id``."""
    cases = _cases()
    for where, pred, target in cases:
        where = f"'{where}'"
        expected = float(reference(pred, target))
        got = _call(fn, name, pred, target, where)
        if _close(got, expected):
            continue
        diagnosis, key = next(((why, key) for value, why, key in mistakes(pred, target)
                               if _close(got, float(value))), (hint, value_id))
        off = "" if math.isnan(got) or math.isnan(expected) else f" (off by {abs(got - expected):.6g})"
        fail(key, f"{name}(pred, target) is wrong on {where} ({_describe(pred, target)}): "
                  f"expected {expected:.6g}, got {got:.6g}{off}.\nHint: {diagnosis}")
    report_passed(POINTS, name, len(cases), points)


def _counts(pred, target, cls=1):
    p, t = pred == cls, target == cls
    return int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())


# --------------------------------------------------------------------------- the checks

def check_pixel_accuracy(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(pred, target) -> float``, the fraction of pixels predicted correctly.

    Example:
        >>> check_pixel_accuracy(lambda pred, target: (pred == target).sum())
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: pixel_accuracy(pred, target) is wrong on 'a 2 x 3 example' (pred and target: shape (2, 3), int64): expected 0.666667, got 4 (off by 3.33333).
        Hint: you returned the number of correct pixels; divide by the number of pixels (pred.size)
        [check: pixel_metrics.pixel_accuracy.count]
    """
    def mistakes(pred, target):
        correct = (pred == target).sum()
        return [(correct, "you returned the number of correct pixels; divide by the number of "
                          "pixels (pred.size)", "pixel_metrics.pixel_accuracy.count"),
                (1 - correct / pred.size, "that is the pixel *error*, 1 - accuracy",
                 "pixel_metrics.pixel_accuracy.error"),
                ((pred == target).mean(axis=-1).sum(), "average over every pixel at once",
                 "pixel_metrics.pixel_accuracy.per_row")]

    _check_metric(fn, "pixel_accuracy", metrics.pixel_accuracy,
                  "accuracy = (number of pixels where pred == target) / (number of pixels)",
                  "pixel_metrics.pixel_accuracy.value", mistakes, points)


def check_dice(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(pred, target) -> float``, the Dice coefficient of class 1 (membrane).

    Example:
        >>> import numpy as np
        >>> def dice(pred, target):
        ...     tp = np.sum((pred == 1) & (target == 1))
        ...     return 2 * tp / (np.sum(pred == 1) + np.sum(target == 1))
        >>> check_dice(dice)
        dice: all 4 checks passed - 3 points

        Handing the task to the library scores nothing:

        >>> from unet_teach.metrics import dice
        >>> check_dice(dice)
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: dice called the library's reference implementation unet_teach.metrics.dice on 'a 2 x 3 example' (pred and target: shape (2, 3), int64): that is the answer key, not an answer, and earns no points for this question.
        Hint: count the pixels yourself with numpy, e.g. np.sum((pred == 1) & (target == 1)) for the true positives; the library's function is only the reference the check compares with
        [check: common.library_reference]
    """
    def mistakes(pred, target):
        tp, fp, fn_ = _counts(pred, target)
        return [(metrics.dice(pred, target, cls=0), "that is the Dice of class 0 (cell interior); "
                 "membrane is class 1", "pixel_metrics.dice.class0"),
                (metrics.iou(pred, target), "that is the IoU, TP / (TP + FP + FN); Dice counts "
                 "the overlap twice: 2 TP / (2 TP + FP + FN)", "pixel_metrics.dice.iou"),
                (tp / max(tp + fp, 1), "that is the precision TP / (TP + FP); Dice also counts "
                 "the missed membrane pixels (FN)", "pixel_metrics.dice.precision"),
                (tp / max(tp + fn_, 1), "that is the recall TP / (TP + FN); Dice also counts the "
                 "false alarms (FP)", "pixel_metrics.dice.recall"),
                (metrics.pixel_accuracy(pred, target), "that is the pixel accuracy; Dice looks at "
                 "class 1 only", "pixel_metrics.dice.accuracy")]

    _check_metric(fn, "dice", metrics.dice,
                  "Dice = 2 TP / (2 TP + FP + FN) with TP = (pred == 1) & (target == 1), "
                  "FP = (pred == 1) & (target == 0), FN = (pred == 0) & (target == 1)",
                  "pixel_metrics.dice.value", mistakes, points)


def check_iou(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(pred, target) -> float``, the intersection over union of class 1.

    Example:
        >>> import numpy as np
        >>> check_iou(lambda p, t: np.sum((p == 1) & (t == 1)) / np.sum((p == 1) | (t == 1)))
        iou: all 4 checks passed - 2 points
    """
    def mistakes(pred, target):
        return [(metrics.iou(pred, target, cls=0), "that is the IoU of class 0 (cell interior); "
                 "membrane is class 1", "pixel_metrics.iou.class0"),
                (metrics.dice(pred, target), "that is the Dice; IoU = TP / (TP + FP + FN), the "
                 "intersection divided by the union", "pixel_metrics.iou.dice")]

    _check_metric(fn, "iou", metrics.iou,
                  "IoU = |pred == 1 and target == 1| / |pred == 1 or target == 1|",
                  "pixel_metrics.iou.value", mistakes, points)


def check_mean_iou(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(pred, target) -> float``, the IoU averaged over classes 0 and 1.

    Example:
        >>> check_mean_iou(lambda pred, target: 0.5)
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: mean_iou(pred, target) is wrong on 'a 12 x 5 image with one thick, shifted membrane' (pred and target: shape (12, 5), int64): expected 0.607273, got 0.5 (off by 0.107273).
        Hint: mean IoU = (IoU of class 0 + IoU of class 1) / 2, leaving out a class absent from both maps
        [check: pixel_metrics.mean_iou.value]
    """
    def mistakes(pred, target):
        return [(metrics.iou(pred, target), "that is the IoU of class 1 only; average it with "
                 "the IoU of class 0", "pixel_metrics.mean_iou.class1_only"),
                (metrics.mean_dice(pred, target), "that is the mean Dice; use IoU for each class",
                 "pixel_metrics.mean_iou.mean_dice")]

    _check_metric(fn, "mean_iou", lambda p, t: metrics.mean_iou(p, t, num_classes=2),
                  "mean IoU = (IoU of class 0 + IoU of class 1) / 2, leaving out a class absent "
                  "from both maps", "pixel_metrics.mean_iou.value", mistakes, points)


def check_baseline(accuracy, dice_value, masks, points: float | None = None) -> None:
    """Check the accuracy and the Dice of the predictor that calls every pixel of ``masks``
    cell interior (class 0).

    Example:
        >>> masks = np.array([[0, 0, 0, 1]])
        >>> check_baseline(0.75, 0.0, masks)
        baseline: all 2 checks passed - 1 point
        >>> check_baseline(0.25, 0.0, masks)
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: baseline_accuracy is wrong: expected 0.75, got 0.25 (off by 0.5).
        Hint: that is the fraction of membrane pixels; the all-interior predictor is right on every interior pixel
        [check: pixel_metrics.baseline_accuracy.membrane_fraction]
    """
    masks = np.asarray(masks)
    pred = np.zeros_like(masks)
    membrane = float((masks == 1).mean())
    for name, value, expected, value_id, mistakes in [
        ("baseline_accuracy", accuracy, metrics.pixel_accuracy(pred, masks),
         "pixel_metrics.baseline_accuracy.value",
         [(membrane, "that is the fraction of membrane pixels; the all-interior predictor is "
                     "right on every interior pixel",
           "pixel_metrics.baseline_accuracy.membrane_fraction")]),
        ("baseline_dice", dice_value, metrics.dice(pred, masks),
         "pixel_metrics.baseline_dice.value",
         [(1.0, "the predictor finds no membrane pixel at all, so TP = 0",
           "pixel_metrics.baseline_dice.one"),
          (1 - membrane, "that is the accuracy; Dice of class 1 counts membrane pixels only",
           "pixel_metrics.baseline_dice.accuracy")]),
    ]:
        got = _scalar(value, name, "the demo masks")
        if not _close(got, expected):
            hint, key = next(((why, key) for v, why, key in mistakes if _close(got, v)),
                             ("build the prediction np.zeros_like(masks) and use your functions",
                              value_id))
            fail(key, f"{name} is wrong: expected {expected:.6g}, got {got:.6g} "
                      f"(off by {abs(got - expected):.6g}).\nHint: {hint}")
    report_passed(POINTS, "baseline", 2, points)
