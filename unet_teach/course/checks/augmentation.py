"""Checks for exercise 5 (few images: augmentation and the learning curve).

``check_warp`` and ``check_elastic`` compare your deformation with the reference in
:mod:`unet_teach.augment` wherever the comparison is deterministic: given the same
displacement field (``augment.elastic(..., field=...)``), or the same random generator, the
images must agree to float rounding and the masks exactly. They also check the properties
that make a deformation usable for training whatever the implementation: the image stays
aligned with its mask, ``sigma=0`` changes nothing, no new labels appear, shapes and dtypes
are kept, and borders are mirrored. ``check_experiment`` only checks the form of your
recorded training result (keys, types, ranges): what the numbers mean is for your written
answer.

As in every exercise, the library is not the answer key: a ``warp`` or
``elastic`` that calls ``augment.elastic`` (or ``elastic_torch``, or ``Augment``, which calls
it) scores no points, with that reason in the message; see
:func:`unet_teach.course.checks.losses.call_own` for how the call is detected. The helper the
exercise hands you, ``augment.displacement_field``, is allowed.

Example:
    >>> from scipy import ndimage
    >>> def warp(image, mask, field):
    ...     h, w = image.shape
    ...     rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ...     coords = np.stack([rows + field[0], cols + field[1]])
    ...     return (ndimage.map_coordinates(image, coords, order=1, mode="mirror"),
    ...             ndimage.map_coordinates(mask, coords, order=0, mode="mirror"))
    >>> check_warp(warp)
    warp: all 5 checks passed - 3 points
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Callable

import numpy as np
from scipy import ndimage

from ... import augment
from ._common import call_own, report_passed

POINTS = {"warp": 3, "elastic": 2, "experiment": 2}
REFERENCES = (augment.elastic, augment.elastic_torch, augment.Augment.__call__)
ADVICE = ("resample yourself with scipy.ndimage.map_coordinates (order=1 for the image, "
          "order=0 for the mask, mode='mirror')")
IMAGE_TOLERANCE = 1e-5


# --------------------------------------------------------------------------- inputs

def _blobs(shape, seed: int, labels=(1,)) -> np.ndarray:
    """An integer mask of smooth random blobs, one label per blob group (0 = background)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.int64)
    for label in labels:
        noise = ndimage.gaussian_filter(rng.normal(size=shape), 3.0, mode="wrap")
        out[(noise > np.quantile(noise, 0.75)) & (out == 0)] = label
    return out


def _stripes(shape) -> np.ndarray:
    """Diagonal stripes 3 px wide (like membranes) plus a disc: a mask with long borders."""
    rows, cols = np.indices(shape)
    mask = ((rows + cols) // 3 % 4 == 0).astype(np.int64)
    mask[(rows - shape[0] / 2) ** 2 + (cols - shape[1] / 3) ** 2 < (min(shape) / 5) ** 2] = 1
    return mask


def _warp_cases() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(5)
    smooth = augment.displacement_field((20, 17), sigma=3.0, grid=3, rng=rng)
    image = rng.random((20, 17))
    labels = _blobs((20, 17), 1, labels=(1, 2))
    h, w = 12, 10
    shift = np.stack([np.full((h, w), 2.25), np.full((h, w), -1.75)])
    far = np.stack([np.full((h, w), 5.0), np.zeros((h, w))])
    ramp = np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)
    return [
        ("a random 20 x 17 image, 3 labels, a smooth field (sigma 3)", image, labels, smooth),
        ("a float32 12 x 10 ramp shifted by (dy, dx) = (2.25, -1.75)", ramp,
         _stripes((h, w)), shift),
        ("a 12 x 10 ramp read 5 rows below itself (the mirror at the bottom)", ramp.astype(
            np.float64), (np.arange(h * w).reshape(h, w) % 7).astype(np.int32), far),
        ("a zero field (nothing moves)", image, labels, np.zeros((2, 20, 17))),
        ("a 20 x 17 smooth field read backwards: out[p] = in[p + d(p)]", image,
         labels, -smooth),
    ]


# --------------------------------------------------------------------------- helpers

def _pair(value, name: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    if value is None:
        raise AssertionError(f"{name} returned None on {where}; did you forget `return`?")
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise AssertionError(f"{name} returned {type(value).__name__} on {where}; return the "
                             "pair (image, mask)")
    image, mask = value
    if image is None or mask is None:
        raise AssertionError(f"{name} returned None for the {'image' if image is None else 'mask'}"
                             f" on {where}; return the pair (image, mask)")
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    return np.asarray(image), np.asarray(mask)


def _same_form(name: str, where: str, image, mask, got_image, got_mask) -> None:
    """Shapes, dtypes and labels as the inputs'."""
    for what, given, got in (("image", image, got_image), ("mask", mask, got_mask)):
        if got.shape != given.shape:
            raise AssertionError(f"{name} returned a {what} of shape {got.shape} on {where}; "
                                 f"expected the input's shape {given.shape}")
        if got.dtype != given.dtype:
            raise AssertionError(f"{name} changed the {what}'s dtype on {where}: {given.dtype} -> "
                                 f"{got.dtype}.\nHint: give the result the input's dtype, e.g. "
                                 f"out.astype({what}.dtype) (map_coordinates' output= does it too)")
    new = sorted(set(np.unique(got_mask).tolist()) - set(np.unique(mask).tolist()))
    if new:
        raise AssertionError(f"{name} made new mask labels {new[:5]} on {where} (the input has "
                             f"{np.unique(mask).tolist()[:8]}).\nHint: resample the mask with "
                             "nearest neighbour (order=0): interpolating labels invents classes "
                             "along their borders")


def _border_hint(image, field, got) -> str | None:
    """Which of the usual wrong border modes ``got`` matches, if any."""
    h, w = image.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([rows + field[0], cols + field[1]])
    for mode, why in (("reflect", "scipy's 'reflect' repeats the edge pixel (numpy's "
                                  "'symmetric'); mirroring here is scipy's mode='mirror' "
                                  "(numpy's 'reflect')"),
                      ("nearest", "that repeats the edge pixel; mirror the image at its border: "
                                  "mode='mirror'"),
                      ("constant", "that fills with 0 outside the image; mirror it: "
                                   "mode='mirror'"),
                      ("wrap", "that wraps around; mirror the image at its border: "
                               "mode='mirror'")):
        other = ndimage.map_coordinates(image.astype(np.float64), coords, order=1, mode=mode)
        if np.allclose(got, other, atol=IMAGE_TOLERANCE):
            return why
    for sign, why in ((-1, "the field is read backwards: out[p] = in[p + d(p)], so add the "
                           "displacement to the pixel's coordinates, do not subtract it"),):
        other = ndimage.map_coordinates(image.astype(np.float64),
                                        np.stack([rows + sign * field[0], cols + sign * field[1]]),
                                        order=1, mode="mirror")
        if np.allclose(got, other, atol=IMAGE_TOLERANCE):
            return why
    swapped = ndimage.map_coordinates(image.astype(np.float64),
                                      np.stack([rows + field[1], cols + field[0]]), order=1,
                                      mode="mirror") if field.shape[1:] == image.shape else None
    if swapped is not None and np.allclose(got, swapped, atol=IMAGE_TOLERANCE):
        return "field[0] is dy (rows) and field[1] is dx (columns)"
    return None


def _compare(name: str, where: str, image, field, expected, got, hint: str) -> None:
    (ei, em), (gi, gm) = expected, got
    diff = np.abs(gi.astype(np.float64) - ei.astype(np.float64))
    if not diff.max(initial=0) <= IMAGE_TOLERANCE:
        at = tuple(int(i) for i in np.unravel_index(diff.argmax(), diff.shape))
        why = (_border_hint(image, field, gi) if field is not None else None) or hint
        raise AssertionError(f"{name} gives a wrong image on {where}: {int((diff > IMAGE_TOLERANCE).sum())}"
                             f" of {diff.size} pixels differ from the reference, e.g. at {at}: "
                             f"expected {ei[at]:.6g}, got {gi[at]:.6g}.\nHint: {why}")
    bad = gm != em
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(f"{name} gives a wrong mask on {where}: {int(bad.sum())} of "
                             f"{bad.size} labels differ from the reference, e.g. at {at}: "
                             f"expected {em[at]}, got {gm[at]}.\nHint: resample the mask with "
                             "the same coordinates as the image, nearest neighbour (order=0), "
                             "mode='mirror'")


# --------------------------------------------------------------------------- Q1 warp

def check_warp(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(image, mask, field) -> (image, mask)``: resample a float ``H x W`` image
    (linear) and an integer ``H x W`` mask (nearest) along the displacement field ``field``
    (``2 x H x W``, (dy, dx), read backwards: output pixel p takes the input at p + d(p)),
    borders mirrored, shapes and dtypes kept; compared with
    ``augment.elastic(image, mask, field=field)``.

    Example:
        >>> check_warp(lambda image, mask, field: (image, mask))
        Traceback (most recent call last):
        ...
        AssertionError: warp gives a wrong image on 'a random 20 x 17 image, 3 labels, a smooth field (sigma 3)': 340 of 340 pixels differ from the reference, e.g. at (12, 16): expected 0.926211, got 0.0251083.
        Hint: sample the image at (row + field[0], col + field[1]) with scipy.ndimage.map_coordinates(image, coords, order=1, mode='mirror')
    """
    name = "warp"
    cases = _warp_cases()
    for where, image, mask, field in cases:
        where = f"'{where}'"
        expected = augment.elastic(image, mask, field=field)
        given = (image.copy(), mask.copy(), field.copy())
        got = _pair(call_own(fn, name, *given, references=REFERENCES, where=where,
                             advice=ADVICE), name, where)
        if not (np.array_equal(given[0], image) and np.array_equal(given[1], mask)
                and np.array_equal(given[2], field)):
            raise AssertionError(f"{name} changed its inputs on {where}; return new arrays")
        _same_form(name, where, image, mask, *got)
        _compare(name, where, image, field, expected, got,
                 "sample the image at (row + field[0], col + field[1]) with "
                 "scipy.ndimage.map_coordinates(image, coords, order=1, mode='mirror')")
    report_passed(POINTS, name, len(cases), points)


# --------------------------------------------------------------------------- Q2 elastic

def check_elastic(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(image, mask, sigma, grid, rng) -> (image, mask)``: the U-Net paper's
    elastic deformation, the field drawn by one call
    ``augment.displacement_field(image.shape, sigma, grid, rng)``.

    Checked: a mask-shaped image deformed with its mask stays aligned with it (the image
    thresholded at 0.5 agrees with the mask on >= 99 % of pixels); ``sigma=0`` returns the
    inputs unchanged; no new labels; shapes and dtypes kept; two generators give two
    deformations; the same generator gives the reference's result.

    Example:
        >>> def elastic(image, mask, sigma, grid, rng):
        ...     field = augment.displacement_field(image.shape, sigma, grid, rng)
        ...     return augment.elastic(image, mask, field=field)
        >>> check_elastic(elastic)
        Traceback (most recent call last):
        ...
        AssertionError: elastic called the library's reference implementation unet_teach.augment.elastic on 'sigma=0 (no deformation)': that is the answer key, not an answer, and earns no points for this question.
        Hint: resample yourself with scipy.ndimage.map_coordinates (order=1 for the image, order=0 for the mask, mode='mirror'); the library's function is only the reference the check compares with
    """
    name = "elastic"
    n = 0

    def run(image, mask, sigma, grid, seed, where):
        given = (image.copy(), mask.copy())
        got = _pair(call_own(fn, name, given[0], given[1], sigma, grid,
                             np.random.default_rng(seed), references=REFERENCES, where=where,
                             advice=ADVICE), name, where)
        if not (np.array_equal(given[0], image) and np.array_equal(given[1], mask)):
            raise AssertionError(f"{name} changed its inputs on {where}; return new arrays")
        _same_form(name, where, image, mask, *got)
        return got

    # 1. sigma = 0 changes nothing
    image = np.random.default_rng(0).random((24, 20)).astype(np.float32)
    mask = _blobs((24, 20), 2, labels=(1, 4))
    where = "'sigma=0 (no deformation)'"
    got_image, got_mask = run(image, mask, 0.0, 3, 0, where)
    if not (np.allclose(got_image, image, atol=IMAGE_TOLERANCE) and np.array_equal(got_mask, mask)):
        raise AssertionError(f"{name} changed the image or the mask on {where}.\nHint: with "
                             "sigma=0 the field is 0 everywhere and every pixel reads itself")
    n += 1

    # 2. a mask-shaped image stays aligned with its mask
    mask = _blobs((48, 48), 1)
    image = mask.astype(np.float32)
    where = "'a mask-shaped 48 x 48 image (smooth blobs), sigma=6'"
    got_image, got_mask = run(image, mask, 6.0, 3, 1, where)
    agree = float(((got_image > 0.5) == (got_mask == 1)).mean())
    if agree < 0.99:
        raise AssertionError(f"{name} does not keep image and mask aligned on {where}: the "
                             f"deformed image thresholded at 0.5 agrees with the deformed mask on "
                             f"{agree:.1%} of pixels (need >= 99 %).\nHint: deform both with the "
                             "same field (draw it once), the image with order=1, the mask with "
                             "order=0")
    if np.array_equal(got_mask, mask):
        raise AssertionError(f"{name} did not deform anything on {where} (sigma=6).\nHint: draw "
                             "the field with displacement_field(image.shape, sigma, grid, rng)")
    n += 1

    # 3. two generators, two deformations; the same one, the reference's
    image = np.random.default_rng(3).random((32, 28))
    mask = _blobs((32, 28), 4, labels=(2, 5, 9)).astype(np.int32)
    first = run(image, mask, 8.0, 3, 10, "'a random 32 x 28 image, generator seeded 10'")
    second = run(image, mask, 8.0, 3, 11, "'a random 32 x 28 image, generator seeded 11'")
    if np.array_equal(first[0], second[0]):
        raise AssertionError(f"{name} gave the same deformation for two generators (seeds 10 "
                             "and 11).\nHint: draw the field from the rng argument, not from a "
                             "fixed seed")
    n += 2
    for seed, grid, sigma, got in ((10, 3, 8.0, first), (12, 4, 5.0, None)):
        where = f"'a random 32 x 28 image, sigma={sigma:g}, grid={grid}, generator seeded {seed}'"
        if got is None:
            got = run(image, mask, sigma, grid, seed, where)
        expected = augment.elastic(image, mask, sigma, grid, seed=np.random.default_rng(seed))
        field = augment.displacement_field(image.shape, sigma, grid, np.random.default_rng(seed))
        _compare(name, where, image, field, expected, got,
                 "draw the field with exactly one call, displacement_field(image.shape, sigma, "
                 "grid, rng), and take nothing else from rng; then warp image and mask with it")
        n += 1
    report_passed(POINTS, name, n, points)


# --------------------------------------------------------------------------- Q3 the experiment

EXPERIMENT_KEYS = {"seeds": "the seeds you ran, e.g. [0, 1]",
                   "flips": "validation Dice per seed, flips only",
                   "flips_elastic": "validation Dice per seed, flips + elastic deformation",
                   "seconds": "the whole comparison's training time in seconds"}


def check_experiment(result, points: float | None = None) -> None:
    """Check the form of the recorded comparison: a dict with ``seeds`` (at least two
    distinct ints), ``flips`` and ``flips_elastic`` (one Dice in [0, 1] per seed) and
    ``seconds`` (a positive number).

    Example:
        >>> check_experiment({"seeds": [0, 1], "flips": [0.81, 0.79],
        ...                   "flips_elastic": [0.75, 0.8], "seconds": 12.5})
        experiment: all 4 checks passed - 2 points
        >>> check_experiment({"seeds": [0, 1], "flips": [0.81, 79.0],
        ...                   "flips_elastic": [0.75, 0.8], "seconds": 12.5})
        Traceback (most recent call last):
        ...
        AssertionError: result['flips'][1] is 79, not a Dice in [0, 1].
        Hint: record the validation Dice as a fraction (evaluate(...)['dice']), not a percentage
    """
    if not isinstance(result, dict):
        raise AssertionError(f"result is {type(result).__name__}, not a dict; record it as "
                             "result = {" + ", ".join(f"'{k}': ..." for k in EXPERIMENT_KEYS) + "}")
    missing = [k for k in EXPERIMENT_KEYS if k not in result]
    if missing:
        raise AssertionError(f"result lacks {missing}; it needs "
                             + "; ".join(f"'{k}': {why}" for k, why in EXPERIMENT_KEYS.items()))
    seeds = result["seeds"]
    if not (isinstance(seeds, (list, tuple)) and all(isinstance(s, (int, np.integer))
                                                      and not isinstance(s, bool) for s in seeds)):
        raise AssertionError(f"result['seeds'] is {seeds!r:.60}; record a list of int seeds")
    if len(set(int(s) for s in seeds)) != len(seeds) or len(seeds) < 2:
        raise AssertionError(f"result['seeds'] is {list(seeds)}; run at least two different "
                             "seeds: one run cannot tell a design's effect from luck")
    for key in ("flips", "flips_elastic"):
        values = result[key]
        if not isinstance(values, (list, tuple, np.ndarray)) or len(values) != len(seeds):
            raise AssertionError(f"result['{key}'] is {values!r:.60}; record one Dice per seed "
                                 f"({len(seeds)} numbers, in the order of result['seeds'])")
        for i, v in enumerate(values):
            if hasattr(v, "item"):                       # a numpy or torch scalar
                try:
                    v = v.item()
                except (ValueError, RuntimeError):
                    pass
            if not isinstance(v, Real) or isinstance(v, bool) or math.isnan(v):
                raise AssertionError(f"result['{key}'][{i}] is {v!r:.40}, not a number; "
                                     "record evaluate(...)['dice'], a float")
            if not 0 <= v <= 1:
                raise AssertionError(f"result['{key}'][{i}] is {v:g}, not a Dice in [0, 1].\n"
                                     "Hint: record the validation Dice as a fraction "
                                     "(evaluate(...)['dice']), not a percentage")
    seconds = result["seconds"]
    if not (isinstance(seconds, Real) and not isinstance(seconds, bool)
            and math.isfinite(seconds) and seconds > 0):
        raise AssertionError(f"result['seconds'] is {seconds!r:.40}; record the training time "
                             "in seconds, e.g. time.perf_counter() before and after")
    report_passed(POINTS, "experiment", 4, points)
