"""Data augmentation for U-Net training, as the U-Net paper does it: image and mask together.

With a few dozen annotated images, the paper's key to learning is to show the net many
*plausible* versions of each: "smooth deformations using random displacement vectors on a
coarse 3 by 3 grid [...] sampled from a Gaussian distribution with 10 pixels standard
deviation. Per-pixel displacements are then computed using bicubic interpolation."
(Ronneberger et al., 2015). The file, in order:

1. ``PAPER_SPACING``, ``PAPER_SIGMA``, ``PAPER_STRAIN``, ``lattice_shape``,
   ``lattice_points``, ``lattice_displacements``, ``interpolate_lattice`` and
   ``displacement_field`` - the coarse random lattice and the smooth per-pixel field;
   ``field_strain`` and ``folds`` - how hard a field bends, and whether it tears;
2. ``elastic``             - resample image (linear) and mask (nearest) along that field;
3. ``DIHEDRAL``, ``flip_rotate``, ``random_flip_rotate``, ``invert_flip_rotate`` - the 8
   flips and quarter turns (and their inverses, for test-time augmentation);
4. ``gamma``, ``contrast``, ``gaussian_noise``, ``random_intensity`` - intensity changes,
   image only;
5. ``Augment``             - the pipeline: flip/rotate, then elastic, then intensity;
6. ``AUGMENTS``, ``RandomCrops`` - the three pipelines of ``unet-teach train`` and its
   random training crops from images of any sizes;
7. ``AugmentedDataset``    - a torch ``Dataset`` applying it, reproducible per
   (seed, epoch, index) and safe with ``DataLoader`` workers;
8. ``elastic_torch``       - the same deformation, batched on the GPU with ``grid_sample``.

The deformation is defined in *tissue pixels*, not per image: the lattice points are
``PAPER_SPACING`` px apart (the paper's 3 x 3 lattice over a 572 px tile) whatever the size
of what is deformed, so a 128 px window cut from a slice is bent exactly as the paper bent
that part of its tile. Squeezing a whole 3 x 3 lattice into the window instead would keep
sigma = 10 px but shrink the spacing, multiplying the strain (displacement gradient) by 4.5
at 128 px and by 9 at 64 px, where most fields fold (tear the image). Whole images shown
small (64 px synthetic images standing for a tile) take ``strain=PAPER_STRAIN`` instead.

Conventions. A displacement field is ``2 x H x W`` (dy, dx) in pixels, and it is read
*backwards*: the output pixel p takes the input's value at p + d(p) (that is what a resampler
needs, and a translation by +d therefore moves the content by -d). Images are float in
[0, 1], ``H x W`` or ``C x H x W``; masks are integer ``H x W`` class (or instance) labels.
Borders are mirrored like numpy's ``np.pad(mode="reflect")`` used in
:mod:`unet_teach.patches` (the edge pixel is not repeated): scipy calls that ``"mirror"``
and torch's ``grid_sample`` does it with ``padding_mode="reflection", align_corners=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import Dataset

from .data import check_stack

# scipy's "mirror" is numpy's pad "reflect" (d c b | a b c d | c b a); scipy's own "reflect"
# would repeat the edge pixel (numpy's "symmetric"). One convention in the whole package.
MIRROR = "mirror"


def _rng(seed) -> np.random.Generator:
    # default_rng passes a Generator through unchanged, so callers can share one stream.
    return np.random.default_rng(seed)


def _check_sigma_grid(sigma: float, grid) -> None:
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma is the displacements' standard deviation in pixels and must "
                         f"be >= 0, got {sigma!r}; use sigma=0 for no deformation")
    for g in np.atleast_1d(grid):
        if not (isinstance(g, (int, np.integer)) and g >= 2):
            raise ValueError(f"grid must be an integer >= 2 or a pair of them (the lattice "
                             f"has a point on each corner), got {grid!r}; the paper uses 3")


def _resolve(shape, sigma, spacing, strain) -> tuple[float, float]:
    """(sigma, spacing) in pixels from the three ways of saying how strong a field is."""
    if strain is not None:
        if sigma is not None or spacing is not None:
            raise ValueError("give either strain= (a whole image shown small: the paper's "
                             "3 x 3 lattice over it) or sigma=/spacing= (in tissue pixels), "
                             "not both")
        if not (np.isfinite(strain) and strain >= 0):
            raise ValueError(f"strain is sigma per pixel of lattice spacing, >= 0, got "
                             f"{strain!r}; the paper's is PAPER_STRAIN = {PAPER_STRAIN:.3f}")
        spacing = (min(_hw(shape)) - 1) / (PAPER_GRID - 1)
        return float(strain * spacing), float(spacing)
    sigma = PAPER_SIGMA if sigma is None else sigma
    spacing = PAPER_SPACING if spacing is None else spacing
    _check_sigma_grid(sigma, PAPER_GRID)
    if not (np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing is the distance between lattice points in pixels, > 0, "
                         f"got {spacing!r}; the paper's is PAPER_SPACING = {PAPER_SPACING}")
    return float(sigma), float(spacing)


def _check_pair(image, mask) -> tuple[np.ndarray, np.ndarray | None]:
    image = _float_image(image, "augment one image at a time (for a batch, see elastic_torch)")
    if mask is None:
        return image, None
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape != image.shape[-2:]:
        raise ValueError(f"mask {mask.shape} does not fit image {image.shape}: expected one "
                         f"H x W label map of the image's size {image.shape[-2:]}")
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"expected an integer mask (class or instance labels), got "
                         f"{mask.dtype}; convert it with mask.astype(np.int64)")
    return image, mask


def _hw(shape) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"expected a shape ending in H, W, got {tuple(shape)}")
    return int(shape[-2]), int(shape[-1])


def _order(grid) -> int:
    # Bicubic needs a lattice to bend through: with 2 points per axis a cubic spline would
    # be set by the boundary condition alone, not by the drawn vectors, so 2 x 2 is bilinear.
    return 3 if min(np.atleast_1d(grid)) >= 3 else 1


# --------------------------------------------------------------------- 1. the lattice, the field

# The paper's deformation, which the defaults reproduce: a 3 x 3 lattice over its 572 x 572
# training tiles, so the lattice points are 285.5 px apart, and sigma = 10 px vectors. What
# the tissue feels is the ratio of the two (a strain): 10 px of displacement spread over
# 285.5 px. A 128 px window of a slice gets the piece of such a field that covers it; squeezing
# a whole 3 x 3 lattice into the window would bend it 4.5 times as hard.
PAPER_TILE, PAPER_GRID = 572, 3
#: The paper's standard deviation of the lattice vectors, in pixels.
PAPER_SIGMA = 10.0
#: The paper's distance between lattice points in pixels (3 points over a 572 px tile).
PAPER_SPACING = (PAPER_TILE - 1) / (PAPER_GRID - 1)       # 285.5
#: Sigma per pixel of lattice spacing, the paper's 0.035 (for whole images shown small).
PAPER_STRAIN = PAPER_SIGMA / PAPER_SPACING


def lattice_shape(shape, spacing: float = PAPER_SPACING) -> tuple[int, int]:
    """Lattice points per axis ``(gy, gx)`` for an image of ``shape`` and points ``spacing``
    px apart: enough to span the image, and never fewer than the paper's 3 (so that the
    interpolation between them is bicubic).

    Example:
        >>> lattice_shape((128, 128)), lattice_shape((572, 572)), lattice_shape((1024, 600))
        ((3, 3), (3, 3), (5, 4))
    """
    return tuple(max(PAPER_GRID, int(np.ceil((n - 1) / spacing - 1e-9)) + 1)
                 for n in _hw(shape))


def lattice_points(shape, grid=3, spacing: float | None = None,
                   offset=(0.0, 0.0)) -> np.ndarray:
    """Pixel coordinates ``2 x gy x gx`` (y, x) of the lattice points.

    Without ``spacing``: ``grid`` points per axis, evenly spaced from the first to the last
    pixel, corners included (a lattice squeezed into the image). With ``spacing``: the lattice
    of :func:`lattice_shape` with points ``spacing`` px apart, the image's first pixel at
    ``offset`` (y, x) from the first point - so points may lie outside the image.

    Example:
        >>> lattice_points((5, 9), grid=3)[:, 0]          # first row of the lattice: (y, x)
        array([[0., 0., 0.],
               [0., 4., 8.]])
        >>> lattice_points((128, 128), spacing=285.5, offset=(100, 0))[0, :, 0]
        array([-100. ,  185.5,  471. ])
    """
    if spacing is None:
        _check_sigma_grid(0.0, grid)
        gy, gx = (grid, grid) if np.ndim(grid) == 0 else grid
        h, w = _hw(shape)
        ys, xs = np.linspace(0, h - 1, gy), np.linspace(0, w - 1, gx)
    else:
        gy, gx = lattice_shape(shape, spacing)
        ys = np.arange(gy) * spacing - offset[0]
        xs = np.arange(gx) * spacing - offset[1]
    return np.stack(np.meshgrid(ys, xs, indexing="ij")).astype(np.float64)


def lattice_displacements(grid=3, sigma: float = PAPER_SIGMA, rng=None) -> np.ndarray:
    """Random displacement vectors ``2 x gy x gx`` (dy, dx) at the lattice points, every
    component drawn independently from N(0, sigma**2), in pixels (float64).

    ``grid`` is the points per axis, an int or ``(gy, gx)``; ``rng`` an int seed, ``None``
    or a ``numpy.random.Generator``.

    Example:
        >>> lattice_displacements(3, 10.0, rng=0).shape
        (2, 3, 3)
    """
    _check_sigma_grid(sigma, grid)
    gy, gx = (grid, grid) if np.ndim(grid) == 0 else grid
    return _rng(rng).normal(0.0, sigma, size=(2, gy, gx))


def _spline_weights(points: int, coords: np.ndarray, order: int) -> np.ndarray:
    """``len(coords) x points``: row i interpolates a 1-D lattice at ``coords[i]``.

    scipy's spline interpolation is linear in the data and, in 2-D, a tensor product of
    1-D splines (its prefilter runs axis by axis), so interpolating each unit vector once
    gives weights W with ``field = W_y @ vectors @ W_x.T``: two small matrix products instead
    of a spline evaluation at every pixel, and the same numbers (tested against
    ``map_coordinates``).
    """
    return np.stack([ndimage.map_coordinates(e, coords[None], order=order, mode=MIRROR)
                     for e in np.eye(points)], axis=1)


def interpolate_lattice(coarse: np.ndarray, shape, spacing: float | None = None,
                        offset=(0.0, 0.0)) -> np.ndarray:
    """The per-pixel field ``2 x H x W`` through the lattice vectors ``coarse``
    (``2 x gy x gx``): bicubic (a cubic B-spline, scipy ``order=3``), bilinear for a lattice
    with 2 points on an axis.

    Without ``spacing`` the lattice is squeezed into the image: point (i, j) lands on pixel
    (i (H-1)/(gy-1), j (W-1)/(gx-1)), so the corner vectors are the corner pixels'
    displacements. With ``spacing`` the points are ``spacing`` px apart and the image's first
    pixel lies at ``offset`` (y, x) from the first point (see :func:`lattice_points`): the
    image gets the piece of a larger field that covers it.

    Example:
        >>> coarse = np.zeros((2, 3, 3)); coarse[1, 1, 1] = 4.0   # one dx in the middle
        >>> field = interpolate_lattice(coarse, (5, 5))
        >>> field.shape, round(float(field[1, 2, 2]), 9), round(float(field[1, 0, 0]), 9)
        ((2, 5, 5), 4.0, 0.0)
    """
    coarse = np.asarray(coarse, dtype=np.float64)
    if coarse.ndim != 3 or coarse.shape[0] != 2:
        raise ValueError(f"expected lattice vectors 2 x gy x gx (dy, dx), got "
                         f"{coarse.shape}; draw them with lattice_displacements")
    gy, gx = coarse.shape[1:]
    _check_sigma_grid(0.0, (gy, gx))
    h, w = _hw(shape)
    if spacing is None:        # lattice units: 0 .. g-1 from the first to the last pixel
        cy, cx = np.linspace(0, gy - 1, h), np.linspace(0, gx - 1, w)
    else:
        cy = (offset[0] + np.arange(h)) / spacing
        cx = (offset[1] + np.arange(w)) / spacing
        if cy[-1] > gy - 1 + 1e-9 or cx[-1] > gx - 1 + 1e-9 or min(offset) < 0:
            raise ValueError(f"a {gy} x {gx} lattice {spacing} px apart does not cover a "
                             f"{h} x {w} image at offset {tuple(offset)}; take its size "
                             "from lattice_shape(shape, spacing)")
    order = _order((gy, gx))
    wy, wx = _spline_weights(gy, cy, order), _spline_weights(gx, cx, order)
    return wy @ coarse @ wx.T                                # 2 x H x W


def displacement_field(shape, sigma: float | None = None, spacing: float | None = None,
                       rng=None, *, strain: float | None = None) -> np.ndarray:
    """The paper's random smooth deformation: ``2 x H x W`` (dy, dx) in pixels (float64).

    The lattice lives in tissue pixels: its points are ``spacing`` px apart (default the
    paper's ``PAPER_SPACING`` = 285.5, a 3 x 3 lattice over a 572 px tile) with N(0, sigma**2)
    vectors (default ``PAPER_SIGMA`` = 10), and the image sits at a random place on it, so a
    window cut from a slice gets the piece of the field that covers it and feels the paper's
    strain whatever its size. Draws: the vectors (``lattice_displacements``), then the offset.
    The field is centred (its mean displacement is 0): a shift of the whole image adds
    nothing a random crop does not, and would pull the mirrored border into a small window.

    ``strain`` serves a whole image shown small (a 64 px synthetic image standing for a whole
    tile): the paper's 3 x 3 lattice squeezed into it, ``sigma = strain x spacing``
    (``strain=PAPER_STRAIN`` is the paper's bending at any size).

    Example:
        >>> field = displacement_field((64, 64), rng=0)
        >>> field.shape, field.dtype
        ((2, 64, 64), dtype('float64'))
        >>> small = displacement_field((64, 64), rng=0, strain=PAPER_STRAIN)
        >>> round(PAPER_STRAIN * 31.5, 2)                   # its sigma in pixels
        1.1
    """
    sigma, spacing = _resolve(shape, sigma, spacing, strain)
    rng = _rng(rng)
    grid = lattice_shape(shape, spacing)
    coarse = lattice_displacements(grid, sigma, rng)
    spare = [(g - 1) * spacing - (n - 1) for g, n in zip(grid, _hw(shape))]
    offset = [rng.uniform(0.0, max(s, 0.0)) for s in spare]
    field = interpolate_lattice(coarse, shape, spacing, offset)
    # Centred: a shift of the whole image teaches nothing a random crop does not, and on a
    # small window it would pull the mirrored border tens of pixels in. The strain (the
    # gradients) is unchanged.
    return field - field.mean(axis=(1, 2), keepdims=True)


def field_strain(field: np.ndarray) -> float:
    """The largest displacement gradient of a field ``2 x H x W``: how much more two
    neighbouring pixels move than each other, per pixel (0: a pure shift; 1: a pixel can land
    on its neighbour's place).

    Example:
        >>> ramp = np.stack([np.zeros((4, 4)), np.tile(0.1 * np.arange(4.0), (4, 1))])
        >>> round(field_strain(ramp), 6)                   # dx grows 0.1 px per px
        0.1
    """
    return float(max(np.abs(g).max() for c in field for g in np.gradient(c)))


def folds(field: np.ndarray) -> bool:
    """Whether the deformation folds: somewhere the map p -> p + d(p) turns the grid inside
    out (the determinant of its Jacobian, ``det(I + grad d)``, is <= 0), so the image is
    torn and mirrored there rather than bent.

    Example:
        >>> folds(np.zeros((2, 8, 8))), folds(np.stack([np.zeros((8, 8)),
        ...                                            -2.0 * np.arange(8.0)[None].repeat(8, 0)]))
        (False, True)
    """
    (dyy, dyx), (dxy, dxx) = (np.gradient(c) for c in field)
    return bool(((1 + dyy) * (1 + dxx) - dyx * dxy <= 0).any())


# ---------------------------------------------------------------------------- 2. elastic

def elastic(image: np.ndarray, mask: np.ndarray | None = None, sigma: float | None = None,
            spacing: float | None = None, seed=None, field: np.ndarray | None = None, *,
            strain: float | None = None):
    """Deform image and mask with the same random smooth field (the U-Net paper's recipe).

    The image is resampled with linear interpolation (``order=1``), the mask with nearest
    neighbour (``order=0``, so no new labels appear at the borders between classes), borders
    mirrored. Every channel gets the same field.

    Args:
        image: float ``H x W`` or ``C x H x W``.
        mask: integer ``H x W`` or ``None`` (then ``(image, None)`` is returned).
        sigma: standard deviation of the lattice vectors in pixels (default: the paper's 10).
        spacing: lattice points' distance in tissue pixels (default: the paper's 285.5, a
            3 x 3 lattice over a 572 px tile); see :func:`displacement_field`.
        seed: an int, ``None`` or a ``numpy.random.Generator`` (drawn from, not reset).
        field: an explicit ``2 x H x W`` (dy, dx) field to use instead of a random one (then
            ``sigma``, ``spacing``, ``strain`` and ``seed`` are not used).
        strain: for a whole image shown small: the paper's 3 x 3 lattice over the image with
            ``sigma = strain x spacing`` (``PAPER_STRAIN`` is the paper's); instead of
            ``sigma`` and ``spacing``.

    Returns:
        ``(image, mask)`` with the inputs' shapes and dtypes; the mask's values are a subset
        of the input's. ``sigma=0`` returns copies of the inputs.

    Example:
        >>> img = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
        >>> msk = (img > 0.5).astype(np.int64)
        >>> out, out_mask = elastic(img, msk, seed=0)
        >>> out.shape, out.dtype, out_mask.dtype, set(np.unique(out_mask)) <= {0, 1}
        ((64, 64), dtype('float32'), dtype('int64'), True)
    """
    image, mask = _check_pair(image, mask)
    h, w = image.shape[-2:]
    if field is None:
        sigma, spacing = _resolve((h, w), sigma, spacing, strain)
        if sigma == 0:
            return image.copy(), (None if mask is None else mask.copy())
        field = displacement_field((h, w), sigma, spacing, seed)
    field = np.asarray(field, dtype=np.float64)
    if field.shape != (2, h, w):
        raise ValueError(f"field {field.shape} does not fit the image {image.shape}: expected "
                         f"2 x H x W = (2, {h}, {w}) displacements (dy, dx)")
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([ys + field[0], xs + field[1]])          # 2 x H x W, where to read
    channels = image.reshape(-1, h, w)                           # C x H x W
    out = np.stack([ndimage.map_coordinates(c, coords, order=1, mode=MIRROR)
                    for c in channels]).reshape(image.shape).astype(image.dtype)
    if mask is None:
        return out, None
    return out, ndimage.map_coordinates(mask, coords, order=0, mode=MIRROR, output=mask.dtype)


# ------------------------------------------------------------------ 3. flips and quarter turns

#: All 8 symmetries of the square as ``(k, flip)``: k quarter turns counter-clockwise
#: after an optional left-right flip. The first is the identity.
DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def _dihedral(a, k: int, flip: bool):
    if isinstance(a, torch.Tensor):
        a = a.flip(-1) if flip else a
        return a.rot90(k, dims=(-2, -1)).contiguous()
    a = np.flip(a, -1) if flip else a
    # A copy with positive strides: torch.from_numpy refuses numpy's flipped views.
    return np.ascontiguousarray(np.rot90(a, k, axes=(-2, -1)))


def _check_k_flip(k, flip) -> tuple[int, bool]:
    if not (isinstance(k, (int, np.integer)) and 0 <= k <= 3):
        raise ValueError(f"k is the number of quarter turns, 0..3, got {k!r}")
    return int(k), bool(flip)


def flip_rotate(image, mask=None, k: int = 0, flip: bool = False):
    """One of the 8 dihedral transforms on image and mask together: a left-right flip (if
    ``flip``), then ``k`` quarter turns counter-clockwise, on the last two axes.

    ``image`` is ``... x H x W`` and ``mask`` ``H x W`` (or ``None``), numpy arrays or torch
    tensors; an odd ``k`` swaps H and W. Exact: no interpolation.

    Example:
        >>> flip_rotate(np.array([[1, 2], [3, 4]]), None, k=1, flip=False)[0]
        array([[2, 4],
               [1, 3]])
    """
    k, flip = _check_k_flip(k, flip)
    if mask is not None and tuple(mask.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"mask {tuple(mask.shape)} does not fit image {tuple(image.shape)}: "
                         "expected one H x W label map of the image's size")
    return _dihedral(image, k, flip), (None if mask is None else _dihedral(mask, k, flip))


def invert_flip_rotate(array, k: int, flip: bool):
    """Undo ``flip_rotate(..., k, flip)`` on an ``... x H x W`` array or tensor, e.g. a
    ``K x H x W`` probability map predicted on a transformed image (test-time augmentation:
    transform, predict, invert, average over ``DIHEDRAL``).

    Example:
        >>> a = np.arange(6).reshape(2, 3)
        >>> all(np.array_equal(invert_flip_rotate(flip_rotate(a, None, k, f)[0], k, f), a)
        ...     for k, f in DIHEDRAL)
        True
    """
    k, flip = _check_k_flip(k, flip)
    # The transform is "flip, then rotate", so its inverse is "rotate back, then flip".
    return _dihedral(_dihedral(array, (4 - k) % 4, False), 0, flip)


def random_flip_rotate(image, mask=None, rng=None):
    """One of the 8 ``DIHEDRAL`` transforms, uniformly at random, on image and mask together.

    Example:
        >>> img, msk = random_flip_rotate(np.eye(3), np.eye(3, dtype=int), rng=0)
        >>> np.array_equal(img, msk)
        True
    """
    k, flip = DIHEDRAL[_rng(rng).integers(len(DIHEDRAL))]
    return flip_rotate(image, mask, k, flip)


# ------------------------------------------------------------------------- 4. intensity

def _float_image(image, advice: str = "change one image at a time") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an image H x W or C x H x W, got shape {image.shape}; "
                         + advice)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected a floating-point image in [0, 1], got {image.dtype}; "
                         "convert 8-bit images with image.astype(np.float32) / 255")
    return image


def gamma(image: np.ndarray, g: float) -> np.ndarray:
    """``image ** g`` clipped to [0, 1], same shape and dtype: g < 1 brightens the dark
    parts, g > 1 darkens them; 0 and 1 stay where they are.

    Example:
        >>> gamma(np.array([[0.0, 0.25, 1.0]], np.float32), 0.5)
        array([[0. , 0.5, 1. ]], dtype=float32)
    """
    image = _float_image(image)
    if not g > 0:
        raise ValueError(f"gamma must be > 0, got {g!r}; 1 leaves the image unchanged")
    # Clip first: a negative value to a fractional power is NaN.
    return (np.clip(image, 0, 1) ** g).astype(image.dtype)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Stretch (``factor > 1``) or squash (``< 1``) intensities around each channel's mean,
    clipped to [0, 1]; same shape and dtype.

    Example:
        >>> contrast(np.array([[0.25, 0.75]]), 2.0)
        array([[0., 1.]])
    """
    image = _float_image(image)
    if not factor >= 0:
        raise ValueError(f"contrast factor must be >= 0, got {factor!r}; 1 leaves the image "
                         "unchanged")
    mean = image.mean(axis=(-2, -1), keepdims=True)
    return np.clip(mean + factor * (image - mean), 0, 1).astype(image.dtype)


def gaussian_noise(image: np.ndarray, std: float, rng=None) -> np.ndarray:
    """Add independent N(0, std**2) noise to every pixel, clip to [0, 1]; same shape, dtype.

    Example:
        >>> noisy = gaussian_noise(np.full((8, 8), 0.5, np.float32), 0.05, rng=0)
        >>> noisy.dtype, bool(0 <= noisy.min() and noisy.max() <= 1)
        (dtype('float32'), True)
    """
    image = _float_image(image)
    if not std >= 0:
        raise ValueError(f"noise std must be >= 0, got {std!r}; 0 adds no noise")
    noise = _rng(rng).normal(0.0, std, size=image.shape)
    return np.clip(image + noise, 0, 1).astype(image.dtype)


def random_intensity(image: np.ndarray, rng=None, gamma_range=(0.7, 1.5),
                     contrast_range=(0.75, 1.25), noise_std=(0.0, 0.05)) -> np.ndarray:
    """A random gamma, then contrast, then noise, each parameter uniform in its range.

    Noise comes last: it stands for the microscope's sensor noise, which no contrast knob
    scales. The image only - never apply this to a mask.

    Example:
        >>> out = random_intensity(np.full((4, 4), 0.5, np.float32), rng=0)
        >>> out.shape, out.dtype
        ((4, 4), dtype('float32'))
    """
    rng = _rng(rng)
    image = gamma(image, rng.uniform(*gamma_range))
    image = contrast(image, rng.uniform(*contrast_range))
    return gaussian_noise(image, rng.uniform(*noise_std), rng)


# --------------------------------------------------------------------------- 5. the pipeline

@dataclass(frozen=True)
class Augment:
    """The training-time pipeline, applied as ``augment(image, mask, rng) -> (image, mask)``.

    The order: flip/rotate first (exact and cheap), then the elastic deformation (both move
    image and mask together), then intensity changes on the image alone - last, so the noise
    stays pixel-wise instead of being smoothed by the resampling.

    Args:
        flip_rotate: apply one of the 8 ``DIHEDRAL`` transforms at random.
        elastic: apply :func:`elastic` with ``sigma`` and ``spacing`` (tissue pixels; the
            defaults are the paper's) or ``strain`` (a whole image shown small), with
            probability ``p_elastic`` (the paper deforms every sample; lower it to also show
            the net undeformed ones).
        intensity: apply :func:`random_intensity` to the image.
        window: cut a random ``window x window`` part out of the image first and augment
            only that (``None``: the whole image). Deforming a 128 x 128 window costs a
            sixteenth of deforming a 512 x 512 slice; a data set then crops the training
            crop out of the window (:class:`AugmentedDataset`'s ``crop``), so the pixels the
            deformation pulls in at the crop's edge are real image content.

    Example:
        >>> img, msk = np.random.default_rng(0).random((32, 32)), np.eye(32, dtype=np.int64)
        >>> out, out_mask = Augment()(img, msk, np.random.default_rng(1))
        >>> out.shape, out_mask.shape, set(np.unique(out_mask)) <= {0, 1}
        ((32, 32), (32, 32), True)
        >>> Augment(window=16)(img, msk, np.random.default_rng(1))[0].shape
        (16, 16)
    """

    flip_rotate: bool = True
    elastic: bool = True
    intensity: bool = True
    sigma: float | None = None        # None: PAPER_SIGMA (10 px)
    spacing: float | None = None      # None: PAPER_SPACING (285.5 px)
    strain: float | None = None       # instead of both, for whole images shown small
    p_elastic: float = 1.0
    window: int | None = None

    def __post_init__(self):
        _resolve((PAPER_TILE, PAPER_TILE), self.sigma, self.spacing, self.strain)
        if not 0 <= self.p_elastic <= 1:
            raise ValueError(f"p_elastic is a probability, 0..1, got {self.p_elastic!r}")
        if self.window is not None and (not isinstance(self.window, (int, np.integer))
                                        or self.window < 1):
            raise ValueError(f"window is a side in pixels (a positive int) or None, got "
                             f"{self.window!r}")

    def __call__(self, image, mask=None, rng=None):
        rng = _rng(rng)
        image, mask = _check_pair(image, mask)
        if self.window is not None:
            h, w = _hw(image.shape)
            if self.window > min(h, w):
                raise ValueError(f"window {self.window} is larger than the image ({h} x {w}):"
                                 " choose a window no larger than the smallest image")
            top = rng.integers(0, h - self.window + 1)
            left = rng.integers(0, w - self.window + 1)
            rows, cols = slice(top, top + self.window), slice(left, left + self.window)
            image = image[..., rows, cols]
            mask = None if mask is None else mask[rows, cols]
        if self.flip_rotate:
            image, mask = random_flip_rotate(image, mask, rng)
        if self.elastic and rng.random() < self.p_elastic:
            image, mask = elastic(image, mask, self.sigma, self.spacing, rng,
                                  strain=self.strain)
        if self.intensity:
            image = random_intensity(image, rng)
        return image, mask


# --------------------------------------------------------------------------- 6. random crops

#: The three pipelines ``unet-teach train --augment`` offers.
AUGMENTS = {"none": Augment(flip_rotate=False, elastic=False, intensity=False),
            "flip": Augment(flip_rotate=True, elastic=False, intensity=False),
            "elastic": Augment(flip_rotate=True, elastic=True, intensity=True)}


class RandomCrops:
    """Random training crops from images of any sizes, with augmentation.

    Each crop is ``size x size`` input pixels and ``out x out`` target pixels (equal for a
    padded net; a valid net's output is smaller, ``out = output_size(size)``), taken from an
    image chosen with probability proportional to its area. Images and masks are mirrored
    at their borders by the context a valid net eats, plus up to ``out`` for images smaller
    than that, plus a ``margin`` that the elastic deformation may pull in (cut off after).

    Example:
        >>> crops = RandomCrops([np.zeros((1, 40, 50), np.float32)], [np.zeros((40, 50), int)],
        ...                     size=32, out=32, augment=AUGMENTS["flip"])
        >>> x, y = crops.batch(np.random.default_rng(0), 3)
        >>> tuple(x.shape), tuple(y.shape)
        ((3, 1, 32, 32), (3, 32, 32))
    """

    def __init__(self, images: list[np.ndarray], masks: list[np.ndarray], size: int, out: int,
                 augment: Augment, margin: int = 0, weights: list[np.ndarray] | None = None):
        self.size, self.out, self.augment, self.margin = size, out, augment, margin
        self.context = (size - out) // 2
        self.weighted = weights is not None
        if self.weighted:
            if augment.elastic or augment.intensity:
                raise ValueError("precomputed weights move with flips and crops only; "
                                 "compute them per crop for elastic or intensity changes")
            # the weights ride along as one more image channel: every crop, flip and
            # quarter turn moves them exactly as it moves the mask
            images = [np.concatenate([i, w[None].astype(i.dtype)]) for i, w in
                      zip(images, weights)]
        pad = self.context + margin
        self.items, areas = [], []
        for image, mask in zip(images, masks):
            h, w = mask.shape
            extra_h, extra_w = max(0, out - h), max(0, out - w)
            image = np.pad(image, ((0, 0), (pad, pad + extra_h), (pad, pad + extra_w)),
                           mode="reflect")
            mask = np.pad(mask, ((pad, pad + extra_h), (pad, pad + extra_w)), mode="reflect")
            h, w = max(h, out), max(w, out)          # output positions cover the image
            self.items.append((image, mask, h, w))
            areas.append((h - out + 1) * (w - out + 1))
        self.p = np.asarray(areas, np.float64) / sum(areas)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, mask, h, w = self.items[rng.choice(len(self.items), p=self.p)]
        y, x = rng.integers(0, h - self.out + 1), rng.integers(0, w - self.out + 1)
        window = self.size + 2 * self.margin                 # input window + margins
        crop, labels = self.augment(image[:, y:y + window, x:x + window],
                                    mask[y:y + window, x:x + window], rng)
        m, c = self.margin, self.margin + self.context
        return crop[:, m:m + self.size, m:m + self.size], labels[c:c + self.out, c:c + self.out]

    def batch(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, ...]:
        """``(images n x C x size x size float32, masks n x out x out int64)``, and with
        ``weights`` given, the crops' weights ``n x out x out float32`` third."""
        pairs = [self.sample(rng) for _ in range(n)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]).astype(np.float32))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        if not self.weighted:
            return x, y
        c, out = self.context, self.out
        return x[:, :-1].contiguous(), y, x[:, -1, c:c + out, c:c + out].contiguous()


# ------------------------------------------------------------------------ 7. the data set

class AugmentedDataset(Dataset):
    """A torch ``Dataset`` that augments image and mask together on the fly.

    Item i of epoch e is made with a numpy Generator seeded by
    ``SeedSequence([seed, e, i])``: the same (seed, epoch, index) gives the same item in any
    process and in any order, so ``DataLoader`` workers give the same batches as
    ``num_workers=0`` (there is no shared global random state to duplicate across workers).

    **Call** ``set_epoch(epoch)`` **at the start of every epoch** (as with torch's
    ``DistributedSampler``); otherwise every epoch sees the same augmentations. The epoch is
    kept in shared memory, so the call reaches workers started earlier too
    (``persistent_workers=True``), provided it comes before iterating the loader.

    Per item: ``augment(image, mask, rng)``, then a random ``crop`` (after the deformation, so
    the pixels it pulls in at the crop's edge are real image content around the crop; only
    the whole image's border is mirrored), then ``weight_fn`` on the *augmented* mask.

    Args:
        images: ``N x H x W`` (a channel axis is added) or ``N x C x H x W`` float in [0, 1].
        masks: ``N x H x W`` integer labels.
        augment: a callable ``(image, mask, rng) -> (image, mask)`` such as :class:`Augment`,
            or ``None`` for none. It must pickle if workers are spawned (not a lambda).
        seed: the base seed.
        weight_fn: optional ``mask -> H x W`` float weights, e.g.
            ``lambda m: weight_map(ndimage.label(m)[0])`` written as a module-level function
            (see :func:`unet_teach.losses.weight_map`).
        crop: ``None``, an int or ``(h, w)``: the size of a random crop. Quarter turns swap H
            and W, so for non-square images use a crop that fits both ways.

    Items: ``(image C x H x W float32, mask H x W int64)``, plus ``weight H x W float32`` when
    ``weight_fn`` is given - what :func:`unet_teach.train.fit` takes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ds = AugmentedDataset(rng.random((4, 32, 32)), rng.integers(0, 2, (4, 32, 32)),
        ...                       Augment(), seed=0, crop=24)
        >>> image, mask = ds[0]
        >>> image.shape, image.dtype, mask.shape, mask.dtype
        (torch.Size([1, 24, 24]), torch.float32, torch.Size([24, 24]), torch.int64)
        >>> ds.set_epoch(1); bool((ds[0][0] != image).any())
        True
    """

    def __init__(self, images, masks, augment: Callable | None = None, seed: int = 0,
                 weight_fn: Callable | None = None, crop=None):
        masks = np.asarray(masks)
        images = check_stack(np.asarray(images), masks)           # N x C x H x W
        _check_pair(images[0], masks[0])                          # dtypes
        if crop is not None:
            crop = (crop, crop) if np.ndim(crop) == 0 else tuple(crop)
            if len(crop) != 2 or not all(0 < c <= s for c, s in zip(crop, images.shape[-2:])):
                raise ValueError(f"crop must be an int or (h, w) no larger than the images "
                                 f"{images.shape[-2:]}, got {crop!r}")
        self.images, self.masks, self.augment = images, masks, augment
        self.seed, self.weight_fn, self.crop = int(seed), weight_fn, crop
        # A shared-memory scalar, not an int: workers kept alive between epochs
        # (persistent_workers) hold a copy of the data set made at their start, and would
        # otherwise never see set_epoch.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s augmentations from now on; call before iterating each epoch."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        index = int(index)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))
        image, mask = self.images[index], self.masks[index]
        if self.augment is not None:
            image, mask = self.augment(image, mask, rng)
        if self.crop is not None:
            (h, w), (ch, cw) = image.shape[-2:], self.crop
            if ch > h or cw > w:
                raise ValueError(f"crop {self.crop} does not fit the augmented image "
                                 f"{image.shape}: quarter turns swap H and W; use a crop no "
                                 "larger than the shorter side")
            top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            image = image[..., top:top + ch, left:left + cw]
            mask = mask[top:top + ch, left:left + cw]
        item = (torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)))
        if self.weight_fn is None:
            return item
        weight = np.asarray(self.weight_fn(mask), dtype=np.float32)
        if weight.shape != mask.shape:
            raise ValueError(f"weight_fn returned {weight.shape} for a mask {mask.shape}: it "
                             "must return one weight per pixel, H x W")
        return (*item, torch.from_numpy(np.ascontiguousarray(weight)))


# --------------------------------------------------------------- 8. batched, on the GPU

def random_fields_torch(n: int, shape, sigma: float, spacing: float,
                        generator: torch.Generator | None = None,
                        device=None) -> torch.Tensor:
    """``n`` random fields ``N x 2 x H x W`` (dy, dx) for :func:`elastic_torch`: lattice
    vectors N(0, sigma**2) ``spacing`` px apart, each image at a random offset on its lattice
    (as :func:`displacement_field`), read off with bicubic ``grid_sample``.

    Example:
        >>> random_fields_torch(3, (32, 40), 10.0, 285.5).shape
        torch.Size([3, 2, 32, 40])
    """
    h, w = _hw(shape)
    device = torch.device("cpu") if device is None else torch.device(device)
    draw_on = generator.device if generator is not None else device
    (gy, gx), f32 = lattice_shape((h, w), spacing), torch.float32
    coarse = torch.randn(n, 2, gy, gx, generator=generator, device=draw_on,
                         dtype=f32).to(device) * sigma
    spare = torch.tensor([(gy - 1) * spacing - (h - 1), (gx - 1) * spacing - (w - 1)],
                         dtype=f32).clamp(min=0)
    offset = (torch.rand(n, 2, generator=generator, device=draw_on, dtype=f32).cpu()
              * spare).to(device)                                          # N x 2 (y, x)
    # where each pixel sits on its sample's lattice, in grid_sample's [-1, 1] units
    ly = (offset[:, 0, None] + torch.arange(h, device=device)) / spacing      # N x H
    lx = (offset[:, 1, None] + torch.arange(w, device=device)) / spacing      # N x W
    at = torch.stack([(2 * lx / (gx - 1) - 1)[:, None, :].expand(n, h, w),
                      (2 * ly / (gy - 1) - 1)[:, :, None].expand(n, h, w)], dim=-1)
    mode = "bicubic" if _order((gy, gx)) == 3 else "bilinear"
    field = F.grid_sample(coarse, at, mode=mode, padding_mode="reflection",
                          align_corners=True)                              # N x 2 x H x W
    return field - field.mean(dim=(2, 3), keepdim=True)      # centred, as displacement_field


def elastic_torch(images: torch.Tensor, masks: torch.Tensor | None = None,
                  sigma: float | None = None, spacing: float | None = None,
                  generator: torch.Generator | None = None,
                  field: torch.Tensor | None = None, *, strain: float | None = None):
    """:func:`elastic` for a batch of tensors, on their device: one random field per sample.

    Per sample: lattice vectors N(0, sigma**2) on the lattice of :func:`lattice_shape`
    (points ``spacing`` px apart, or the strain's 3 x 3 lattice), the image at a random
    offset on it, and the field read off the lattice with
    ``F.grid_sample(mode="bicubic", align_corners=True)`` (bilinear for 2 points on an axis);
    then ``F.grid_sample`` with ``padding_mode="reflection", align_corners=True``
    (= scipy's ``"mirror"``): bilinear for images, nearest for masks. torch's bicubic is
    Keys' cubic convolution, not scipy's B-spline, so the fields differ slightly between
    lattice points (both pass through them); given the same ``field`` the two functions
    agree up to float32 rounding.

    Args:
        images: float ``N x C x H x W``.
        masks: integer ``N x H x W`` (labels below 2**24, exact in float32) or ``None``.
        sigma, spacing, strain: as in :func:`elastic` (the defaults are the paper's).
        generator: a ``torch.Generator`` for reproducible fields (on any device), or ``None``
            for torch's global one.
        field: explicit displacements (dy, dx) in pixels, ``N x 2 x H x W`` or ``2 x H x W``
            (the same for every sample); replaces the random field.

    Returns:
        ``(images, masks)`` with the inputs' shapes, dtypes and device; ``sigma=0`` returns
        copies.

    Example:
        >>> x, y = torch.rand(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
        >>> gen = torch.Generator().manual_seed(0)
        >>> xd, yd = elastic_torch(x, y, generator=gen)
        >>> xd.shape, yd.dtype, set(yd.unique().tolist()) <= {0, 1, 2}
        (torch.Size([2, 1, 32, 32]), torch.int64, True)
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ValueError(f"expected images N x C x H x W, got {shape}; a single-channel batch "
                         "still needs its channel axis: images[:, None]")
    if not torch.is_floating_point(images):
        raise ValueError(f"expected floating-point images, got {images.dtype}; divide 8-bit "
                         "images by 255")
    n, _, h, w = images.shape
    if h < 2 or w < 2:
        raise ValueError(f"images must be at least 2 x 2 pixels, got {tuple(images.shape)}")
    if masks is not None:
        if masks.shape != (n, h, w):
            raise ValueError(f"masks {tuple(masks.shape)} do not fit images "
                             f"{tuple(images.shape)}: expected N x H x W = {(n, h, w)}")
        if torch.is_floating_point(masks) or masks.dtype == torch.bool:
            raise ValueError(f"expected integer masks, got {masks.dtype}; convert them with "
                             "masks.long()")
    if field is None:
        sigma, spacing = _resolve((h, w), sigma, spacing, strain)
        if sigma == 0:
            return images.clone(), (None if masks is None else masks.clone())
        field = random_fields_torch(n, (h, w), sigma, spacing, generator, images.device)
    field = field.to(images.device, torch.float32)
    if field.shape == (2, h, w):
        field = field.expand(n, 2, h, w)
    if field.shape != (n, 2, h, w):
        raise ValueError(f"field {tuple(field.shape)} does not fit images "
                         f"{tuple(images.shape)}: expected N x 2 x H x W or 2 x H x W (dy, dx)")
    ys = torch.arange(h, device=images.device, dtype=torch.float32)[:, None]
    xs = torch.arange(w, device=images.device, dtype=torch.float32)[None, :]
    # grid_sample wants (x, y) in [-1, 1]; with align_corners=True -1 and 1 are the centres
    # of the first and last pixels, so pixel coordinate p maps to 2 p / (size - 1) - 1.
    sample = torch.stack([2 * (xs + field[:, 1]) / (w - 1) - 1,
                          2 * (ys + field[:, 0]) / (h - 1) - 1], dim=-1)   # N x H x W x 2
    out = F.grid_sample(images, sample.to(images.dtype), mode="bilinear",
                        padding_mode="reflection", align_corners=True)
    if masks is None:
        return out, None
    labels = F.grid_sample(masks[:, None].float(), sample, mode="nearest",
                           padding_mode="reflection", align_corners=True)
    return out, labels[:, 0].round().to(masks.dtype)
