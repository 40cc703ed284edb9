"""Checks for exercise 5 (few images: augmentation and the learning curve).

``check_warp`` compares your resampling with the reference in :mod:`unet_teach.augment`
given the same displacement field (``augment.elastic(..., field=...)``): the images must
agree to float rounding and the masks exactly, borders mirrored, shapes and dtypes kept.
``check_field`` compares your lattice-and-bicubic field with
``augment.interpolate_lattice(augment.lattice_displacements(grid, sigma, rng), shape)`` from
the same generator, and checks what makes it the paper's: the lattice points carry the drawn
vectors, ``sigma=0`` moves nothing, two generators give two fields. ``check_experiment``
checks your recorded comparison and **re-runs it**: every (design, seed) pair you report is
trained again with the exercise's settings (one thread, a few seconds a run) and must give
your number, and one pair is re-run through your own ``run``; a record that no run produced
earns nothing.

As in every exercise, the library is not the answer key: a ``warp`` or ``smooth_field``
that calls ``augment.elastic``, ``augment.interpolate_lattice``, ``augment.displacement_field``
(or ``elastic_torch``, or ``Augment``, which call them) scores no points, with that reason in
the message; see :func:`unet_teach.course.checks.losses.call_own` for how the call is
detected. A wrong answer raises ``CheckFailed`` (an ``AssertionError``) whose message ends with
the check's id; ``MESSAGES[id]`` is the fixed text a grader shows for it.

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

import functools
import math
from numbers import Real
from typing import Callable

import numpy as np
from scipy import ndimage

import torch

from ... import augment
from ...data import synthetic_membranes
from ...losses import dice_ce_loss
from ...models import UNet
from ...train import evaluate, fit
from ._common import call_own, call_student, fail, report_passed

# What a grader may copy into a feedback file for each check that fails, by the id the check
# raises with (see _common.CheckFailed): a fixed text, what is wrong and where to look.
MESSAGES: dict[str, str] = {
    "augmentation.returned_none":
        "The function returned None instead of its result.\nHint: look at the end of your "
        "function: the value it computes must be given back with `return`.",
    # Q1 warp
    "augmentation.warp.not_a_pair":
        "warp does not return the pair (image, mask).\nHint: look at your `return` line: both "
        "warped arrays, image first, in a tuple.",
    "augmentation.warp.changed_input":
        "warp changed the arrays it was given (image, mask or field).\nHint: look for "
        "assignments into the inputs; return new arrays.",
    "augmentation.warp.shape":
        "warp returns an image or a mask of another shape than the input's.\nHint: the "
        "coordinates you sample at must have the image's shape, one point per output pixel.",
    "augmentation.warp.dtype":
        "warp changes the dtype of the image or of the mask.\nHint: the question asks for the "
        "inputs' dtypes: look at the type of what you return (interpolation gives float64).",
    "augmentation.warp.new_labels":
        "warp invents mask labels that the input mask does not have.\nHint: look at the "
        "interpolation order you resample the mask with: labels must not be interpolated.",
    "augmentation.warp.image":
        "warp gives a wrong image.\nHint: go through the question's steps: the coordinates to "
        "read from (each pixel's own position plus the field), linear interpolation, and the "
        "mirrored border.",
    "augmentation.warp.border_reflect":
        "warp's image is wrong near the border: scipy's mode 'reflect' repeats the edge pixel."
        "\nHint: look at the mode you resample with: the question names scipy's mode that "
        "mirrors without repeating it.",
    "augmentation.warp.border_nearest":
        "warp's image is wrong near the border: it repeats the edge pixel instead of mirroring "
        "the image.\nHint: look at the mode you resample with.",
    "augmentation.warp.border_constant":
        "warp's image is wrong near the border: it fills the outside with a constant instead "
        "of mirroring the image.\nHint: look at the mode you resample with.",
    "augmentation.warp.border_wrap":
        "warp's image is wrong near the border: it wraps around instead of mirroring the "
        "image.\nHint: look at the mode you resample with.",
    "augmentation.warp.backwards":
        "warp reads the field the wrong way round: output pixel p takes the input at p + d(p)."
        "\nHint: look at the sign with which you add the field to the coordinates.",
    "augmentation.warp.swapped_axes":
        "warp swaps the field's components: field[0] moves rows (dy), field[1] columns (dx).\n"
        "Hint: look at which component you add to which coordinate.",
    "augmentation.warp.mask":
        "warp's image is right but its mask is wrong.\nHint: the mask must be read at the "
        "same coordinates as the image, with nearest-neighbour interpolation and the same "
        "mirrored border; look at what differs between your two resampling calls.",
    # Q2 the field
    "augmentation.field.shape":
        "smooth_field returns an array of the wrong shape.\nHint: the field is 2 x H x W: "
        "(dy, dx) at every pixel of the image.",
    "augmentation.field.sigma_zero":
        "smooth_field moves pixels when sigma is 0.\nHint: with sigma = 0 every drawn vector "
        "is 0, and so must be the field between them: look for a displacement that does not "
        "come from the drawn vectors.",
    "augmentation.field.fixed_seed":
        "smooth_field gives the same field for two different generators.\nHint: draw the "
        "vectors from the rng argument, not from a generator of your own.",
    "augmentation.field.value":
        "smooth_field gives a different field than the question's from the same generator.\n"
        "Hint: go through the question's steps: one draw of all the vectors, the lattice "
        "coordinates of the pixels, and the interpolation (its order and mode).",
    "augmentation.field.bilinear":
        "smooth_field interpolates the vectors bilinearly; the paper interpolates bicubically."
        "\nHint: look at the interpolation order.",
    "augmentation.field.swapped_axes":
        "smooth_field swaps the field's components: field[0] is dy, field[1] is dx.\nHint: "
        "look at which drawn component goes into which output component.",
    "augmentation.field.lattice_coords":
        "smooth_field places the lattice points wrongly: the lattice's corner points sit on "
        "the image's corner pixels.\nHint: look at how you map pixel rows and columns to "
        "lattice coordinates (the question gives the spacing).",
    "augmentation.field.not_smooth":
        "smooth_field's field is not smooth: neighbouring pixels move by very different "
        "amounts.\nHint: draw vectors only on the coarse lattice and interpolate between "
        "them; do not draw a vector per pixel.",
    # Q3 the experiment
    "augmentation.experiment.not_a_dict":
        "The recorded result is not a dictionary.\nHint: look at the question's description "
        "of `result`: a dict with the keys it lists.",
    "augmentation.experiment.missing_keys":
        "The recorded result lacks keys the question asks for.\nHint: compare your dict's keys "
        "with the question's: seeds, flips, flips_elastic and seconds.",
    "augmentation.experiment.seeds":
        "result['seeds'] is not a list of different int seeds >= 0, at least two of them.\n"
        "Hint: record the list of seeds you ran, as the question's SEEDS; one run cannot tell "
        "a design's effect from luck.",
    "augmentation.experiment.one_per_seed":
        "result['flips'] or result['flips_elastic'] does not hold one number per seed.\nHint: "
        "record one validation Dice per seed, in the order of result['seeds'].",
    "augmentation.experiment.not_a_number":
        "A recorded Dice is not a number.\nHint: record the validation Dice that run returns, "
        "a float.",
    "augmentation.experiment.not_a_fraction":
        "A recorded Dice is outside [0, 1].\nHint: record the Dice as a fraction, as run "
        "returns it, not as a percentage.",
    "augmentation.experiment.seconds":
        "result['seconds'] is not a positive number of seconds.\nHint: record the time the "
        "whole comparison took, measured before and after it.",
    "augmentation.experiment.not_reproduced":
        "Training one of your recorded runs again with the exercise's settings gives another "
        "Dice than the one you recorded.\nHint: record exactly what run returns, and make run "
        "follow the question's steps and settings exactly.",
    "augmentation.experiment.run_differs":
        "Your run function, run again on one of your recorded seeds, gives another Dice than "
        "the one you recorded.\nHint: record what run returns, in the order of "
        "result['seeds'], and re-run the recording cell after changing run.",
}

POINTS = {"warp": 3, "field": 2, "experiment": 2}
REFERENCES = (augment.elastic, augment.elastic_torch, augment.Augment.__call__,
              augment.displacement_field, augment.interpolate_lattice,
              augment.random_fields_torch)
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
    smooth = augment.interpolate_lattice(augment.lattice_displacements(3, 3.0, rng),
                                         (20, 17))
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
        fail("augmentation.returned_none", f"{name} returned None on {where}; did you forget "
                                           "`return`?")
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        fail("augmentation.warp.not_a_pair", f"{name} returned {type(value).__name__} on "
                                             f"{where}; return the pair (image, mask)")
    image, mask = value
    if image is None or mask is None:
        fail("augmentation.warp.not_a_pair",
             f"{name} returned None for the {'image' if image is None else 'mask'} on {where}; "
             "return the pair (image, mask)")
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    return np.asarray(image), np.asarray(mask)


def _same_form(name: str, where: str, image, mask, got_image, got_mask) -> None:
    """Shapes, dtypes and labels as the inputs'."""
    for what, given, got in (("image", image, got_image), ("mask", mask, got_mask)):
        if got.shape != given.shape:
            fail("augmentation.warp.shape", f"{name} returned a {what} of shape {got.shape} on "
                                            f"{where}; expected the input's shape {given.shape}")
        if got.dtype != given.dtype:
            fail("augmentation.warp.dtype",
                 f"{name} changed the {what}'s dtype on {where}: {given.dtype} -> {got.dtype}.\n"
                 f"Hint: give the result the input's dtype (map_coordinates' output= argument, "
                 f"or a conversion of the result)")
    new = sorted(set(np.unique(got_mask).tolist()) - set(np.unique(mask).tolist()))
    if new:
        fail("augmentation.warp.new_labels",
             f"{name} made new mask labels {new[:5]} on {where} (the input has "
             f"{np.unique(mask).tolist()[:8]}).\nHint: resample the mask with nearest neighbour "
             "(order=0): interpolating labels invents classes along their borders")


def _border_hint(image, field, got) -> tuple[str, str] | None:
    """``(hint, check id)`` of the usual wrong border mode or field reading that ``got``
    matches, if any."""
    h, w = image.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([rows + field[0], cols + field[1]])
    for mode, why, key in (
            ("reflect", "scipy's 'reflect' repeats the edge pixel (numpy's 'symmetric'); "
                        "mirroring here is scipy's mode='mirror' (numpy's 'reflect')",
             "augmentation.warp.border_reflect"),
            ("nearest", "that repeats the edge pixel; mirror the image at its border: "
                        "mode='mirror'", "augmentation.warp.border_nearest"),
            ("constant", "that fills with 0 outside the image; mirror it: mode='mirror'",
             "augmentation.warp.border_constant"),
            ("wrap", "that wraps around; mirror the image at its border: mode='mirror'",
             "augmentation.warp.border_wrap")):
        other = ndimage.map_coordinates(image.astype(np.float64), coords, order=1, mode=mode)
        if np.allclose(got, other, atol=IMAGE_TOLERANCE):
            return why, key
    other = ndimage.map_coordinates(image.astype(np.float64),
                                    np.stack([rows - field[0], cols - field[1]]),
                                    order=1, mode="mirror")
    if np.allclose(got, other, atol=IMAGE_TOLERANCE):
        return ("the field is read backwards: out[p] = in[p + d(p)], so add the displacement "
                "to the pixel's coordinates, do not subtract it", "augmentation.warp.backwards")
    swapped = ndimage.map_coordinates(image.astype(np.float64),
                                      np.stack([rows + field[1], cols + field[0]]), order=1,
                                      mode="mirror") if field.shape[1:] == image.shape else None
    if swapped is not None and np.allclose(got, swapped, atol=IMAGE_TOLERANCE):
        return ("field[0] is dy (rows) and field[1] is dx (columns)",
                "augmentation.warp.swapped_axes")
    return None


def _compare(name: str, where: str, image, field, expected, got, hint: str) -> None:
    (ei, em), (gi, gm) = expected, got
    diff = np.abs(gi.astype(np.float64) - ei.astype(np.float64))
    if not diff.max(initial=0) <= IMAGE_TOLERANCE:
        at = tuple(int(i) for i in np.unravel_index(diff.argmax(), diff.shape))
        why, key = ((_border_hint(image, field, gi) if field is not None else None)
                    or (hint, "augmentation.warp.image"))
        fail(key, f"{name} gives a wrong image on {where}: {int((diff > IMAGE_TOLERANCE).sum())}"
                  f" of {diff.size} pixels differ from the reference, e.g. at {at}: "
                  f"expected {ei[at]:.6g}, got {gi[at]:.6g}.\nHint: {why}")
    bad = gm != em
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        fail("augmentation.warp.mask",
             f"{name} gives a wrong mask on {where}: {int(bad.sum())} of {bad.size} labels "
             f"differ from the reference, e.g. at {at}: expected {em[at]}, got {gm[at]}.\n"
             "Hint: resample the mask with the same coordinates as the image, nearest neighbour "
             "(order=0), mode='mirror'")


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
        unet_teach.course.checks._common.CheckFailed: warp gives a wrong image on 'a random 20 x 17 image, 3 labels, a smooth field (sigma 3)': 340 of 340 pixels differ from the reference, e.g. at (12, 16): expected 0.926211, got 0.0251083.
        Hint: sample the image at (row + field[0], col + field[1]) with scipy.ndimage.map_coordinates(image, coords, order=1, mode='mirror')
        [check: augmentation.warp.image]
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
            fail("augmentation.warp.changed_input", f"{name} changed its inputs on {where}; "
                                                    "return new arrays")
        _same_form(name, where, image, mask, *got)
        _compare(name, where, image, field, expected, got,
                 "sample the image at (row + field[0], col + field[1]) with "
                 "scipy.ndimage.map_coordinates(image, coords, order=1, mode='mirror')")
    report_passed(POINTS, name, len(cases), points)


# --------------------------------------------------------------------------- Q2 the field

def _reference_field(shape, sigma, grid, seed) -> np.ndarray:
    drawn = augment.lattice_displacements(grid, sigma, np.random.default_rng(seed))
    return augment.interpolate_lattice(drawn, shape)


def _field_hint(shape, sigma, grid, seed, got) -> tuple[str, str]:
    """``(hint, check id)``: which usual slip ``got`` matches (bilinear, lattice coordinates,
    axes), or the general hint."""
    drawn = augment.lattice_displacements(grid, sigma, np.random.default_rng(seed))
    h, w = shape
    rows, cols = np.meshgrid(np.linspace(0, grid - 1, h), np.linspace(0, grid - 1, w),
                             indexing="ij")
    tries = [
        ("that is bilinear (order=1); the paper interpolates bicubically: order=3",
         "augmentation.field.bilinear",
         [ndimage.map_coordinates(c, [rows, cols], order=1, mode="mirror") for c in drawn]),
        ("field[0] is dy and field[1] is dx: interpolate drawn[0] into field[0]",
         "augmentation.field.swapped_axes",
         [ndimage.map_coordinates(c, [rows, cols], order=3, mode="mirror") for c in drawn[::-1]]),
        ("the lattice points sit on the image's first and last pixels: row r of the image is "
         "at lattice coordinate r (grid - 1) / (H - 1)", "augmentation.field.lattice_coords",
         [ndimage.map_coordinates(c, np.meshgrid(np.arange(h) * grid / h, np.arange(w) * grid / w,
                                                 indexing="ij"), order=3, mode="mirror")
          for c in drawn]),
    ]
    for why, key, other in tries:
        if np.allclose(got, np.stack(other), atol=IMAGE_TOLERANCE):
            return why, key
    return ("follow the question's steps: all the vectors in one draw from rng (nothing else "
            "taken from it), the lattice coordinates of every pixel (the corner points on the "
            "corner pixels), then each component interpolated there with order=3, "
            "mode='mirror'", "augmentation.field.value")


def check_field(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(shape, sigma, grid, rng) -> 2 x H x W``: the paper's random smooth field,
    ``grid x grid`` vectors (dy, dx) drawn by one call ``rng.normal(0, sigma, size=(2, grid,
    grid))``, interpolated bicubically (cubic B-spline, ``order=3``, ``mode='mirror'``) with
    the lattice's corner points on the image's corner pixels; compared with
    ``augment.interpolate_lattice(augment.lattice_displacements(grid, sigma, rng), shape)``.

    Example:
        >>> def smooth_field(shape, sigma, grid, rng):
        ...     vectors = rng.normal(0, sigma, size=(2, grid, grid))
        ...     coords = np.meshgrid(np.linspace(0, grid - 1, shape[0]),
        ...                          np.linspace(0, grid - 1, shape[1]), indexing="ij")
        ...     return np.stack([ndimage.map_coordinates(v, coords, order=3, mode="mirror")
        ...                      for v in vectors])
        >>> check_field(smooth_field)
        field: all 6 checks passed - 2 points
    """
    name = "smooth_field"
    n = 0

    def run(shape, sigma, grid, seed, where):
        got = call_own(fn, name, shape, sigma, grid, np.random.default_rng(seed),
                       references=REFERENCES, where=where,
                       advice="draw the vectors with rng.normal and interpolate them with "
                              "scipy.ndimage.map_coordinates(order=3, mode='mirror')")
        if got is None:
            fail("augmentation.returned_none", f"{name} returned None on {where}; did you "
                                               "forget `return`?")
        if hasattr(got, "detach"):
            got = got.detach().cpu().numpy()
        try:
            got = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            fail("augmentation.field.shape", f"{name} returned {type(got).__name__} on {where}; "
                                             f"expected the field 2 x H x W = {(2, *shape)}")
        if got.shape != (2, *shape):
            fail("augmentation.field.shape",
                 f"{name} returned shape {got.shape} on {where}; expected the field 2 x H x W = "
                 f"{(2, *shape)}: (dy, dx) at every pixel")
        return got

    # 1. sigma = 0: nothing moves
    where = "'sigma=0 on a 24 x 20 image'"
    if np.abs(run((24, 20), 0.0, 3, 0, where)).max() > IMAGE_TOLERANCE:
        fail("augmentation.field.sigma_zero", f"{name} moved pixels on {where}.\nHint: with "
                                              "sigma=0 every vector is 0, and so is the field "
                                              "between them")
    n += 1
    # 2. two generators, two fields
    where = "'a 33 x 33 image, generators seeded 1 and 5'"
    if np.allclose(run((33, 33), 10.0, 3, 1, where), run((33, 33), 10.0, 3, 5, where)):
        fail("augmentation.field.fixed_seed", f"{name} gave the same field for two generators "
                                              f"on {where}.\nHint: draw the vectors from the "
                                              "rng argument, not from a fixed seed")
    n += 1
    # 3.-5. the reference's field from the same generator; the lattice carries the vectors
    for shape, sigma, grid, seed in (((33, 33), 10.0, 3, 1), ((25, 41), 4.0, 3, 2),
                                     ((31, 46), 2.5, 4, 3)):
        where = f"'a {shape[0]} x {shape[1]} image, sigma={sigma:g}, grid={grid}, seed {seed}'"
        got, expected = run(shape, sigma, grid, seed, where), _reference_field(shape, sigma,
                                                                                 grid, seed)
        diff = np.abs(got - expected)
        if diff.max() > IMAGE_TOLERANCE:
            at = tuple(int(i) for i in np.unravel_index(diff.argmax(), diff.shape))
            why, key = _field_hint(shape, sigma, grid, seed, got)
            fail(key, f"{name} gives a wrong field on {where}: at {at} expected "
                      f"{expected[at]:.6g}, got {got[at]:.6g}.\nHint: {why}")
        n += 1
    # 6. it bends smoothly: no neighbours more than a pixel apart at the paper's strain
    where = "'a 64 x 64 image at the paper's strain (sigma = 0.035 x 31.5 px)'"
    field = run((64, 64), augment.PAPER_STRAIN * 31.5, 3, 7, where)
    if augment.field_strain(field) > 0.5:
        fail("augmentation.field.not_smooth",
             f"{name}'s field changes by {augment.field_strain(field):.2f} px per px on {where}: "
             "that is not smooth.\nHint: interpolate the few lattice vectors; do not draw a "
             "vector per pixel")
    n += 1
    report_passed(POINTS, "field", n, points)


# --------------------------------------------------------------------------- Q3 the experiment

EXPERIMENT_KEYS = {"seeds": "the seeds you ran, e.g. [0, 1]",
                   "flips": "validation Dice per seed, flips only",
                   "flips_elastic": "validation Dice per seed, flips + elastic deformation",
                   "seconds": "the whole comparison's training time in seconds"}

#: Q3's experiment as the notebook states it; the check trains it again from these alone.
EXPERIMENT = dict(images=12, size=64, data_seed=9, train=4, depth=2, width=8, epochs=80,
                  batch_size=4, lr=1e-2)
#: The two designs, flips and flips + the paper's strain on whole 64 px images.
DESIGNS = {"flips": augment.Augment(flip_rotate=True, elastic=False, intensity=False),
           "flips_elastic": augment.Augment(flip_rotate=True, elastic=True, intensity=False,
                                            strain=augment.PAPER_STRAIN)}
#: A re-run must give the recorded Dice to this much (same code, one thread: the same).
REPRODUCE_TOLERANCE = 1e-3
#: At most this many recorded runs are trained again (a few seconds each).
MAX_RERUNS = 6


class _one_thread:
    """Train on one thread, as the notebook does: the runs are then bit for bit repeatable."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


@functools.lru_cache(maxsize=None)      # a run is a pure function of (design, seed)
@functools.lru_cache(maxsize=None)
def reference_run(design: str, seed: int) -> float:
    """The validation Dice of one Q3 run, trained from ``EXPERIMENT`` and ``DESIGNS`` alone
    (the same on every call, one thread: a process trains each (design, seed) once).

    Example:
        >>> 0 <= reference_run("flips", 0) <= 1
        True
    """
    e = EXPERIMENT
    images, masks = synthetic_membranes(n=e["images"], size=e["size"], seed=e["data_seed"])
    with _one_thread():
        torch.manual_seed(seed)
        net = UNet(1, 2, depth=e["depth"], base_width=e["width"], norm="batch")
        data = augment.AugmentedDataset(images[:e["train"]], masks[:e["train"]],
                                        DESIGNS[design], seed=seed)
        fit(net, data, epochs=e["epochs"], batch_size=e["batch_size"], lr=e["lr"],
            loss_fn=dice_ce_loss, seed=seed, device="cpu", progress=False)
        return float(evaluate(net, (images[e["train"]:], masks[e["train"]:]),
                              loss_fn=dice_ce_loss)["dice"])


def _number(v, where: str) -> float:
    if hasattr(v, "item"):                       # a numpy or torch scalar
        try:
            v = v.item()
        except (ValueError, RuntimeError):
            pass
    if not isinstance(v, Real) or isinstance(v, bool) or math.isnan(v):
        fail("augmentation.experiment.not_a_number", f"{where} is {v!r:.40}, not a number; "
                                                     "record evaluate(...)['dice'], a float")
    if not 0 <= v <= 1:
        fail("augmentation.experiment.not_a_fraction",
             f"{where} is {v:g}, not a Dice in [0, 1].\nHint: record the validation Dice as a "
             "fraction (evaluate(...)['dice']), not a percentage")
    return float(v)


def _check_form(result) -> None:
    if not isinstance(result, dict):
        fail("augmentation.experiment.not_a_dict",
             f"result is {type(result).__name__}, not a dict; record it as result = {{"
             + ", ".join(f"'{k}': ..." for k in EXPERIMENT_KEYS) + "}")
    missing = [k for k in EXPERIMENT_KEYS if k not in result]
    if missing:
        fail("augmentation.experiment.missing_keys",
             f"result lacks {missing}; it needs "
             + "; ".join(f"'{k}': {why}" for k, why in EXPERIMENT_KEYS.items()))
    seeds = result["seeds"]
    if not (isinstance(seeds, (list, tuple)) and all(isinstance(s, (int, np.integer))
                                                      and not isinstance(s, bool) for s in seeds)):
        fail("augmentation.experiment.seeds", f"result['seeds'] is {seeds!r:.60}; record a list "
                                              "of int seeds")
    if any(s < 0 for s in seeds):
        fail("augmentation.experiment.seeds", f"result['seeds'] is {list(seeds)}; seeds are ints "
                                              ">= 0, as torch.manual_seed and AugmentedDataset "
                                              "take them")
    if len(set(int(s) for s in seeds)) != len(seeds) or len(seeds) < 2:
        fail("augmentation.experiment.seeds", f"result['seeds'] is {list(seeds)}; run at least "
                                              "two different seeds: one run cannot tell a "
                                              "design's effect from luck")
    for key in ("flips", "flips_elastic"):
        values = result[key]
        if not isinstance(values, (list, tuple, np.ndarray)) or len(values) != len(seeds):
            fail("augmentation.experiment.one_per_seed",
                 f"result['{key}'] is {values!r:.60}; record one Dice per seed "
                 f"({len(seeds)} numbers, in the order of result['seeds'])")
        for i, v in enumerate(values):
            _number(v, f"result['{key}'][{i}]")
    seconds = result["seconds"]
    if not (isinstance(seconds, Real) and not isinstance(seconds, bool)
            and math.isfinite(seconds) and seconds > 0):
        fail("augmentation.experiment.seconds",
             f"result['seconds'] is {seconds!r:.40}; record the training time in seconds, e.g. "
             "time.perf_counter() before and after")


def check_experiment(result, run: Callable | None = None, points: float | None = None,
                     rng=None) -> None:
    """Check the recorded comparison, then train it again.

    The form: a dict with ``seeds`` (at least two distinct ints), ``flips`` and
    ``flips_elastic`` (one Dice in [0, 1] per seed) and ``seconds`` (a positive number).
    Then up to ``MAX_RERUNS`` recorded (design, seed) pairs are trained again from the
    exercise's settings (:func:`reference_run`) and must give the recorded Dice to
    ``REPRODUCE_TOLERANCE``; with ``run`` (your function), one pair drawn at random is also
    re-run through it. ``rng`` seeds that draw (default: unpredictable).

    Example:
        >>> check_experiment({"seeds": [0, 1], "flips": [0.81, 79.0],
        ...                   "flips_elastic": [0.75, 0.8], "seconds": 12.5})
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: result['flips'][1] is 79, not a Dice in [0, 1].
        Hint: record the validation Dice as a fraction (evaluate(...)['dice']), not a percentage
        [check: augmentation.experiment.not_a_fraction]
    """
    _check_form(result)
    pairs = [(design, int(seed), _number(result[design][i], f"result['{design}'][{i}]"))
             for design in DESIGNS for i, seed in enumerate(result["seeds"])]
    rng = np.random.default_rng(rng)
    order = rng.permutation(len(pairs))
    for k in order[:MAX_RERUNS]:
        design, seed, recorded = pairs[k]
        again = reference_run(design, seed)
        if abs(again - recorded) > REPRODUCE_TOLERANCE:
            fail(
                "augmentation.experiment.not_reproduced",
                f"result['{design}'] records Dice {recorded:.4f} for seed {seed}, but training "
                f"that run again with the exercise's settings gives {again:.4f}.\nHint: record "
                "what run(...) returns, unchanged; run must follow Q3's steps exactly "
                "(torch.manual_seed(seed), tiny_unet(), AugmentedDataset(..., seed=seed), "
                "fit(...) with EPOCHS, BATCH_SIZE, LR, dice_ce_loss) on one thread, with "
                "FLIPS and FLIPS_ELASTIC as given")
    n = 5
    if run is not None:
        design, seed, recorded = pairs[order[0]]
        with _one_thread():
            mine = _number(call_student(run, "run", DESIGNS[design], seed,
                                        where=f"design {design}, seed {seed}"),
                           f"run({design}, {seed})")
        if abs(mine - recorded) > REPRODUCE_TOLERANCE:
            fail("augmentation.experiment.run_differs",
                 f"run(FLIPS{'_ELASTIC' if 'elastic' in design else ''}, {seed}) gives Dice "
                 f"{mine:.4f} now, but result['{design}'] records {recorded:.4f} for seed "
                 f"{seed}.\nHint: record what run returns, in the order of result['seeds']")
        n += 1
    report_passed(POINTS, "experiment", n, points)
