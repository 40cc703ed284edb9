"""The warping error (metrics.warping_error, metrics.warp_toward) against hand-worked cases,
component counts from scipy / scikit-image, and a flip-and-count check of its lookup table."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.measure import label as skimage_label

from unet_teach.app.evaluate import evaluate
from unet_teach.metrics import _NEIGHBOURS, _SIMPLE, pixel_error, warp_toward, warping_error

FOUR = ndimage.generate_binary_structure(2, 1)
EIGHT = ndimage.generate_binary_structure(2, 2)


def counts(cells: np.ndarray) -> tuple[int, int]:
    """(4-connected cells, 8-connected membranes), outside the image counted as membrane."""
    framed = np.pad(cells, 1, constant_values=False)
    return (int(skimage_label(framed, connectivity=1).max()),
            ndimage.label(~framed, structure=EIGHT)[1])


def framed_cell(height=9, width=11) -> np.ndarray:
    """One cell (0) inside a one-pixel membrane frame (1), this package's mask convention."""
    mask = np.ones((height, width), dtype=np.int64)
    mask[1:-1, 1:-1] = 0
    return mask


def blobs(rng, shape=(40, 40), sigma=2.5) -> np.ndarray:
    """Random smooth cells (0) and membrane (1)."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (noise > 0.05).astype(np.int64)


# ----------------------------------------------------------------------------- hand-worked

def test_identical_maps_cost_nothing():
    target = blobs(np.random.default_rng(0))
    assert warping_error(target, target) == 0.0


def test_a_boundary_moved_by_one_pixel_costs_nothing_while_pixel_error_does():
    line = np.zeros((7, 9), dtype=np.int64)
    line[:, 4] = 1                                   # a membrane line between two cells
    moved = np.roll(line, 1, axis=1)
    assert pixel_error(moved, line) == pytest.approx(14 / 63)
    assert warping_error(moved, line) == 0.0

    membrane = np.ones((9, 11), dtype=np.int64)
    cell, grown = membrane.copy(), membrane.copy()
    cell[3:6, 4:7] = 0                               # a 3 x 3 cell
    grown[2:7, 3:8] = 0                              # grown by a one-pixel ring
    assert pixel_error(grown, cell) == pytest.approx(16 / 99)
    assert warping_error(grown, cell) == 0.0
    assert warping_error(cell, grown) == 0.0         # and shrunk back


def test_a_one_pixel_gap_in_a_one_pixel_membrane_costs_exactly_one_pixel():
    target = np.zeros((7, 9), dtype=np.int64)
    target[:, 4] = 1
    gap = target.copy()
    gap[3, 4] = 0                                    # the two cells merge through the gap
    assert warping_error(gap, target) * gap.size == pytest.approx(1)


@pytest.mark.parametrize("width", [1, 2])
def test_a_cut_across_a_cell_costs_its_width_in_pixels(width):
    # The truth's cell can be dented from the frame down the cut line pixel by pixel; only
    # the last crossing, `width` pixels side by side, would cut the cell in two.
    target = framed_cell()
    cut = target.copy()
    cut[:, 5:5 + width] = 1
    assert warping_error(cut, target) * cut.size == pytest.approx(width)
    left = warp_toward(target == 0, cut == 0) != (cut == 0)
    rows, columns = np.nonzero(left)
    assert len(set(rows)) == 1 and sorted(columns) == list(range(5, 5 + width))  # one crossing


def test_added_holes_and_cells_cost_all_their_pixels_missing_ones_one():
    target = framed_cell()
    speck = target.copy()
    speck[4, 5] = 1                                  # one membrane pixel: a hole in the cell
    assert warping_error(speck, target) * speck.size == pytest.approx(1)
    speck[4:6, 5:7] = 1                              # a 2 x 2 hole: every pixel would open it
    assert warping_error(speck, target) * speck.size == pytest.approx(4)
    # The other way round, the truth's 2 x 2 hole shrinks to one pixel before it must stay.
    assert warping_error(target, speck) * speck.size == pytest.approx(1)

    membrane = np.ones((9, 11), dtype=np.int64)
    small = membrane.copy()
    small[4:6, 5:7] = 0                              # a 2 x 2 cell
    assert warping_error(membrane, small) * small.size == pytest.approx(1)   # cell missed
    with_cell = membrane.copy()
    with_cell[1, 1] = 0                              # the truth's one cell, in a corner
    extra = with_cell.copy()
    extra[4:6, 5:7] = 0                              # the prediction adds a 2 x 2 cell
    assert warping_error(extra, with_cell) * extra.size == pytest.approx(4)


def test_outside_the_image_counts_as_membrane():
    cell = np.zeros((6, 6), dtype=np.int64)          # one cell fills the image
    corner, inside = cell.copy(), cell.copy()
    corner[0, 0] = 1                                 # a dent from the outside membrane
    inside[2, 3] = 1                                 # a hole
    assert warping_error(corner, cell) == 0.0
    assert warping_error(inside, cell) * cell.size == pytest.approx(1)


# ----------------------------------------------------------------------------- independent checks

def _flip_keeps_counts(patch: np.ndarray) -> bool:
    """Flip the centre of `patch` (booleans, True = cell): are both counts unchanged?"""
    before = (ndimage.label(patch, FOUR)[1], ndimage.label(~patch, EIGHT)[1])
    flipped = patch.copy()
    c = patch.shape[0] // 2
    flipped[c, c] = ~flipped[c, c]
    return before == (ndimage.label(flipped, FOUR)[1], ndimage.label(~flipped, EIGHT)[1])


def test_the_simple_point_table_matches_flip_and_count_on_all_256_neighbourhoods():
    # Embed each 3 x 3 neighbourhood in 5 x 5 images whose outer ring is all membrane, all
    # cell, or random; flip the centre either way and compare the component counts.
    rng = np.random.default_rng(0)
    rings = [np.zeros(16, bool), np.ones(16, bool), *(rng.random((30, 16)) < 0.5)]
    ring_at = [(y, x) for y in range(5) for x in range(5) if max(abs(y - 2), abs(x - 2)) == 2]
    disagree = []
    for index in range(256):
        for ring in rings:
            patch = np.zeros((5, 5), dtype=bool)
            for (y, x), v in zip(ring_at, ring):
                patch[y, x] = v
            for k, (dy, dx) in enumerate(_NEIGHBOURS):
                patch[2 + dy, 2 + dx] = bool(index >> k & 1)
            for centre in (False, True):
                patch[2, 2] = centre
                if _flip_keeps_counts(patch) != _SIMPLE[index]:
                    disagree.append((index, centre))
    assert not disagree, disagree[:5]
    assert _SIMPLE.sum() > 0 and not _SIMPLE.all()


@pytest.mark.parametrize("seed", range(4))
def test_the_warped_truth_has_the_truths_cells_and_membranes(seed):
    rng = np.random.default_rng(seed)
    target = blobs(rng)
    pred = np.roll(target, rng.integers(-2, 3, 2), axis=(0, 1))
    pred ^= (rng.random(pred.shape) < 0.02)          # specks and gaps as well as shifts
    warped = warp_toward(target == 0, pred == 0)
    assert counts(warped) == counts(target == 0)
    assert counts(pred == 0) != counts(target == 0)  # the prediction's topology differs
    # and the warp did move the truth: fewer disagreements than before
    assert (warped != (pred == 0)).sum() < (target != pred).sum()


@pytest.mark.parametrize("seed", range(4))
def test_warping_error_never_exceeds_pixel_error(seed):
    rng = np.random.default_rng(seed)
    target = blobs(rng)
    pred = np.roll(target, 1, axis=0) ^ (rng.random(target.shape) < 0.05)
    assert 0 < warping_error(pred, target) <= pixel_error(pred, target)


def _simple_flips(rng, cells: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Flip the pixels of `band` in random order, each once, keeping a flip only when scipy
    finds the counts of cells and membranes unchanged: a warping of `cells` built without
    the lookup table."""
    ys, xs = np.nonzero(band)
    for i in rng.permutation(ys.size):
        trial = cells.copy()
        trial[ys[i], xs[i]] = ~trial[ys[i], xs[i]]
        if counts(trial) == counts(cells):
            cells = trial
    return cells


@pytest.mark.parametrize("seed", range(6))
def test_cells_grown_or_shrunk_by_simple_flips_cost_nothing(seed):
    rng = np.random.default_rng(seed)
    target = blobs(rng, shape=(32, 32))
    cells = target == 0
    if seed % 2:
        band = ndimage.binary_dilation(cells, FOUR) & ~cells            # the ring outside
    else:
        band = cells & ~ndimage.binary_erosion(cells, FOUR, border_value=1)   # inside
    pred = np.where(_simple_flips(rng, cells, band), 0, 1)
    assert pixel_error(pred, target) > 0.05
    assert warping_error(pred, target) == 0.0


def test_a_boundary_jittered_by_simple_flips_leaves_few_pixels_stuck():
    # Flipping boundary pixels in and out at random is a warping too, but the fixed order can
    # get stuck where another order would not: the count is an upper bound, a small one.
    stuck = changed = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        cells = blobs(rng, shape=(32, 32)) == 0
        band = ndimage.binary_dilation(cells, FOUR) ^ ndimage.binary_erosion(
            cells, FOUR, border_value=1)
        pred = _simple_flips(rng, cells, band)
        stuck += (warp_toward(cells, pred) != pred).sum()
        changed += (cells != pred).sum()
    assert changed > 1000 and stuck < 0.02 * changed, (stuck, changed)


def test_warping_toward_its_own_result_costs_nothing():
    rng = np.random.default_rng(5)
    target = blobs(rng)
    pred = target ^ (rng.random(target.shape) < 0.05)
    warped = warp_toward(target == 0, pred == 0)
    assert warping_error(np.where(warped, 0, 1), target) == 0.0


# ----------------------------------------------------------------------------- inputs

def test_a_stack_is_the_mean_over_images_and_torch_gives_the_same():
    target = np.zeros((7, 9), dtype=np.int64)
    target[:, 4] = 1
    gap = target.copy()
    gap[3, 4] = 0
    stack_pred, stack_target = np.stack([target, gap]), np.stack([target, target])
    assert warping_error(stack_pred, stack_target) == pytest.approx(0.5 / 63)
    assert warping_error(torch.from_numpy(stack_pred), torch.from_numpy(stack_target)) == \
        warping_error(stack_pred, stack_target)
    # ISBI convention: cells are 255
    assert warping_error(np.where(gap, 0, 255), np.where(target, 0, 255), regions=255) == \
        pytest.approx(1 / 63)


def test_bad_input_says_what_to_do():
    target = np.zeros((7, 9), dtype=np.int64)
    target[:, 4] = 1
    with pytest.raises(ValueError, match="same shape"):
        warping_error(target[:, :8], target)
    with pytest.raises(ValueError, match="no pixel labelled regions=255"):
        warping_error(target, target, regions=255)
    with pytest.raises(ValueError, match="H x W or N x H x W"):
        warping_error(target[None, None], target[None, None])
    with pytest.raises(TypeError, match="integer class indices"):
        warping_error(target.astype(float), target)
    with pytest.raises(ValueError, match="binary"):
        warp_toward(target * 2, target)
    with pytest.raises(ValueError, match="one H x W image"):
        warp_toward(target[None], target[None])


def test_a_512_by_512_slice_takes_well_under_ten_seconds():
    # Voronoi cells with one-pixel membranes; the prediction moves every membrane by a pixel
    # and adds specks and gaps. Measured about 0.01 s on two CPU cores.
    rng = np.random.default_rng(0)
    seeds = np.zeros((512, 512), dtype=bool)
    seeds[rng.integers(0, 512, 400), rng.integers(0, 512, 400)] = True
    _, (iy, ix) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    owner = iy * 512 + ix
    membrane = np.zeros((512, 512), dtype=bool)
    membrane[:, 1:] |= owner[:, 1:] != owner[:, :-1]
    membrane[1:, :] |= owner[1:, :] != owner[:-1, :]
    target = membrane.astype(np.int64)
    pred = np.roll(target, 1, axis=1) ^ (rng.random(target.shape) < 0.002)
    start = time.perf_counter()
    error = warping_error(pred, target)
    took = time.perf_counter() - start
    assert took < 10, took
    assert 0 < error < pixel_error(pred, target) / 10


# ----------------------------------------------------------------------------- unet-teach evaluate

def test_evaluate_prints_and_writes_the_warping_error_of_a_merge(tmp_path, capsys):
    truth = np.full((7, 9), 255, dtype=np.uint8)     # ISBI convention: 255 = cell
    truth[:, 4] = 0
    merged = truth.copy()
    merged[3, 4] = 255                               # one gap: the two cells merge
    for folder, mask in (("pred", merged), ("truth", truth)):
        (tmp_path / folder).mkdir()
        Image.fromarray(mask).save(tmp_path / folder / "00.png")
    table = tmp_path / "scores.csv"
    assert evaluate(tmp_path / "pred", tmp_path / "truth", regions=255, csv=table,
                    progress=False) == 0
    header = capsys.readouterr().out.splitlines()[1].split()
    assert header[-4:] == ["rand_error", "vi_split", "vi_merge", "warping_error"]
    rows = list(csv.DictReader(table.open()))
    assert [r["image"] for r in rows] == ["00", "mean"]
    for row in rows:
        assert float(row["warping_error"]) == pytest.approx(1 / 63, rel=1e-5)
