"""unet_teach.augment against independent references: np.roll for translations, hand-worked
interpolation, the dihedral group built from transposes and flips, the drawn lattice
vectors, torch's grid_sample against scipy's map_coordinates, and DataLoader workers
against the main process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.utils.data import DataLoader

from unet_teach import augment
from unet_teach.augment import (DIHEDRAL, Augment, AugmentedDataset, contrast,
                                displacement_field, elastic, elastic_torch, flip_rotate, gamma,
                                gaussian_noise, interpolate_lattice, invert_flip_rotate,
                                lattice_displacements, lattice_points, random_flip_rotate,
                                random_intensity)
from unet_teach.losses import weight_map


def _blobs(shape=(96, 96), seed=0, labels=(0, 1)) -> np.ndarray:
    """Smooth random blobs: an integer mask with large regions of each label."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 6)
    edges = np.quantile(noise, np.linspace(0, 1, len(labels) + 1)[1:-1])
    return np.asarray(labels)[np.digitize(noise, edges)]


def _image(shape=(96, 96), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _interior(a: np.ndarray, border: int) -> np.ndarray:
    return a[..., border:-border, border:-border]


# ------------------------------------------------------------------------------- elastic

def test_elastic_with_sigma_zero_returns_exact_copies():
    img, msk = _image(), _blobs()
    out, out_mask = elastic(img, msk, sigma=0.0, seed=0)
    assert np.array_equal(out, img) and np.array_equal(out_mask, msk)
    assert out is not img and out_mask is not msk
    assert elastic(img, None, sigma=0.0)[1] is None


@pytest.mark.parametrize("shape, dtype", [((40, 48), np.float32), ((3, 40, 48), np.float64)])
@pytest.mark.parametrize("mask_dtype", [np.int32, np.int64, np.uint8])
def test_elastic_keeps_shapes_and_dtypes(shape, dtype, mask_dtype):
    img = np.random.default_rng(0).random(shape).astype(dtype)
    msk = _blobs(shape[-2:]).astype(mask_dtype)
    out, out_mask = elastic(img, msk, sigma=5.0, seed=1)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert out_mask.shape == msk.shape and out_mask.dtype == msk.dtype
    assert elastic(img, None, seed=1)[1] is None


def test_elastic_keeps_the_label_set():
    msk = _blobs(labels=(0, 3, 7, 250))
    for seed in range(5):
        _, out_mask = elastic(_image(), msk, sigma=10.0, seed=seed)
        assert set(np.unique(out_mask)) <= {0, 3, 7, 250}


def test_elastic_is_deterministic_per_seed_and_different_across_seeds():
    img, msk = _image(), _blobs()
    a, b, c = (elastic(img, msk, seed=s) for s in (4, 4, 5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])
    # A Generator is drawn from, not reset: two calls with one stream differ.
    rng = np.random.default_rng(0)
    assert not np.allclose(elastic(img, None, seed=rng)[0], elastic(img, None, seed=rng)[0])


def test_elastic_gives_every_channel_the_same_field():
    img = np.stack([_image(seed=0), _image(seed=1)])            # 2 x H x W
    out, _ = elastic(img, None, seed=3)
    for c in range(2):
        assert np.allclose(out[c], elastic(img[c], None, seed=3)[0])


@pytest.mark.parametrize("seed", range(5))
def test_deformed_image_and_mask_stay_aligned(seed):
    msk = _blobs(seed=seed)
    out, out_mask = elastic(msk.astype(np.float64), msk, sigma=10.0, seed=seed)
    agree = (_interior(out, 8) > 0.5) == (_interior(out_mask, 8) == 1)
    assert agree.mean() >= 0.99
    assert (out_mask != msk).mean() > 0.01                      # and it did deform


# ---------------------------------------------------------------------- displacement field

@pytest.mark.parametrize("grid", [2, 3, 5])
def test_squeezed_field_equals_the_drawn_vectors_at_the_lattice_points(grid):
    shape = (65, 81)                                 # 64 and 80 divide by grid - 1
    drawn = lattice_displacements(grid, 10.0, rng=7)             # 2 x grid x grid
    field = interpolate_lattice(drawn, shape)
    ys, xs = lattice_points(shape, grid).astype(int)
    np.testing.assert_allclose(field[:, ys, xs], drawn, atol=1e-9)
    # corners included
    for corner in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        np.testing.assert_allclose(field[(slice(None), *corner)], drawn[(slice(None), *corner)],
                                   atol=1e-9)


@pytest.mark.parametrize("shape, spacing, offset", [((65, 81), 16.0, (0.0, 0.0)),
                                                    ((40, 50), 7.5, (3.25, 2.0)),
                                                    ((30, 30), 100.0, (20.0, 170.0))])
def test_interpolation_is_scipys_spline_through_the_lattice(shape, spacing, offset):
    # The separable weights against a plain 2-D spline evaluation at every pixel.
    grid = augment.lattice_shape(shape, spacing)
    drawn = lattice_displacements(grid, 10.0, rng=3)
    field = interpolate_lattice(drawn, shape, spacing, offset)
    coords = np.meshgrid((offset[0] + np.arange(shape[0])) / spacing,
                         (offset[1] + np.arange(shape[1])) / spacing, indexing="ij")
    ref = np.stack([ndimage.map_coordinates(c, coords, order=3, mode="mirror") for c in drawn])
    np.testing.assert_allclose(field, ref, atol=1e-9)
    # and the lattice points that fall on pixels carry the drawn vectors
    pts = lattice_points(shape, spacing=spacing, offset=offset)
    on = (pts == np.round(pts)).all(0) & (pts >= 0).all(0) & (pts[0] < shape[0]) \
        & (pts[1] < shape[1])
    ys, xs = pts[:, on].astype(int)
    np.testing.assert_allclose(field[:, ys, xs], drawn[:, on], atol=1e-9)


def test_a_window_gets_the_piece_of_the_tiles_field_that_covers_it():
    # Same vectors, same place on the lattice: the window's field is the tile's, cut out.
    drawn = lattice_displacements(3, 10.0, rng=5)
    tile = interpolate_lattice(drawn, (572, 572), augment.PAPER_SPACING)
    window = interpolate_lattice(drawn, (128, 128), augment.PAPER_SPACING, (200.0, 31.0))
    np.testing.assert_allclose(window, tile[:, 200:328, 31:159], atol=1e-9)


def test_lattice_points_span_the_image_corners():
    pts = lattice_points((33, 17), grid=3)
    assert pts.shape == (2, 3, 3)
    np.testing.assert_array_equal(pts[0, :, 0], [0, 16, 32])
    np.testing.assert_array_equal(pts[1, 0], [0, 8, 16])


def test_lattice_in_tissue_pixels_covers_the_image():
    assert augment.lattice_shape((572, 572)) == (3, 3)            # the paper's tile
    assert augment.lattice_shape((573, 64)) == (4, 3)             # one pixel more: a point more
    for shape in [(64, 64), (512, 512), (1000, 300)]:
        pts = lattice_points(shape, spacing=augment.PAPER_SPACING)
        assert pts[0].max() >= shape[0] - 1 and pts[1].max() >= shape[1] - 1


def test_two_by_two_lattice_falls_back_to_bilinear():
    coarse = np.random.default_rng(0).normal(size=(2, 2, 2))
    field = interpolate_lattice(coarse, (5, 9))
    t, s = np.linspace(0, 1, 5)[:, None], np.linspace(0, 1, 9)[None, :]
    expected = ((1 - t) * (1 - s) * coarse[:, :1, :1] + (1 - t) * s * coarse[:, :1, 1:]
                + t * (1 - s) * coarse[:, 1:, :1] + t * s * coarse[:, 1:, 1:])
    np.testing.assert_allclose(field, expected, atol=1e-12)


def test_lattice_vectors_have_standard_deviation_sigma():
    sigma = 10.0
    values = np.concatenate([lattice_displacements(3, sigma, rng=s).ravel()
                             for s in range(300)])              # 5400 values
    assert abs(values.std() - sigma) < 0.05 * sigma
    assert abs(values.mean()) < 0.05 * sigma
    # a field drawn with strain: the paper's lattice over the image with sigma scaled with
    # it (points 16 px apart, sigma 8 px), centred
    shape = (33, 33)
    for s in range(20):
        drawn = lattice_displacements(3, 0.5 * 16, rng=s)
        plain = interpolate_lattice(drawn, shape)
        np.testing.assert_allclose(displacement_field(shape, rng=s, strain=0.5),
                                   plain - plain.mean(axis=(1, 2), keepdims=True), atol=1e-9)


def _largest_gradient_and_folds(field):
    """Independent of augment's helpers: central differences, det(I + grad d)."""
    (dyy, dyx), (dxy, dxx) = (np.gradient(c) for c in field)
    largest = max(np.abs(g).max() for g in (dyy, dyx, dxy, dxx))
    return largest, bool((((1 + dyy) * (1 + dxx) - dyx * dxy) <= 0).any())


@pytest.mark.slow
def test_default_fields_bend_any_size_like_the_papers_tile_and_never_fold():
    # 1,000 seeded fields per size with the defaults (the paper's sigma and spacing). A window
    # gets a piece of a 572 px tile's field, so its strain is no larger than the tile's: the
    # paper's own deformation (median of the largest gradient 0.15 px per px) is the bar.
    # A fold needs a gradient near 1; squeezing the lattice into 64 px made 1.3 typical.
    summary = {}
    for size in (64, 128, 256, 572):
        drawn = [_largest_gradient_and_folds(displacement_field((size, size), rng=s))
                 for s in range(1000)]
        largest = np.array([g for g, _ in drawn])
        summary[size] = np.median(largest)
        assert not any(f for _, f in drawn), f"a default field folds at {size} px"
        assert largest.max() < 0.5, f"a {size} px window bends {largest.max():.2f} px per px"
    assert 0.1 < summary[572] < 0.2, summary                    # the paper's own tile
    assert all(summary[s] <= summary[572] + 0.005 for s in summary), summary


def test_strain_keeps_the_papers_bending_on_small_whole_images():
    for size in (64, 572):
        largest = np.array([_largest_gradient_and_folds(displacement_field(
            (size, size), rng=s, strain=augment.PAPER_STRAIN))[0] for s in range(200)])
        assert 0.1 < np.median(largest) < 0.2
    # while the paper's sigma on a lattice squeezed into 64 px tears most images
    torn = [_largest_gradient_and_folds(interpolate_lattice(
        lattice_displacements(3, 10.0, rng=s), (64, 64)))[1] for s in range(200)]
    assert np.mean(torn) > 0.3
    assert augment.field_strain(displacement_field((64, 64), rng=0, strain=0.0)) == 0


def test_field_strain_and_folds_read_a_hand_made_field():
    ramp = np.stack([np.zeros((6, 6)), np.tile(0.3 * np.arange(6.0), (6, 1))])
    assert augment.field_strain(ramp) == pytest.approx(0.3) and not augment.folds(ramp)
    squash = np.stack([np.zeros((6, 6)), np.tile(-1.5 * np.arange(6.0), (6, 1))])
    assert augment.folds(squash)                   # x -> x - 1.5 x runs backwards


def test_a_constant_field_is_a_translation():
    img, msk = _image(), _blobs()
    field = np.stack([np.full(img.shape, 3.0), np.full(img.shape, -5.0)])
    out, out_mask = elastic(img, msk, field=field)
    # the output at p reads the input at p + d, so the content moves by -d
    np.testing.assert_allclose(_interior(out, 8), _interior(np.roll(img, (-3, 5), (0, 1)), 8))
    np.testing.assert_array_equal(_interior(out_mask, 8),
                                  _interior(np.roll(msk, (-3, 5), (0, 1)), 8))


def test_a_half_pixel_shift_averages_neighbours_linearly():
    img = _image()
    field = np.stack([np.zeros(img.shape), np.full(img.shape, 0.5)])
    out, _ = elastic(img, None, field=field)
    np.testing.assert_allclose(out[:, :-1], (img[:, :-1] + img[:, 1:]) / 2, rtol=1e-6)


def test_borders_are_mirrored_like_numpy_reflect():
    img = _image((16, 16))
    field = np.stack([np.zeros(img.shape), np.full(img.shape, -3.0)])
    out, _ = elastic(img, None, field=field)
    padded = np.pad(img, 3, mode="reflect")[3:-3]                # row -1 is row 1
    np.testing.assert_allclose(out, padded[:, :16], rtol=1e-6)


@pytest.mark.parametrize("image, mask, kwargs, match", [
    (np.zeros((2, 1, 8, 8)), None, {}, "H x W or C x H x W"),
    (np.zeros((8, 8), np.uint8), None, {}, "255"),
    (np.zeros((8, 8)), np.zeros((8, 9), int), {}, "does not fit"),
    (np.zeros((8, 8)), np.zeros((8, 8)), {}, "astype"),
    (np.zeros((8, 8)), None, {"sigma": -1.0}, ">= 0"),
    (np.zeros((8, 8)), None, {"spacing": 0.0}, "> 0"),
    (np.zeros((8, 8)), None, {"sigma": 1.0, "strain": 0.1}, "not both"),
    (np.zeros((8, 8)), None, {"field": np.zeros((2, 8, 9))}, "2 x H x W"),
])
def test_elastic_rejects_bad_input_saying_what_to_do(image, mask, kwargs, match):
    with pytest.raises(ValueError, match=match):
        elastic(image, mask, **kwargs)


# ---------------------------------------------------------------------- flips and rotations

def test_dihedral_is_the_8_symmetries_of_the_square():
    a = np.arange(16).reshape(4, 4)                              # no symmetry of its own
    ours = {flip_rotate(a, None, k, f)[0].tobytes() for k, f in DIHEDRAL}
    # the same group, built independently from transpose and the two flips
    reference = {m.tobytes() for t in (a, a.T) for m in
                 (t, t[::-1].copy(), t[:, ::-1].copy(), t[::-1, ::-1].copy())}
    assert len(DIHEDRAL) == 8 and len(ours) == 8 and ours == reference
    assert DIHEDRAL[0] == (0, False)
    np.testing.assert_array_equal(flip_rotate(a, None, 1, False)[0], np.rot90(a))
    np.testing.assert_array_equal(flip_rotate(a, None, 0, True)[0], a[:, ::-1])


@pytest.mark.parametrize("k, flip", DIHEDRAL)
def test_invert_flip_rotate_is_the_exact_inverse(k, flip):
    probs = np.random.default_rng(0).random((3, 4, 6))          # K x H x W, not square
    np.testing.assert_array_equal(invert_flip_rotate(flip_rotate(probs, None, k, flip)[0],
                                                     k, flip), probs)
    t = torch.from_numpy(probs)[None]                            # N x K x H x W tensor
    transformed = flip_rotate(t, None, k, flip)[0]
    assert torch.equal(transformed, torch.from_numpy(flip_rotate(probs, None, k, flip)[0])[None])
    assert torch.equal(invert_flip_rotate(transformed, k, flip), t)


@pytest.mark.parametrize("k, flip", DIHEDRAL)
def test_flip_rotate_moves_image_and_mask_together(k, flip):
    msk = _blobs((12, 20))
    img = np.stack([msk, 2 * msk]).astype(np.float32)           # 2 x H x W
    out, out_mask = flip_rotate(img, msk, k, flip)
    np.testing.assert_array_equal(out[0], out_mask)
    np.testing.assert_array_equal(out[1], 2 * out_mask)
    # torch.from_numpy refuses negative strides, so a view np.rot90/flip left behind
    # would fail here; both must be real arrays in C order
    for a in (out, out_mask):
        assert a.flags.c_contiguous and all(s > 0 for s in a.strides)
        assert torch.from_numpy(a).shape == a.shape


def test_random_flip_rotate_draws_all_eight_and_moves_both():
    msk = np.arange(16).reshape(4, 4)
    seen = set()
    for seed in range(200):
        img, out_mask = random_flip_rotate(msk.astype(float), msk, np.random.default_rng(seed))
        np.testing.assert_array_equal(img, out_mask)
        seen.add(out_mask.tobytes())
    assert len(seen) == 8


def test_flip_rotate_rejects_bad_k_and_mismatched_mask():
    with pytest.raises(ValueError, match="0..3"):
        flip_rotate(np.zeros((4, 4)), None, 4, False)
    with pytest.raises(ValueError, match="does not fit"):
        flip_rotate(np.zeros((4, 4)), np.zeros((4, 5), int), 1, False)


# ------------------------------------------------------------------------------- intensity

def test_gamma_is_a_clipped_power():
    img = np.linspace(-0.2, 1.2, 50, dtype=np.float32).reshape(5, 10)
    out = gamma(img, 0.7)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out, np.clip(img, 0, 1) ** 0.7, rtol=1e-6)
    with pytest.raises(ValueError, match="> 0"):
        gamma(img, 0.0)


def test_contrast_scales_around_each_channel_mean():
    img = np.random.default_rng(0).uniform(0.4, 0.6, (2, 8, 8))
    out = contrast(img, 1.5)                                     # no clipping needed here
    np.testing.assert_allclose(out.mean(axis=(1, 2)), img.mean(axis=(1, 2)))
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.5 * img.std(axis=(1, 2)))
    flat = contrast(img, 0.0)
    np.testing.assert_allclose(flat, np.broadcast_to(img.mean(axis=(1, 2))[:, None, None],
                                                     img.shape))
    big = contrast(img.astype(np.float32), 10.0)
    assert big.dtype == np.float32 and big.min() == 0 and big.max() == 1
    with pytest.raises(ValueError, match=">= 0"):
        contrast(img, -1.0)


def test_gaussian_noise_has_the_asked_std_and_stays_in_range():
    img = np.full((128, 128), 0.5, np.float32)
    out = gaussian_noise(img, 0.05, rng=0)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert abs((out - img).std() - 0.05) < 0.003
    np.testing.assert_array_equal(out, gaussian_noise(img, 0.05, rng=0))
    assert gaussian_noise(np.ones((4, 4)), 0.5, rng=0).max() <= 1
    with pytest.raises(ValueError, match=">= 0"):
        gaussian_noise(img, -0.1)


def test_random_intensity_ranges_and_identity():
    img = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    for seed in range(10):
        out = random_intensity(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.float32
        assert 0 <= out.min() and out.max() <= 1
    same = random_intensity(img, 0, gamma_range=(1, 1), contrast_range=(1, 1),
                            noise_std=(0, 0))
    np.testing.assert_allclose(same, img, atol=1e-6)
    with pytest.raises(ValueError, match="255"):
        random_intensity(np.zeros((4, 4), np.uint8), 0)


def test_intensity_changes_leave_the_mask_untouched():
    img, msk = _image(), _blobs()
    out, out_mask = Augment(flip_rotate=False, elastic=False)(img, msk, 0)
    np.testing.assert_array_equal(out_mask, msk)
    assert not np.allclose(out, img)


# -------------------------------------------------------------------------------- pipeline

def test_augment_pipeline_switches():
    img, msk = _image(), _blobs()
    off = Augment(flip_rotate=False, elastic=False, intensity=False)
    out, out_mask = off(img, msk, 0)
    assert np.array_equal(out, img) and np.array_equal(out_mask, msk)
    # geometry only: image (a copy of the mask) and mask still move together
    out, out_mask = Augment(intensity=False)(msk.astype(np.float64), msk, 3)
    assert ((_interior(out, 8) > 0.5) == (_interior(out_mask, 8) == 1)).mean() >= 0.99
    assert not np.array_equal(out_mask, msk)
    # p_elastic=0 with no flips is the identity on geometry
    same = Augment(flip_rotate=False, intensity=False, p_elastic=0.0)(img, msk, 0)
    assert np.array_equal(same[0], img)
    with pytest.raises(ValueError, match="probability"):
        Augment(p_elastic=2.0)
    with pytest.raises(ValueError, match=">= 0"):
        Augment(sigma=-1.0)


# ---------------------------------------------------------------------------- data set

def _as_float(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float64)


def _paper_weights(mask: np.ndarray) -> np.ndarray:
    return weight_map(ndimage.label(mask)[0])


def _data(n=6, shape=(32, 32)):
    images = np.random.default_rng(0).random((n, *shape)).astype(np.float32)
    masks = np.stack([_blobs(shape, seed=i) for i in range(n)])
    return images, masks


def _items(ds, order=None):
    return [ds[i] for i in (order or range(len(ds)))]


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_dataset_is_deterministic_per_seed_epoch_and_index():
    images, masks = _data()
    ds = AugmentedDataset(images, masks, Augment(), seed=0)
    first = _items(ds)
    again = _items(AugmentedDataset(images, masks, Augment(), seed=0), order=[5, 3, 1, 0, 2, 4])
    assert all(_equal(first[i], again[[5, 3, 1, 0, 2, 4].index(i)]) for i in range(6))
    assert _equal(first[0], ds[0])
    other_seed = AugmentedDataset(images, masks, Augment(), seed=1)[0]
    assert not torch.equal(first[0][0], other_seed[0])


def test_dataset_differs_across_epochs():
    images, masks = _data()
    ds = AugmentedDataset(images, masks, Augment(), seed=0)
    before = _items(ds)
    ds.set_epoch(1)
    assert ds.epoch == 1
    assert all(not torch.equal(a[0], b[0]) for a, b in zip(before, _items(ds)))
    ds.set_epoch(0)
    assert all(_equal(a, b) for a, b in zip(before, _items(ds)))


def _batches(loader):
    return [torch.cat(parts) for parts in zip(*loader)]


def test_dataloader_workers_give_the_same_batches_as_the_main_process():
    images, masks = _data(n=8)
    ds = AugmentedDataset(images, masks, Augment(), seed=3, weight_fn=_as_float, crop=24)
    ds.set_epoch(2)
    main = _batches(DataLoader(ds, batch_size=2, num_workers=0))
    workers = _batches(DataLoader(ds, batch_size=2, num_workers=2))
    assert _equal(main, workers)


def test_set_epoch_reaches_persistent_workers():
    images, masks = _data(n=4)
    ds = AugmentedDataset(images, masks, Augment(), seed=0)
    loader = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        seen.append(_batches(loader))
    for epoch in range(2):
        ds.set_epoch(epoch)
        assert _equal(seen[epoch], _batches(DataLoader(ds, batch_size=2)))
    assert not torch.equal(seen[0][0], seen[1][0])


def test_weight_fn_sees_the_augmented_mask():
    images, masks = _data()
    ds = AugmentedDataset(images, masks, Augment(), seed=0, weight_fn=_as_float, crop=20)
    for image, mask, weight in _items(ds):
        assert weight.dtype == torch.float32 and weight.shape == mask.shape == (20, 20)
        assert torch.equal(weight, mask.float())
    _, mask, weight = AugmentedDataset(images, masks, Augment(), weight_fn=_paper_weights)[0]
    np.testing.assert_allclose(weight.numpy(), _paper_weights(mask.numpy()))


@pytest.mark.parametrize("images_shape", [(4, 32, 40), (4, 3, 32, 40)])
def test_dataset_items_have_the_training_dtypes_and_crop_size(images_shape):
    images = np.random.default_rng(0).random(images_shape)       # float64 in, float32 out
    masks = np.stack([_blobs((32, 40), seed=i) for i in range(4)]).astype(np.int32)
    channels = 1 if len(images_shape) == 3 else 3
    image, mask = AugmentedDataset(images, masks, Augment(), crop=(16, 24))[1]
    assert image.shape == (channels, 16, 24) and image.dtype == torch.float32
    assert mask.shape == (16, 24) and mask.dtype == torch.int64
    plain = AugmentedDataset(images, masks, None)[1]
    np.testing.assert_allclose(plain[0].numpy(), images[1].reshape(channels, 32, 40),
                               rtol=1e-6)
    assert torch.equal(plain[1], torch.from_numpy(masks[1]).long())


def test_dataset_rejects_bad_input():
    images, masks = _data()
    with pytest.raises(ValueError, match="do not match"):
        AugmentedDataset(images, masks[:3], Augment())
    with pytest.raises(ValueError, match="crop"):
        AugmentedDataset(images, masks, Augment(), crop=40)
    with pytest.raises(ValueError, match="astype"):
        AugmentedDataset(images, masks.astype(float), Augment())
    with pytest.raises(ValueError, match="shorter side"):
        # a quarter turn makes 32 x 40 into 40 x 32, where a 36-high crop no longer fits
        ds = AugmentedDataset(np.zeros((8, 32, 40)), np.zeros((8, 32, 40), int), Augment(),
                              crop=(30, 36))
        _items(ds)


# --------------------------------------------------------------------------- elastic_torch

def test_elastic_torch_with_sigma_zero_is_the_identity():
    x, y = torch.rand(2, 3, 24, 24), torch.randint(0, 4, (2, 24, 24))
    xd, yd = elastic_torch(x, y, sigma=0.0)
    assert torch.equal(xd, x) and torch.equal(yd, y) and xd is not x
    assert elastic_torch(x, None, sigma=0.0)[1] is None


def test_elastic_torch_shapes_labels_and_generator():
    x = torch.rand(3, 2, 40, 48, dtype=torch.float64)
    y = torch.from_numpy(np.stack([_blobs((40, 48), seed=i, labels=(0, 2, 5))
                                   for i in range(3)])).int()
    xd, yd = elastic_torch(x, y, generator=torch.Generator().manual_seed(0))
    assert xd.shape == x.shape and xd.dtype == x.dtype
    assert yd.shape == y.shape and yd.dtype == torch.int32
    assert set(yd.unique().tolist()) <= {0, 2, 5} and not torch.equal(yd, y)
    again = elastic_torch(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(xd, again[0]) and torch.equal(yd, again[1])
    # one field per sample: identical inputs come out differently
    same = elastic_torch(x[:1].expand(2, -1, -1, -1), sigma=10.0,
                         generator=torch.Generator().manual_seed(1))[0]
    assert not torch.allclose(same[0], same[1])


def test_elastic_torch_agrees_with_scipy_under_the_same_field():
    msk = np.stack([_blobs((64, 64), seed=s, labels=(0, 1, 2)) for s in range(2)])
    img = np.stack([np.stack([_image((64, 64), seed=s), msk[s] / 2.0]) for s in range(2)])
    fields = np.stack([displacement_field((64, 64), rng=s, strain=0.3) for s in range(2)])
    xd, yd = elastic_torch(torch.from_numpy(img).float(), torch.from_numpy(msk),
                           field=torch.from_numpy(fields))
    for s in range(2):
        ref, ref_mask = elastic(img[s], msk[s], field=fields[s])
        np.testing.assert_allclose(_interior(xd[s].numpy(), 8), _interior(ref, 8), atol=1e-4)
        # mirrored borders agree too (reflection with align_corners=True is scipy's "mirror")
        np.testing.assert_allclose(xd[s].numpy(), ref, atol=1e-4)
        assert (yd[s].numpy() == ref_mask).mean() >= 0.999      # nearest: ties may differ
    # one 2 x H x W field for the whole batch
    shared = elastic_torch(torch.from_numpy(img).float(), field=torch.from_numpy(fields[0]))[0]
    np.testing.assert_allclose(shared[1].numpy(), elastic(img[1], None, field=fields[0])[0],
                               atol=1e-4)


def test_elastic_torch_displacements_have_standard_deviation_sigma():
    # A 3 x 3 lattice over a 33 px image (points 16 px apart): the corner and the centre
    # pixels are lattice points, so corner minus centre is v_corner - v_centre, whatever
    # the centring: standard deviation sigma * sqrt(2).
    n, size, sigma = 1000, 33, 3.0
    fields = augment.random_fields_torch(n, (size, size), sigma, 16.0,
                                         torch.Generator().manual_seed(0)).double()
    d = fields[:, :, 0, 0] - fields[:, :, size // 2, size // 2]              # N x 2
    assert abs(d.std().item() - sigma * 2 ** 0.5) < 0.05 * sigma * 2 ** 0.5
    assert abs(d.mean().item()) < 0.05 * sigma
    assert fields.mean(dim=(2, 3)).abs().max() < 1e-5                       # centred
    # and elastic_torch with strain= draws the same lattice: sigma = strain x 16 px
    ramp = torch.arange(size, dtype=torch.float64)
    coords = torch.stack(torch.meshgrid(ramp, ramp, indexing="ij"))
    out, _ = elastic_torch(coords.expand(4, 2, size, size).clone(), strain=sigma / 16,
                           generator=torch.Generator().manual_seed(0))
    inner = (slice(None), slice(None), slice(12, 21), slice(12, 21))          # far from borders
    same = augment.random_fields_torch(4, (size, size), sigma, 16.0,
                                       torch.Generator().manual_seed(0)).double()
    np.testing.assert_allclose((out - coords)[inner].numpy(), same[inner].numpy(), atol=1e-4)


@pytest.mark.parametrize("images, masks, kwargs, match", [
    (torch.zeros(1, 8, 8), None, {}, "N x C x H x W"),
    (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), None, {}, "255"),
    (torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 9, dtype=torch.long), {}, "do not fit"),
    (torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 8), {}, "long"),
    (torch.zeros(1, 1, 8, 8), None, {"sigma": -1.0}, ">= 0"),
    (torch.zeros(1, 1, 8, 8), None, {"spacing": -2.0}, "> 0"),
    (torch.zeros(1, 1, 8, 8), None, {"field": torch.zeros(1, 2, 8, 9)}, "2 x H x W"),
])
def test_elastic_torch_rejects_bad_input(images, masks, kwargs, match):
    with pytest.raises(ValueError, match=match):
        elastic_torch(images, masks, **kwargs)


def test_augment_window_cuts_image_and_mask_at_the_same_place():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 2, (40, 50))
    image = mask.astype(np.float32) * 0.5                 # the mask, as an image
    for seed in range(5):
        out, out_mask = Augment(window=24, elastic=False, intensity=False)(image, mask, seed)
        assert out.shape == out_mask.shape == (24, 24)
        assert np.array_equal(out == 0.5, out_mask == 1)  # still aligned after the cut
    plain = Augment(flip_rotate=False, elastic=False, intensity=False, window=24)
    out, out_mask = plain(image, mask, 3)
    r = np.random.default_rng(3)
    top, left = r.integers(0, 40 - 24 + 1), r.integers(0, 50 - 24 + 1)
    assert np.array_equal(out_mask, mask[top:top + 24, left:left + 24])
    with pytest.raises(ValueError, match="larger than the image"):
        Augment(window=41)(image, mask, 0)
    with pytest.raises(ValueError, match="positive int"):
        Augment(window=0)


def test_elastic_torch_bends_a_window_like_the_papers_tile():
    # torch's fields (Keys' cubic, not scipy's spline) must bend as gently as numpy's: the
    # paper's strain on a 128 px window, never folding.
    fields = augment.random_fields_torch(500, (128, 128), augment.PAPER_SIGMA,
                                         augment.PAPER_SPACING,
                                         torch.Generator().manual_seed(0)).double().numpy()
    drawn = [_largest_gradient_and_folds(f) for f in fields]
    assert not any(f for _, f in drawn)
    ours = np.median([_largest_gradient_and_folds(displacement_field((128, 128), rng=s))[0]
                      for s in range(500)])
    assert abs(np.median([g for g, _ in drawn]) - ours) < 0.02
    assert fields.std() > 1                    # and it does move pixels (centred: no shift)
