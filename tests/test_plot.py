"""Overlays, panels, grids and training curves (drawn with the Agg backend)."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from unet_teach.plot import (CLASS_COLORS, class_cmap, overlay, plot_history, show_grid,
                             show_panels)


def test_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


def test_overlay_colours_mask_pixels_and_leaves_class_0():
    rng = np.random.default_rng(0)
    image = rng.random((10, 12))
    mask = np.zeros((10, 12), dtype=np.int64)
    mask[2:5, 3:7] = 1
    mask[7, :] = 2
    alpha = 0.4
    out = overlay(image, mask, alpha=alpha)
    assert out.shape == (10, 12, 3) and out.dtype == np.float64
    assert out.min() >= 0 and out.max() <= 1
    # independent reference: the image rescaled to [0, 1], grey in all three channels
    grey = (image - image.min()) / (image.max() - image.min())
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    bg = mask == 0
    np.testing.assert_allclose(out[bg], rgb[bg])                # class 0 untouched
    for c in (1, 2):
        sel = mask == c
        expected = (1 - alpha) * rgb[sel] + alpha * CLASS_COLORS[c]
        np.testing.assert_allclose(out[sel], expected)
    # on a black image, class 1 is exactly alpha x orange
    black = overlay(np.zeros((4, 4)), np.ones((4, 4), dtype=int), alpha=0.5)
    np.testing.assert_allclose(black[0, 0], 0.5 * CLASS_COLORS[1])
    np.testing.assert_allclose(black[0, 0], [0.45, 0.31, 0.0])


def test_overlay_alpha_one_gives_pure_class_colour_and_skip_background_false():
    image = np.linspace(0, 1, 16).reshape(4, 4)
    mask = np.array([[0, 1, 2, 3]] * 4)
    out = overlay(image, mask, alpha=1.0)
    for c in (1, 2, 3):
        np.testing.assert_allclose(out[mask == c], np.broadcast_to(CLASS_COLORS[c], (4, 3)))
    painted = overlay(image, mask, alpha=1.0, skip_background=False)
    np.testing.assert_allclose(painted[mask == 0], np.zeros((4, 3)))   # class 0 is black
    # the input image is not modified
    np.testing.assert_array_equal(image, np.linspace(0, 1, 16).reshape(4, 4))


def test_overlay_accepts_bool_torch_and_channel_layouts():
    image = np.random.default_rng(1).random((6, 6))
    mask = np.eye(6, dtype=bool)
    ref = overlay(image, mask.astype(int))
    np.testing.assert_allclose(overlay(image, mask), ref)
    np.testing.assert_allclose(overlay(torch.from_numpy(image), torch.from_numpy(mask)), ref)
    np.testing.assert_allclose(overlay(image[None], mask), ref)             # 1 x H x W
    np.testing.assert_allclose(overlay(image[..., None], mask), ref)        # H x W x 1
    rgb = np.stack([image, image, image])                                   # 3 x H x W
    np.testing.assert_allclose(overlay(rgb, mask), ref)
    # a constant image becomes black rather than nan
    out = overlay(np.full((3, 3), 7.0), np.zeros((3, 3), int))
    assert np.isfinite(out).all() and out.max() == 0


def test_overlay_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"mask shape \(4, 5\) does not match image shape \(4, 4\)"):
        overlay(np.zeros((4, 4)), np.zeros((4, 5), dtype=int))
    with pytest.raises(ValueError, match="at most 8 classes"):
        overlay(np.zeros((4, 4)), np.full((4, 4), 8))
    with pytest.raises(ValueError, match="expected an H x W"):
        overlay(np.zeros((2, 4, 4, 4)), np.zeros((4, 4), dtype=int))


def test_class_cmap():
    cmap = class_cmap(3)
    assert cmap.N == 3
    np.testing.assert_allclose(cmap(1)[:3], CLASS_COLORS[1])
    assert class_cmap().N == 2


def test_show_panels():
    image = np.random.default_rng(2).random((16, 16))
    mask = (image > 0.5).astype(int)
    axes = show_panels(image, mask, 1 - mask)
    assert len(axes) == 3
    assert [ax.get_title() for ax in axes] == ["image", "truth", "prediction"]
    shown = axes[1].get_images()[0].get_array()
    np.testing.assert_allclose(np.asarray(shown), overlay(image, mask))
    assert len(show_panels(image)) == 1
    axes = show_panels(image, mask, titles=("EM", "membranes"))
    assert [ax.get_title() for ax in axes] == ["EM", "membranes"]
    fig, own = plt.subplots(1, 2)
    assert show_panels(image, mask, axes=own)[0] is own[0]
    fig.canvas.draw()


def test_show_grid():
    images = np.random.default_rng(3).random((5, 8, 8))
    masks = (images > 0.7).astype(int)
    fig = show_grid(images, masks, ncols=3, titles=[f"#{i}" for i in range(5)])
    assert len(fig.axes) == 6                              # 2 rows x 3 columns
    assert sum(bool(ax.get_images()) for ax in fig.axes) == 5
    assert fig.axes[4].get_title() == "#4"
    fig.canvas.draw()
    fig = show_grid(torch.from_numpy(images[:2]), ncols=4)
    assert len(fig.axes) == 2


def test_plot_history_with_real_fit_history(tmp_path):
    from unet_teach.data import synthetic_membranes
    from unet_teach.models import UNet
    from unet_teach.train import fit

    torch.manual_seed(0)
    data = synthetic_membranes(4, 16, seed=0)
    h = fit(UNet(1, 2, depth=1, base_width=2), data, data, epochs=2, device="cpu", progress=False)
    axes = plot_history(h)
    assert len(axes) == 2
    lines = axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["train loss", "validation loss"]
    np.testing.assert_allclose(lines[0].get_ydata(), h["train_loss"])
    np.testing.assert_allclose(axes[1].get_lines()[1].get_ydata(), h["val_dice"], equal_nan=True)
    assert axes[1].get_ylim() == (0, 1)
    axes[0].figure.savefig(tmp_path / "history.png")
    assert (tmp_path / "history.png").stat().st_size > 1000
    no_val = plot_history({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.2], "val_loss": [],
                           "val_accuracy": [], "val_dice": []})
    assert len(no_val) == 1 and len(no_val[0].get_lines()) == 1
