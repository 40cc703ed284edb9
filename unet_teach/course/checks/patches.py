"""Checks for exercise 2 (patches, their cost and their receptive field).

Each check runs your function on a few fixed inputs and compares it with a reference built
from :mod:`unet_teach.patches` and :mod:`unet_teach.cost`. On success it prints one line with
the points; otherwise it raises ``CheckFailed`` (an ``AssertionError``) naming the input, the
expected and the returned value, by how much they differ, and a hint, then the check's id
(``MESSAGES[id]`` is the fixed text a grader shows for it). Images are small fixed float64
arrays, everything runs on the CPU.

A conv/pool stack is written as a list of tuples: ``("conv", in_channels, out_channels,
kernel)`` for a valid (unpadded) square convolution with stride 1, and ``("pool", k)`` for a
``k x k`` max-pooling with stride ``k``.

The library is not the answer key: an answer that calls the library's version of what the
question asks for scores no points for that question, with that reason in the message (see
:func:`~unet_teach.course.checks.losses.call_own`). Guarded, per question (``REFERENCES``):
``patches.extract_patch`` / ``extract_patches`` (the patch); ``extract_patches``,
``sliding_window_scores`` and ``sliding_window_segment`` (segmenting; an ``extract_patch``
function, the previous answer, may be used); ``cost.count_macs`` and ``layer_macs`` (MACs);
``cost.per_position_macs``, ``sliding_window_macs``, ``dense_macs`` and ``redundancy_factor``
(redundancy); ``cost.receptive_field`` and ``empirical_receptive_field``. ``np.pad``, the
helper the text hands out for mirroring, is allowed (and so is ``patches.mirror_pad``, which
is that call).

Example:
    >>> check_extract_patch(lambda image, row, col, window:
    ...     np.pad(image, window // 2, mode="reflect")[row:row + window, col:col + window])
    extract_patch: all 5 checks passed - 3 points

    Handing the task to the library scores nothing:

    >>> from unet_teach.patches import extract_patch
    >>> check_extract_patch(extract_patch)
    Traceback (most recent call last):
    ...
    unet_teach.course.checks._common.CheckFailed: extract_patch called the library's reference implementation unet_teach.patches.extract_patch on 'a 6 x 5 ramp', pixel (0, 0), window 3: that is the answer key, not an answer, and earns no points for this question.
    Hint: mirror-pad the image with np.pad (mode='reflect') and slice the patch out yourself; the library's function is only the reference the check compares with
    [check: common.library_reference]
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from torch import nn

from ... import cost, patches
from ._common import call_own, fail, report_passed

# What a grader may copy into a feedback file for each check that fails, by the id the check
# raises with (see _common.CheckFailed): a fixed text, what is wrong and where to look.
MESSAGES: dict[str, str] = {
    "patches.returned_none":
        "The function returned None instead of its result.\nHint: look at the end of your "
        "function: the value it computes must be given back with `return`.",
    "patches.not_a_number":
        "The function returned something that is not one number (a list, an array of several "
        "values, a string...).\nHint: look at what your `return` line gives back: one number "
        "for the whole stack.",
    # Q1 the patch
    "patches.extract_patch.shape":
        "extract_patch returns a patch of the wrong shape.\nHint: the patch is window x window, "
        "centred on the pixel; look at the slice you take out of the padded image and at how "
        "much you pad.",
    "patches.extract_patch.symmetric":
        "extract_patch mirrors the border with the edge pixel repeated (numpy's 'symmetric' "
        "mode); the question mirrors without repeating it.\nHint: look at the mode you pad "
        "with: the question names numpy's mode for this mirroring.",
    "patches.extract_patch.values":
        "extract_patch returns the wrong values: not the mirrored patch centred on the pixel."
        "\nHint: after padding by window // 2 on every side, pixel (row, col) of the image "
        "moves; look at where your slice starts in the padded image.",
    # Q2 sliding window
    "patches.sliding_window_segment.shape":
        "sliding_window_segment returns a label map of the wrong shape.\nHint: one label per "
        "pixel: look at how you shape classify's answer into an image.",
    "patches.sliding_window_segment.values":
        "sliding_window_segment gives wrong labels.\nHint: classify must get the mirrored "
        "patch of every pixel, in row-major order (row by row); look at the order you collect "
        "the patches in and at how you turn the labels back into an image.",
    # Q3 cost
    "patches.stack_macs.value":
        "stack_macs gives the wrong number of multiply-accumulates.\nHint: follow the side "
        "length through the layers (a valid k x k conv and a k-pool both shrink it) and add "
        "each conv's cost at its output size; the question gives the cost of one conv.",
    "patches.redundancy.value":
        "redundancy gives the wrong ratio.\nHint: it is the sliding window's cost per pixel "
        "(your stack_macs of one window) divided by the cost of computing every conv feature "
        "once; look at the second one, which the question defines.",
    # Q4 receptive field
    "patches.receptive_field.not_a_pair":
        "receptive_field does not return a pair of numbers.\nHint: return the tuple "
        "(size, stride).",
    "patches.receptive_field.value":
        "receptive_field gives the wrong size or stride.\nHint: walk the layers keeping jump, "
        "the spacing of the current map's features in input pixels: look at what a k x k "
        "layer adds to the size, and at how a pooling layer changes the jump.",
}

POINTS = {"extract_patch": 3, "sliding_window_segment": 2, "stack_macs": 3, "redundancy": 2,
          "receptive_field": 3}

STACKS = {
    "one 3x3 conv": [("conv", 1, 4, 3)],
    "conv 3x3, pool 2, conv 3x3": [("conv", 1, 8, 3), ("pool", 2), ("conv", 8, 16, 3)],
    "Ciresan's N4 (window 95)": [("conv", 1, 48, 4), ("pool", 2), ("conv", 48, 48, 5), ("pool", 2),
                                 ("conv", 48, 48, 4), ("pool", 2), ("conv", 48, 48, 4), ("pool", 2)],
    "two convs, pool 3": [("conv", 2, 4, 5), ("conv", 4, 4, 3), ("pool", 3)],
}
WINDOWS = {"one 3x3 conv": 9, "conv 3x3, pool 2, conv 3x3": 17, "Ciresan's N4 (window 95)": 95,
           "two convs, pool 3": 23}

# The library functions that answer each question (an answer may not call them), the helpers
# a question hands out although they call one (an earlier answer), and what to do instead.
REFERENCES = {
    "extract_patch": (patches.extract_patch, patches.extract_patches),
    "sliding_window_segment": (patches.extract_patches, patches.sliding_window_scores,
                               patches.sliding_window_segment),
    "stack_macs": (cost.count_macs, cost.layer_macs, cost.sliding_window_macs),
    "redundancy": (cost.per_position_macs, cost.sliding_window_macs, cost.dense_macs,
                   cost.redundancy_factor),
    "receptive_field": (cost.receptive_field, cost.empirical_receptive_field),
}
ALLOWED = {"sliding_window_segment": (patches.extract_patch,)}   # Q1's answer, one patch
ADVICE = {
    "extract_patch": "mirror-pad the image with np.pad (mode='reflect') and slice the patch "
                     "out yourself",
    "sliding_window_segment": "loop over the pixels in row-major order, stack their patches "
                              "(your extract_patch) and call classify once",
    "stack_macs": "walk the layers yourself, following the side length",
    "redundancy": "sum c_in * c_out * k * k over the convs yourself",
    "receptive_field": "walk the layers yourself, keeping the jump",
}


def _call(fn: Callable, name: str, *args, where: str):
    return call_own(fn, name, *args, where=where, references=REFERENCES[name],
                    allowed=ALLOWED.get(name, ()), advice=ADVICE[name])


def to_module(layers) -> nn.Sequential:
    """The ``nn.Sequential`` a list of ``("conv", cin, cout, k)`` / ``("pool", k)`` describes.

    Example:
        >>> to_module([("conv", 1, 4, 3), ("pool", 2)])
        Sequential(
          (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1))
          (1): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
        )
    """
    mods = [nn.Conv2d(*spec[1:]) if spec[0] == "conv" else nn.MaxPool2d(spec[1]) for spec in layers]
    return nn.Sequential(*mods)


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2012)
    return {"a 6 x 5 ramp": np.arange(30, dtype=np.float64).reshape(6, 5),
            "a random 9 x 7 image": rng.random((9, 7))}


def _number(value, name: str, where: str, expected: float, hint: str, check_id: str,
            rel: float = 1e-9) -> None:
    """``value`` must be one number within ``rel`` of ``expected``; ``check_id`` names the
    check of a wrong value."""
    if value is None:
        fail("patches.returned_none", f"{name} returned None on {where}; did you forget "
                                      "`return`?")
    try:
        got = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        fail("patches.not_a_number", f"{name} returned {type(value).__name__} {value!r:.60} on "
                                     f"{where}; return one number")
    if abs(got - expected) > rel * max(1.0, abs(expected)):
        fail(check_id, f"{name} is wrong on {where}: expected {expected:,.6g}, got "
                       f"{got:,.6g} (off by {abs(got - expected):,.6g}).\nHint: {hint}")


def check_extract_patch(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(image, row, col, window) -> window x window`` patch, borders mirrored.

    Example:
        >>> check_extract_patch(lambda image, row, col, window: image[:window, :window])
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: extract_patch is wrong on 'a 6 x 5 ramp', pixel (0, 0), window 3: 9 of 9 values differ (largest difference 6).
        Hint: mirror-pad by window // 2 on every side (np.pad, mode='reflect'); padding moves pixel (row, col), so look at where your slice of the padded image starts
        [check: patches.extract_patch.values]
    """
    cases = [(0, 0, 3), (5, 4, 5), (2, 2, 1), (3, 1, 7)]
    n = 0
    for where, image in _images().items():
        for row, col, window in cases[:2] if where.startswith("a 6") else cases[1:]:
            if window // 2 >= min(image.shape):
                continue
            n += 1
            expected = patches.extract_patch(image, row, col, window)
            place = f"'{where}', pixel ({row}, {col}), window {window}"
            got = _call(fn, "extract_patch", image.copy(), row, col, window, where=place)
            if got is None:
                fail("patches.returned_none", f"extract_patch returned None on {place}; did you "
                                              "forget `return`?")
            got = np.asarray(got)
            if got.shape != expected.shape:
                fail("patches.extract_patch.shape",
                     f"extract_patch returned shape {got.shape} on {place}; expected "
                     f"{expected.shape}.\nHint: the patch is window x window, centred on the pixel")
            if not np.allclose(got, expected):
                bad = ~np.isclose(got, expected)
                symmetric = np.pad(image, window // 2, mode="symmetric")[row:row + window,
                                                                         col:col + window]
                edge, key = (("np.pad's 'symmetric' mode repeats the edge pixel; mirroring here "
                              "uses 'reflect'", "patches.extract_patch.symmetric")
                             if np.allclose(got, symmetric) else
                             ("mirror-pad by window // 2 on every side (np.pad, mode='reflect'); "
                              "padding moves pixel (row, col), so look at where your slice of the "
                              "padded image starts", "patches.extract_patch.values"))
                fail(key, f"extract_patch is wrong on {place}: {bad.sum()} of {bad.size} values "
                          f"differ (largest difference {np.abs(got - expected).max():g}).\nHint: {edge}")
    report_passed(POINTS, "extract_patch", n, points)


def check_sliding_window_segment(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(classify, image, window) -> H x W`` labels, where ``classify`` maps a
    ``P x window x window`` batch of patches to ``P`` labels.

    Example:
        >>> from numpy.lib.stride_tricks import sliding_window_view
        >>> check_sliding_window_segment(lambda classify, image, window: classify(
        ...     sliding_window_view(np.pad(image, window // 2, mode="reflect"), (window, window))
        ...     .reshape(-1, window, window)).reshape(image.shape))
        sliding_window_segment: all 2 checks passed - 2 points
    """
    # a 'classifier' that answers 1 when the patch is darker than its centre pixel on average
    def classify(batch):
        batch = np.asarray(batch)
        c = batch.shape[-1] // 2
        return (batch.mean(axis=(-2, -1)) < batch[:, c, c]).astype(np.int64)

    n = 0
    for where, image in _images().items():
        n += 1
        expected = classify(patches.extract_patches(image, 3)).reshape(image.shape)
        got = _call(fn, "sliding_window_segment", classify, image.copy(), 3,
                    where=f"'{where}' (window 3)")
        if got is None:
            fail("patches.returned_none", f"sliding_window_segment returned None on '{where}'; "
                                          "did you forget `return`?")
        got = np.asarray(got)
        if got.shape != expected.shape:
            fail("patches.sliding_window_segment.shape",
                 f"sliding_window_segment returned shape {got.shape} on '{where}'; expected "
                 f"{expected.shape}.\nHint: one label per pixel, reshape to image.shape")
        if not np.array_equal(got, expected):
            fail("patches.sliding_window_segment.values",
                 f"sliding_window_segment is wrong on '{where}' (window 3): "
                 f"{int((got != expected).sum())} of {got.size} labels differ.\nHint: give "
                 "classify the mirrored patch of every pixel in row-major order")
    report_passed(POINTS, "sliding_window_segment", n, points)


def check_stack_macs(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(layers, size) -> int``, the MACs of one ``size x size`` input through a
    conv/pool stack (valid convolutions, bias and pooling not counted).

    Example:
        >>> check_stack_macs(lambda layers, size: 0)
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: stack_macs is wrong on 'one 3x3 conv' with a 9 x 9 input: expected 1,764, got 0 (off by 1,764).
        Hint: a conv costs out_h * out_w * c_out * c_in * k * k; a valid k x k conv maps s to s - k + 1, a k-pool maps s to s // k
        [check: patches.stack_macs.value]
    """
    for where, layers in STACKS.items():
        size = WINDOWS[where]
        expected = cost.count_macs(to_module(layers), (1, layers[0][1], size, size))
        place = f"'{where}' with a {size} x {size} input"
        got = _call(fn, "stack_macs", list(layers), size, where=place)
        _number(got, "stack_macs", place, expected,
                "a conv costs out_h * out_w * c_out * c_in * k * k; a valid k x k conv maps s to "
                "s - k + 1, a k-pool maps s to s // k", "patches.stack_macs.value")
    report_passed(POINTS, "stack_macs", len(STACKS), points)


def check_redundancy(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(layers, window) -> float``: MACs of one window through the stack divided by
    the MACs per position when each feature is computed once (``sum c_in * c_out * k * k``).

    Example:
        >>> check_redundancy(lambda layers, window: 1.0)
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: redundancy is wrong on 'one 3x3 conv' with window 9: expected 49, got 1 (off by 48).
        Hint: divide stack_macs(layers, window) by the once-per-position cost, the sum over convs of c_in * c_out * k * k
        [check: patches.redundancy.value]
    """
    for where, layers in STACKS.items():
        window = WINDOWS[where]
        net = to_module(layers)
        expected = cost.count_macs(net, (1, layers[0][1], window, window)) / cost.per_position_macs(net)
        place = f"'{where}' with window {window}"
        got = _call(fn, "redundancy", list(layers), window, where=place)
        _number(got, "redundancy", place, expected,
                "divide stack_macs(layers, window) by the once-per-position cost, the sum over "
                "convs of c_in * c_out * k * k", "patches.redundancy.value", rel=1e-6)
    report_passed(POINTS, "redundancy", len(STACKS), points)


def check_receptive_field(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(layers) -> (size, stride)`` of a conv/pool stack.

    Example:
        >>> check_receptive_field(lambda layers: (3, 1))
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: receptive_field is wrong on 'conv 3x3, pool 2, conv 3x3': expected (8, 2), got (3, 1).
        Hint: walk the layers keeping jump, the spacing of the current map's features in input pixels (1 at the start): a k x k layer widens the field by k - 1 of those spacings, and a layer's stride multiplies the jump (1 for a conv, k for a k-pool)
        [check: patches.receptive_field.value]
    """
    for where, layers in STACKS.items():
        expected = cost.receptive_field(to_module(layers))
        got = _call(fn, "receptive_field", list(layers), where=f"'{where}'")
        if got is None:
            fail("patches.returned_none", f"receptive_field returned None on '{where}'; did you "
                                          "forget `return`?")
        try:
            got = tuple(int(v) for v in got)
        except (TypeError, ValueError):
            fail("patches.receptive_field.not_a_pair", f"receptive_field returned {got!r:.60} on "
                                                       f"'{where}'; return a tuple (size, stride)")
        if len(got) != 2:
            fail("patches.receptive_field.not_a_pair", f"receptive_field returned {len(got)} "
                                                       f"values on '{where}'; return a tuple "
                                                       "(size, stride)")
        if got != expected:
            fail("patches.receptive_field.value",
                 f"receptive_field is wrong on '{where}': expected {expected}, got {got}.\n"
                 "Hint: walk the layers keeping jump, the spacing of the current map's features "
                 "in input pixels (1 at the start): a k x k layer widens the field by k - 1 of "
                 "those spacings, and a layer's stride multiplies the jump (1 for a conv, k for a "
                 "k-pool)")
    report_passed(POINTS, "receptive_field", len(STACKS), points)
