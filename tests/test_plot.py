"""Overlays, panels, grids and training curves (unet_teach.plot), the book's diagrams
(unet_teach.diagrams) and its page plumbing (unet_teach.page), drawn with the Agg backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from unet_teach import page
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


# ----------------------------------------------------------------------------- diagrams

def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_draw_roadmap_boxes_arrows_and_styles():
    from matplotlib.patches import FancyBboxPatch
    from matplotlib.text import Annotation
    from unet_teach.diagrams import draw_roadmap

    chapters = [(1, "pixels", "written"), (2, "patches", "written"), (3, "U-Net", "written"),
                (4, "speed", "planned")]
    ax = draw_roadmap(chapters, highlight=2, ncols=3)
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == 4
    assert [b.get_linestyle() for b in boxes].count("--") == 1           # one planned
    np.testing.assert_allclose(boxes[1].get_facecolor()[:3], CLASS_COLORS[1])  # highlighted
    arrows = [t for t in ax.texts if isinstance(t, Annotation)]
    assert len(arrows) == 3                                              # n - 1 arrows
    assert "4. speed\n(planned)" in _texts(ax)
    # the snake layout: chapter 4 starts the second row under chapter 3 (right column)
    assert boxes[3].get_x() == boxes[2].get_x() and boxes[3].get_y() < boxes[2].get_y()
    with pytest.raises(ValueError, match="'written' or 'planned'"):
        draw_roadmap([(1, "pixels", "done")])
    ax.figure.canvas.draw()


def test_draw_pixel_classification_draws_softmax_and_argmax_of_the_scores():
    from unet_teach.diagrams import draw_pixel_classification

    rng = np.random.default_rng(0)
    image = rng.random((6, 7))
    scores = rng.normal(size=(3, 6, 7))
    ax = draw_pixel_classification(image, torch.from_numpy(scores),
                                   class_names=("a", "b", "c"))
    pictures = [np.asarray(im.get_array()) for im in ax.get_images()]
    assert len(pictures) == 1 + 3 + 3 + 1                # image, scores, probs, labels
    # independent softmax: exp / sum of exp, per pixel
    expected = np.exp(scores) / np.exp(scores).sum(axis=0)
    for c in range(3):
        assert any(p.shape == expected[c].shape and np.allclose(p, expected[c])
                   for p in pictures), f"P(class {c}) is not drawn"
        assert any(p.shape == scores[c].shape and np.allclose(p, scores[c])
                   for p in pictures), f"the scores of class {c} are not drawn"
    np.testing.assert_allclose(pictures[-1], overlay(image, scores.argmax(axis=0)))
    assert {"net", "softmax\nover K", "argmax\nover K"} <= set(_texts(ax))
    with pytest.raises(ValueError, match="2 class names for 3 score maps"):
        draw_pixel_classification(image, scores)


def test_draw_confusion_pixels_counts_a_hand_worked_case():
    from unet_teach.diagrams import draw_confusion_pixels

    pred = np.array([[1, 1, 0], [0, 0, 0]])
    truth = np.array([[1, 0, 1], [1, 0, 0]])             # TP 1, FP 1, FN 2, TN 2
    ax = draw_confusion_pixels(pred, truth)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["TP (found): 1", "FP (wrongly claimed): 1", "FN (missed): 2",
                      "TN (correctly left out): 2"]
    formula = "".join(_texts(ax))
    assert "= 2 / 5 = 0.400" in formula                  # Dice 2*1 / (2 + 1 + 2)
    assert "= 1 / 4 = 0.250" in formula                  # IoU 1 / (1 + 1 + 2)
    assert ax.get_xlabel() == "x (px)" and ax.get_ylabel() == "y (px)"
    with pytest.raises(ValueError, match="H x W of one shape"):
        draw_confusion_pixels(pred, truth[:1])


def test_draw_sliding_window_shows_the_mirrored_patch():
    from unet_teach.diagrams import draw_sliding_window
    from unet_teach.patches import patch_preset

    image = np.random.default_rng(4).random((20, 24))
    ax = draw_sliding_window(image, 1, 22, 9, net=patch_preset("w17"),
                             label_map=np.ones((20, 24), int))
    patch = np.asarray(ax.get_images()[1].get_array())
    # independent: numpy's reflect padding, then the 9 x 9 square around (1, 22)
    expected = np.pad(image, 4, mode="reflect")[1:10, 22:31]
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(patch[..., 0], expected)
    labelled = np.ma.getmaskarray(ax.get_images()[2].get_array())
    assert (~labelled).sum() == 1 * 24 + 22              # raster order up to (1, 22)
    assert any("conv 4×4 (16) + pool" in t for t in _texts(ax))


def test_draw_patch_classifier_labels_n4_map_sizes():
    from unet_teach.diagrams import draw_patch_classifier
    from unet_teach.patches import patch_preset

    ax = draw_patch_classifier(patch_preset("n4"))
    texts = _texts(ax)
    # Ciresan's N4, worked by hand: 95 -conv4-> 92 -pool-> 46 -conv5-> 42 -pool-> 21
    # -conv4-> 18 -pool-> 9 -conv4-> 6 -pool-> 3; then 48*3*3 = 432 -> 200 -> 2
    sides = [92, 46, 42, 21, 18, 9, 6, 3]
    assert "1 ×\n95 × 95" in texts                  # maps on one line, the side below
    for s in sides:
        assert f"48 ×\n{s} × {s}" in texts, s
    for units in ("432", "200", "2"):
        assert units in texts
    assert texts.count("conv 4×4") == 3 and texts.count("conv 5×5") == 1


def test_draw_receptive_field_bars_match_a_hand_worked_n4():
    from matplotlib.patches import Rectangle
    from unet_teach.diagrams import draw_receptive_field
    from unet_teach.patches import patch_preset

    ax = draw_receptive_field(patch_preset("n4").features)
    widths = [p.get_width() for p in ax.patches if isinstance(p, Rectangle)]
    # size += (k - 1) * jump; jump *= stride, from the input pixel up
    assert widths == [1, 4, 5, 13, 15, 27, 31, 55, 63]
    assert "63 px, stride 16" in _texts(ax)
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "8: pool 2×2"
    assert ax.get_xlabel()
    with pytest.raises(ValueError, match="no Conv2d"):
        draw_receptive_field([torch.nn.ReLU()])


def test_draw_fc_as_conv_output_size():
    from unet_teach.diagrams import draw_fc_as_conv

    ax = draw_fc_as_conv(32, 6, 96, larger=10)
    texts = "\n".join(_texts(ax))
    assert "C × s × s = 32 × 6 × 6" in texts
    assert "96 × 5 × 5" in texts                          # 10 - 6 + 1 = 5 windows a side
    assert "96 × 32 × 6 × 6" in texts
    with pytest.raises(ValueError, match="at least"):
        draw_fc_as_conv(32, 6, 96, larger=4)


def test_draw_unet_shows_the_sizes_the_model_computes():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.patches import FancyArrowPatch
    from unet_teach.models import UNet, preset
    from unet_teach.diagrams import draw_unet

    ax = draw_unet(preset("paper"), 572)
    texts = {t.get_text() for t in ax.texts}
    # the paper's figure: 572 in, two valid convs to 568, crops to 392, 388 out, 1024 deep
    for label in ["572²", "570²", "568²", "392²", "388²", "1024", "64", "2"]:
        assert label in texts, label
    assert "388² out" in ax.get_title()
    grey = [p for p in ax.patches if isinstance(p, FancyArrowPatch)
            and matplotlib.colors.to_hex(p.get_edgecolor()) == "#8c8c8c"]
    assert len(grey) == 4                                   # one skip per level
    ax = draw_unet(UNet(1, 2, depth=2, base_width=4, skips=False), 32)
    grey = [p for p in ax.patches if isinstance(p, FancyArrowPatch)
            and matplotlib.colors.to_hex(p.get_edgecolor()) == "#8c8c8c"]
    assert not grey and "32² out" in ax.get_title()
    import pytest
    with pytest.raises(ValueError, match="cannot pass through"):
        draw_unet(preset("paper"), 570)


def test_draw_unet_no_arrow_crosses_a_label():
    # the side labels (570², ...) and channel counts stay clear of every arrow, at the
    # figure sizes the book draws them (chapter 6's paper net and small nets)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch
    from unet_teach.models import UNet, preset
    from unet_teach.diagrams import draw_unet
    from unet_teach.page import FIGURE_WIDTH

    for net, size, height in [(preset("paper"), 572, 5.8),
                              (UNet(1, 2, depth=3, base_width=8), 48, 4.6)]:
        fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, height))
        draw_unet(net, size, ax=ax)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        labels = [t.get_window_extent(renderer) for t in ax.texts]
        arrows = [p.get_window_extent(renderer) for p in ax.patches
                  if isinstance(p, FancyArrowPatch)]
        assert len(labels) > 20 and len(arrows) > 20
        crossed = [(t.bounds, a.bounds) for t in labels for a in arrows if t.overlaps(a)]
        assert not crossed, crossed
        plt.close(fig)


def test_draw_unet_follows_a_trained_batch_norm_net_without_changing_it():
    # batch norm keeps running statistics on the CPU: the meta-device pass must not mix
    # devices, nor update those statistics
    import matplotlib
    import torch
    matplotlib.use("Agg")
    from unet_teach.models import UNet
    from unet_teach.diagrams import draw_unet

    net = UNet(1, 2, depth=3, base_width=4, padding="same", norm="batch")
    net(torch.rand(2, 1, 32, 32))                           # running stats move off 0/1
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for mode in (net.train, net.eval):
        mode()
        ax = draw_unet(net, 48)
        assert "48² out" in ax.get_title()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.device.type == "cpu" for p in net.parameters())


def test_glue_without_the_book_build_stack(monkeypatch, capsys):
    # myst-nb installed but its glue's own imports (docutils) missing, as on the GPU check's
    # machine: the value comes back instead of the chapter failing
    import sys
    from unet_teach.page import glue
    monkeypatch.setitem(sys.modules, "myst_nb.ext.glue", None)
    monkeypatch.delenv("UNET_TEACH_BOOK_BUILD", raising=False)
    assert glue("x", np.float32(0.5), display=True) is None
    assert "x = 0.5" in capsys.readouterr().out


def test_glue_prints_only_outside_the_book_build(monkeypatch, capsys):
    from unet_teach.page import glue
    monkeypatch.delenv("UNET_TEACH_BOOK_BUILD", raising=False)
    glue("ratio", 2 / 3)
    glue("name", "NVIDIA H200")
    assert capsys.readouterr().out == "ratio = 0.6667\nname = NVIDIA H200\n"
    monkeypatch.setenv("UNET_TEACH_BOOK_BUILD", "1")          # the book pastes it instead
    glue("ratio", 2 / 3)
    assert capsys.readouterr().out == ""


def test_the_figure_hook_records_width_and_smallest_text(tmp_path):
    # in a fresh interpreter: the hook replaces matplotlib's print_figure for the process
    log = tmp_path / "figures.jsonl"
    code = (
        "import io, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
        "from unet_teach import page\n"
        "fig, ax = plt.subplots(figsize=(15, 3), dpi=100)\n"
        "ax.set_title('big'); ax.text(0.5, 0.5, 'tiny', fontsize=7)\n"
        "fig.canvas.print_figure(io.BytesIO(), format='png', dpi=100)\n")
    env = {**os.environ, page.FIGURE_LOG: str(log)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["png_width"] == 1500 and record["dpi"] == 100
    assert (record["min_font_pt"], record["min_font_text"]) == (7, "tiny")
    # 7 pt at 100 dpi is 9.7 px, shrunk by 676 / 1500: far below the 9 px the book needs
    assert page.rendered_text_px(7, 100, 1500) < page.MIN_TEXT_PX
    assert page.rendered_text_px(10, 100, 960) >= page.MIN_TEXT_PX


def test_mean_sd_is_the_sample_mean_and_standard_deviation():
    import statistics
    runs = [0.912, 0.887, 0.905, 0.871, 0.899]
    m, s = page.mean_sd(runs)
    assert m == pytest.approx(statistics.mean(runs)) and s == pytest.approx(statistics.stdev(runs))
    assert page.mean_sd(np.array(runs)) == (m, s) == page.mean_sd(torch.tensor(runs,
                                                                               dtype=torch.float64))
    assert np.isnan(page.mean_sd([0.5])[1])                # one run: no spread
    with pytest.raises(ValueError, match="one number per run"):
        page.mean_sd([])


def test_mean_sd_text_prints_what_the_chapters_typed():
    runs = np.array([0.912, 0.887, 0.905, 0.871, 0.899])
    by_hand = f"{runs.mean():.3f} ± {runs.std(ddof=1):.3f}"       # as chapters wrote it
    assert page.mean_sd_text(runs) == by_hand == "0.895 ± 0.016"
    assert page.mean_sd_text(runs, 1) == "0.9 ± 0.0"
    assert page.mean_sd_text([3.25]) == "3.250"             # one run: the value alone
