"""The book's diagrams, drawn by code: schematic figures made of matplotlib patches and
arrows. Each one is drawn from the objects a chapter uses (a net, its layer list, its
output), so it cannot drift from the code:

* :func:`draw_roadmap` - the book's chapters as boxes in reading order;
* :func:`draw_pixel_classification` - image -> scores -> softmax -> argmax, from a net's output;
* :func:`draw_confusion_pixels` - the TP / FP / FN / TN counting behind Dice and IoU;
* :func:`draw_sliding_window`, :func:`draw_patch_classifier`, :func:`draw_receptive_field`,
  :func:`draw_fc_as_conv` - the patch classifier and how it becomes fully convolutional;
* :func:`draw_unet` - a U-Net as the paper draws it, from the network's own shapes.

They are drawn at most ``FIGURE_WIDTH`` inches wide, so that no label renders below the
page's smallest text size (see :mod:`unet_teach.page`).
"""

from __future__ import annotations

import textwrap

import numpy as np
import torch
import matplotlib.pyplot as plt
from matplotlib import patches as mpatches

from .page import FIGURE_WIDTH
from .plot import CLASS_COLORS, _gray, _numpy, class_cmap, overlay

_INK = "0.15"                       # lines and text
_PAPER = "0.96"                     # box fill
_ACCENT = CLASS_COLORS[1]           # the book's orange: the thing the figure is about
_SECOND = CLASS_COLORS[2]           # sky blue: the thing it is compared with


def _axes(ax, figsize):
    """``ax``, or the axes of a new figure of ``figsize``."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _box(ax, x, y, w, h, text="", *, face=_PAPER, edge=_INK, dashed=False, fontsize=10,
         color=_INK, lw=1.2):
    """A rounded box with its lower-left corner at ``(x, y)``, text centred; returns the patch."""
    box = mpatches.FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08",
                                  fc=face, ec=edge, lw=lw, ls="--" if dashed else "-")
    ax.add_patch(box)
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize,
                color=color)
    return box


def _arrow(ax, start, end, text=None, *, color=_INK, fontsize=10, offset=0.12, lw=1.3,
           ls="-"):
    """An arrow from ``start`` to ``end`` (data coordinates), labelled above its middle."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=color, lw=lw, ls=ls,
                                shrinkA=2, shrinkB=2, mutation_scale=12))
    if text:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        ax.text(mx, my + offset, text, ha="center", va="bottom", fontsize=fontsize,
                color=color)


def _finish(ax, xlim, ylim):
    """Equal scale, the given limits, no frame: a diagram, not a plot."""
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def draw_roadmap(chapters, ax=None, highlight=None, ncols: int = 4):
    """The book as one picture: a box per chapter, arrows in reading order.

    The boxes run left to right, then right to left on the next row (so every arrow is
    short); planned chapters are dashed and grey, the ``highlight`` chapter is orange.

    Args:
        chapters: ``(number, title, status)`` per chapter, in reading order; ``status`` is
            ``"written"`` or ``"planned"``.
        ax: axes to draw into (default: a new figure).
        highlight: the number of the chapter to mark ("you are here").
        ncols: boxes per row.

    Returns:
        The matplotlib axes.

    Example:
        >>> ax = draw_roadmap([(1, "pixels", "written"), (2, "patches", "planned")])
        >>> isinstance(ax, plt.Axes)
        True
    """
    chapters = [tuple(c) for c in chapters]
    for c in chapters:
        if len(c) != 3 or c[2] not in ("written", "planned"):
            raise ValueError(f"each chapter is (number, title, 'written' or 'planned'), got {c!r}")
    nrows = int(np.ceil(len(chapters) / ncols))
    ax = _axes(ax, (FIGURE_WIDTH, (1.45 * nrows + 0.3) * FIGURE_WIDTH / (2.9 * ncols)))
    w, h, gap_x, gap_y = 2.2, 0.9, 0.7, 0.55
    centres = []
    for i, (number, title, status) in enumerate(chapters):
        row, k = divmod(i, ncols)
        col = k if row % 2 == 0 else ncols - 1 - k          # snake: every arrow is short
        x, y = col * (w + gap_x), -row * (h + gap_y)
        planned = status == "planned"
        face = _ACCENT if number == highlight else ("white" if planned else _PAPER)
        label = textwrap.fill(f"{number}. {title}", 18)    # 10 pt text fits 18 a line
        _box(ax, x, y, w, h, label + ("\n(planned)" if planned else ""),
             face=face, dashed=planned, edge="0.55" if planned else _INK,
             color="0.45" if planned else _INK, fontsize=10.5)
        centres.append((x, y))
    for i in range(len(chapters) - 1):
        (x0, y0), (x1, y1) = centres[i], centres[i + 1]
        planned = chapters[i + 1][2] == "planned"
        if y0 == y1:                                        # same row: side to side
            left_to_right = x1 > x0
            start = (x0 + w if left_to_right else x0, y0 + h / 2)
            end = (x1 if left_to_right else x1 + w, y1 + h / 2)
        else:                                               # next row: straight down
            start, end = (x0 + w / 2, y0), (x1 + w / 2, y1 + h)
        _arrow(ax, start, end, color="0.55" if planned else _INK, ls="--" if planned else "-")
    right = ncols * (w + gap_x) - gap_x
    return _finish(ax, (-0.1, right + 0.1), (-(nrows - 1) * (h + gap_y) - 0.1, h + 0.1))


def _place(ax, picture, x, y, size, **kwargs):
    """Show an image as a ``size``-wide square with its lower-left corner at ``(x, y)``."""
    return ax.imshow(picture, extent=(x, x + size, y, y + size), interpolation="nearest",
                     **kwargs)


def draw_pixel_classification(image, scores, ax=None, class_names=("interior", "membrane"),
                              colorbar: bool = True):
    """Per-pixel classification as a picture: image -> K score maps -> softmax -> K
    probability maps -> argmax -> label map, drawn from a net's real output.

    Args:
        image: ``H x W`` input image.
        scores: ``K x H x W`` raw scores the net gave for it (numpy or torch).
        ax: axes to draw into (default: a new figure).
        class_names: ``K`` names for the maps' labels.
        colorbar: add a colour bar for the probability maps.

    Returns:
        The matplotlib axes.

    Example:
        >>> ax = draw_pixel_classification(np.zeros((8, 8)), np.zeros((2, 8, 8)))
        >>> isinstance(ax, plt.Axes)
        True
    """
    scores = torch.as_tensor(_numpy(scores), dtype=torch.float64)
    if scores.ndim != 3:
        raise ValueError(f"scores must be K x H x W, got shape {tuple(scores.shape)}")
    k = scores.shape[0]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for {k} score maps")
    probs = scores.softmax(dim=0).numpy()                     # K x H x W, sums to 1 per pixel
    labels = probs.argmax(axis=0)                             # H x W
    ax = _axes(ax, (FIGURE_WIDTH, 2.8))
    size, step, gap = 1.0, 0.32, 2.0                          # panel side, stack offset, gap
    stack = size + step * (k - 1)
    x_img, x_sc = 0.0, size + gap
    x_pr = x_sc + stack + gap
    x_lab = x_pr + stack + gap
    _place(ax, _gray(image), x_img, 0, size)
    ax.text(x_img + size / 2, -0.12, "image\n1 × H × W", ha="center", va="top", fontsize=10)
    prob_im = None
    for c in reversed(range(k)):                              # class 0 drawn in front
        dx, dy = step * c, step * c
        _place(ax, scores[c].numpy(), x_sc + dx, dy, size, cmap="magma")
        prob_im = _place(ax, probs[c], x_pr + dx, dy, size, cmap="viridis", vmin=0, vmax=1)
        for x0 in (x_sc, x_pr):
            ax.add_patch(mpatches.Rectangle((x0 + dx, dy), size, size, fill=False, ec=_INK,
                                            lw=0.8))
        # names right of the stack, the back map's at its top, the front one's at its foot
        y_name, va = (dy + size, "top") if c == k - 1 else (dy, "bottom")
        for x0, sym in ((x_sc, "a"), (x_pr, "p")):
            ax.text(x0 + stack + 0.05, y_name, f"${sym}_{c}$: {class_names[c]}",
                    fontsize=10.5, va=va)
    ax.text(x_sc + stack / 2, -0.12, f"scores\nK × H × W (K = {k})", ha="center", va="top",
            fontsize=10)
    ax.text(x_pr + stack / 2, -0.12, "probabilities\nsum to 1 at each pixel", ha="center",
            va="top", fontsize=10)
    _place(ax, overlay(image, labels), x_lab, 0, size)
    ax.text(x_lab + size / 2, -0.12, "label map, H × W:\none class a pixel", ha="center",
            va="top", fontsize=10)
    mid = size / 2
    _arrow(ax, (x_img + size, mid), (x_sc, mid), "net")
    _arrow(ax, (x_sc + stack + 0.1, mid), (x_pr, mid), "softmax\nover K")
    _arrow(ax, (x_pr + stack + 0.1, mid), (x_lab, mid), "argmax\nover K")
    if colorbar and prob_im is not None:
        bar = ax.figure.colorbar(prob_im, ax=ax, fraction=0.025, pad=0.04)
        bar.set_label("probability")
    return _finish(ax, (-0.05, x_lab + size + 0.05), (-0.55, stack + 0.1))


# TP, FP, FN, TN colours: found, wrongly claimed, missed, correctly left out
_OUTCOME_COLORS = np.array([_ACCENT, CLASS_COLORS[4], CLASS_COLORS[6], [0.92, 0.92, 0.92]])


def draw_confusion_pixels(pred, truth, ax=None, cls: int = 1):
    """The counting behind Dice and IoU: every pixel of a (small) label map coloured by what
    the prediction did with class ``cls`` - true positive, false positive, false negative or
    true negative - with the four counts and the Dice and IoU they give.

    Args:
        pred, truth: ``H x W`` label maps (a few dozen pixels a side reads best).
        ax: axes to draw into (default: a new figure).
        cls: the class counted as "positive".

    Returns:
        The matplotlib axes; the legend entries read ``"TP (found): 12"`` and so on.

    Example:
        >>> ax = draw_confusion_pixels(np.eye(4, dtype=int), np.eye(4, dtype=int))
        >>> isinstance(ax, plt.Axes)
        True
    """
    pred, truth = _numpy(pred) == cls, _numpy(truth) == cls
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(f"pred and truth must be H x W of one shape, got {pred.shape} "
                         f"and {truth.shape}")
    outcome = np.select([pred & truth, pred & ~truth, ~pred & truth], [0, 1, 2], default=3)
    counts = np.bincount(outcome.ravel(), minlength=4)
    tp, fp, fn, _ = counts
    ax = _axes(ax, (6.5, 4.2))
    h, w = outcome.shape
    ax.imshow(_OUTCOME_COLORS[outcome], interpolation="nearest")
    ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
    ax.grid(which="minor", color="white", lw=0.6)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    names = ["TP (found)", "FP (wrongly claimed)", "FN (missed)", "TN (correctly left out)"]
    handles = [mpatches.Patch(fc=col, ec=_INK, label=f"{name}: {n}")
               for col, name, n in zip(_OUTCOME_COLORS, names, counts)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=10,
              frameon=False)
    dice_value = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    iou_value = tp / (tp + fp + fn) if tp + fp + fn else float("nan")
    ax.text(1.04, 0.28, f"Dice = 2TP / (2TP + FP + FN)\n       = {2 * tp} / {2 * tp + fp + fn}"
            f" = {dice_value:.3f}\nIoU  = TP / (TP + FP + FN)\n       = {tp} / {tp + fp + fn}"
            f" = {iou_value:.3f}", transform=ax.transAxes, va="top", fontsize=10,
            family="monospace")
    return ax


def draw_sliding_window(image, row: int, col: int, window: int, ax=None, net=None,
                        label_map=None):
    """The sliding window at work: the patch around pixel ``(row, col)`` (borders
    mirrored) is cut out, classified by a CNN, and the answer becomes that one pixel of
    the label map; the window then moves to the next pixel.

    Args:
        image: ``H x W`` image.
        row, col: the pixel being labelled.
        window: odd patch size.
        ax: axes to draw into (default: a new figure).
        net: optional :class:`~unet_teach.patches.PatchClassifier`; its stages are written
            in the CNN box.
        label_map: optional ``H x W`` labels; the pixels before ``(row, col)`` in raster
            order are shown as already labelled.

    Returns:
        The matplotlib axes.

    Example:
        >>> ax = draw_sliding_window(np.zeros((20, 20)), 5, 5, 9)
        >>> isinstance(ax, plt.Axes)
        True
    """
    from .patches import extract_patch            # patches imports nothing from here

    img = _numpy(image).astype(np.float64)
    h, w = img.shape
    patch = extract_patch(img, row, col, window)
    ax = _axes(ax, (FIGURE_WIDTH, 2.8))
    size, gap, box = 1.0, 0.85, 1.9             # panel side, gap, CNN box width
    sx, sy = size / w, size / h                   # image pixel -> diagram units
    _place(ax, _gray(img), 0, 0, size)
    r = window // 2
    # the window (it may stick out of the image: that part is mirrored)
    ax.add_patch(mpatches.Rectangle(((col - r) * sx, size - (row + r + 1) * sy),
                                    window * sx, window * sy, fill=False, ec=_ACCENT, lw=2))
    ax.plot([(col + 0.5) * sx], [size - (row + 0.5) * sy], "+", color=_ACCENT, ms=9, mew=2)
    ax.text(size / 2, -0.12, f"image, H × W = {h} × {w}\npixel ({row}, {col})", ha="center",
            va="top", fontsize=10)
    x_patch = size + gap
    _place(ax, _gray(patch), x_patch, 0, size)
    ax.add_patch(mpatches.Rectangle((x_patch, 0), size, size, fill=False, ec=_ACCENT, lw=2))
    ax.plot([x_patch + size / 2], [size / 2], "+", color=_ACCENT, ms=12, mew=2)
    ax.text(x_patch + size / 2, -0.12, f"its patch, {window} × {window}\n(borders mirrored)",
            ha="center", va="top", fontsize=10)
    _arrow(ax, (size, size / 2), (x_patch, size / 2), "cut out")
    x_net = x_patch + size + gap
    if net is not None:
        stages = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
        fc = [m.out_features for m in net.classifier if isinstance(m, torch.nn.Linear)]
        inside = "\n".join([f"conv {m.kernel_size[0]}×{m.kernel_size[1]} ({m.out_channels})"
                            " + pool" for m in stages] + ["fc " + " → ".join(map(str, fc))])
    else:
        inside = "conv + pool\n...\nfully connected"
    _box(ax, x_net, -0.1, box, 1.2, "CNN\n" + inside, fontsize=10)
    _arrow(ax, (x_patch + size, size / 2), (x_net, size / 2), "classify")
    x_out = x_net + box + gap
    shown = np.full((h, w), np.nan)
    if label_map is not None:
        done = np.arange(h * w).reshape(h, w) < row * w + col     # raster order so far
        shown[done] = _numpy(label_map)[done]
    _place(ax, np.ma.masked_invalid(shown), x_out, 0, size, cmap=class_cmap(2), vmin=0, vmax=1)
    ax.add_patch(mpatches.Rectangle((x_out, 0), size, size, fill=False, ec=_INK, lw=0.8))
    ax.add_patch(mpatches.Rectangle((x_out + col * sx, size - (row + 1) * sy), sx, sy,
                                    fc=_ACCENT, ec=_ACCENT, lw=1.5))
    ax.add_patch(mpatches.Circle((x_out + (col + 0.5) * sx, size - (row + 0.5) * sy),
                                 0.06, fill=False, ec=_ACCENT, lw=2))
    ax.text(x_out + size / 2, -0.12, "label map: one pixel\nper forward pass",
            ha="center", va="top", fontsize=10)
    _arrow(ax, (x_net + box, size / 2), (x_out, size / 2), "label of\nthe centre")
    return _finish(ax, (-0.05, x_out + size + 0.05), (-0.5, size + 0.15))


def _feature_shapes(net) -> list[tuple[str, tuple[int, ...]]]:
    """``[(layer, shape without batch)]`` after each conv and pool of a patch classifier,
    found by running a shape-only ("meta") tensor through ``net.features``."""
    x = torch.zeros(1, net.in_channels, net.window, net.window, device="meta")
    shapes = [("input", tuple(x.shape[1:]))]
    for layer in net.features:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            shapes.append((f"conv {layer.kernel_size[0]}×{layer.kernel_size[1]}",
                           tuple(x.shape[1:])))
        elif isinstance(layer, torch.nn.MaxPool2d):
            shapes.append(("max-pool 2×2", tuple(x.shape[1:])))
    return shapes


def draw_patch_classifier(net, ax=None):
    """A patch classifier drawn from its own layers: one slab per feature map, its height
    proportional to the map's side and labelled ``channels × size × size``, then the fully
    connected layers as columns labelled with their widths. The sizes come from running a
    shape-only tensor through ``net.features``, so the picture is the net's, not a copy.

    Args:
        net: a :class:`~unet_teach.patches.PatchClassifier` (e.g. ``patch_preset("n4")``).
        ax: axes to draw into (default: a new figure).

    Returns:
        The matplotlib axes.

    Example:
        >>> from unet_teach.patches import patch_preset
        >>> ax = draw_patch_classifier(patch_preset("w17"))
        >>> isinstance(ax, plt.Axes)
        True
    """
    shapes = _feature_shapes(net)
    fc = [m.out_features for m in net.classifier if isinstance(m, torch.nn.Linear)]
    ax = _axes(ax, (FIGURE_WIDTH, 3.2))
    top = net.window
    scale = 2.2 / top                                      # the input's side is 2.2 units
    x, step, depth_prev = 0.0, 1.2, 0.0
    for i, (name, (c, s, _)) in enumerate(shapes):
        side = max(s * scale, 0.06)
        depth = 0.12 + 0.25 * np.log2(max(c, 1)) / np.log2(64)   # wider slab = more maps
        face = "white" if i == 0 else (_SECOND if "conv" in name else _PAPER)
        ax.add_patch(mpatches.Rectangle((x, -side / 2), depth, side, fc=face, ec=_INK, lw=1))
        ax.text(x + depth / 2, -side / 2 - 0.1, f"{c} ×\n{s} × {s}", ha="center", va="top",
                fontsize=10)                                 # two lines: maps, then side
        if i > 0:
            _arrow(ax, (x - step + depth_prev, 0), (x, 0))
            ax.text(x - step / 2 + depth_prev / 2, 0.12, name, ha="center", va="bottom",
                    fontsize=10.5, rotation=90)
        depth_prev = depth
        x += step
    flat = net.feature_channels * net.feature_size ** 2
    widths = [flat, *fc]
    names = ["flatten", *["fully connected"] * len(fc)]
    for i, (units, name) in enumerate(zip(widths, names)):
        height = 0.35 + 1.6 * np.log10(units) / np.log10(max(widths))
        ax.add_patch(mpatches.Rectangle((x, -height / 2), 0.14, height, fc=_PAPER, ec=_INK,
                                        lw=1))
        ax.text(x + 0.07, -height / 2 - 0.1, f"{units}", ha="center", va="top", fontsize=10)
        _arrow(ax, (x - step + depth_prev, 0), (x, 0))
        ax.text(x - step / 2 + depth_prev / 2, 0.12, name, ha="center", va="bottom",
                fontsize=10.5, rotation=90)
        depth_prev = 0.14
        x += step
    ax.text(x - step + 0.07, 1.05, f"{fc[-1]} class\nscores", ha="center", va="bottom",
            fontsize=10)
    return _finish(ax, (-0.1, x - step + 0.4), (-1.6, 1.45))


def draw_receptive_field(layers, ax=None):
    """How the receptive field grows, layer by layer: for every prefix of a conv / pool
    stack, a bar as wide as the input square one of its features sees, with dots at the
    input positions of neighbouring features (the stride). Computed with
    :func:`unet_teach.cost.receptive_field` on each prefix.

    Args:
        layers: a module (e.g. ``net.features``) or a list of layers; activations and other
            per-position layers are skipped.
        ax: axes to draw into (default: a new figure).

    Returns:
        The matplotlib axes: x = input pixels from the centre, one row per layer.

    Example:
        >>> ax = draw_receptive_field([torch.nn.Conv2d(1, 4, 3), torch.nn.MaxPool2d(2)])
        >>> isinstance(ax, plt.Axes)
        True
    """
    from .cost import receptive_field

    if isinstance(layers, torch.nn.Module):
        layers = [m for m in layers.modules() if not list(m.children())]
    spatial = [m for m in layers
               if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d))]
    if not spatial:
        raise ValueError("no Conv2d or pooling layer to follow")
    rows = [("input pixel", 1, 1)]
    for i, layer in enumerate(spatial):
        size, jump = receptive_field(spatial[:i + 1])
        k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        kind = "conv" if isinstance(layer, torch.nn.Conv2d) else "pool"
        rows.append((f"{i + 1}: {kind} {k}×{k}", size, jump))
    ax = _axes(ax, (9, 0.45 * len(rows) + 1))
    widest = rows[-1][1]
    for y, (name, size, jump) in enumerate(rows):
        face = _SECOND if name.split()[-2:-1] == ["conv"] or "conv" in name else _PAPER
        if y == 0:
            face = "white"
        ax.add_patch(mpatches.Rectangle((-size / 2, y - 0.32), size, 0.64, fc=face, ec=_INK,
                                        lw=1))
        dots = np.arange(-widest, widest + 1, jump)
        dots = dots[np.abs(dots) <= widest / 2]
        ax.plot(dots, np.full(dots.shape, y), ".", color=_INK, ms=3)
        ax.text(widest / 2 + widest * 0.03, y, f"{size} px, stride {jump}", va="center",
                fontsize=10.5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([name for name, _, _ in rows], fontsize=10.5)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(-widest / 2 - widest * 0.03, widest / 2 + widest * 0.3)
    ax.set_xlabel("input pixels, measured from the centre of the receptive field")
    ax.set_ylabel("after layer")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax


def draw_fc_as_conv(channels: int, size: int, units: int, ax=None, larger: int | None = None):
    """A fully connected layer is a convolution. Left: on one window's ``C x s x s``
    feature map, a fully connected layer of ``units`` outputs uses every one of its values.
    Right: the same ``units x C x s x s`` weights as an ``s x s`` kernel sliding over a
    larger map of ``L x L`` give an ``(L - s + 1) x (L - s + 1)`` map of outputs: the fully
    connected layer's answer for every window at once (two positions drawn).

    Args:
        channels, size: the feature map of one window (``PatchClassifier.feature_channels``,
            ``.feature_size``).
        units: outputs of the fully connected layer.
        ax: axes to draw into (default: a new figure).
        larger: side ``L`` of the larger map (default ``size + 3``).

    Returns:
        The matplotlib axes.

    Example:
        >>> ax = draw_fc_as_conv(32, 6, 96)
        >>> isinstance(ax, plt.Axes)
        True
    """
    larger = size + 3 if larger is None else int(larger)
    if larger < size:
        raise ValueError(f"the larger map ({larger}) must be at least the window's map ({size})")
    ax = _axes(ax, (FIGURE_WIDTH, 3.2))
    cell = 2.0 / larger                                     # one feature-map position
    offset = 0.12                                           # the stacked channel sheets

    def grid(x0, y0, n, shade=_PAPER):
        for k in (2, 1, 0):                                 # three sheets stand for C
            ax.add_patch(mpatches.Rectangle((x0 + k * offset, y0 + k * offset), n * cell,
                                            n * cell, fc=shade, ec=_INK, lw=0.8))
        for i in range(1, n):                               # the grid on the front sheet
            ax.plot([x0 + i * cell] * 2, [y0, y0 + n * cell], color="0.6", lw=0.4)
            ax.plot([x0, x0 + n * cell], [y0 + i * cell] * 2, color="0.6", lw=0.4)

    # left: one window, fully connected
    grid(0, 0, size)
    ax.text(size * cell / 2, -0.12, f"one window's features\nC × s × s = {channels} × {size}"
            f" × {size}", ha="center", va="top", fontsize=10.5)
    x_vec = size * cell + 1.5
    n_dots = 7
    ys = np.linspace(0.1, size * cell - 0.1, n_dots)
    for yv in ys:
        ax.add_patch(mpatches.Circle((x_vec, yv), 0.06, fc=_ACCENT, ec=_INK, lw=0.6))
        for xs_, ys_ in [(size * cell, 0), (size * cell, size * cell)]:
            ax.plot([xs_, x_vec - 0.06], [ys_, yv], color="0.75", lw=0.4)
    ax.text(x_vec, -0.12, f"{units}\noutputs", ha="center", va="top", fontsize=10.5)
    ax.text((size * cell + x_vec) / 2, size * cell + 0.45,
            f"fully connected:\n{units} × ({channels}·{size}·{size}) weights", ha="center",
            va="bottom", fontsize=10.5)
    # right: the same weights as an s x s kernel over a larger map
    x_big = x_vec + 1.5
    grid(x_big, 0, larger)
    for (i, j), style in [((0, 0), "-"), ((1, 2), "--")]:   # two kernel positions
        ax.add_patch(mpatches.Rectangle((x_big + j * cell, (larger - size - i) * cell),
                                        size * cell, size * cell, fill=False, ec=_ACCENT,
                                        lw=2, ls=style))
    ax.text(x_big + larger * cell / 2, -0.12, f"a larger map\nC × L × L = {channels} × "
            f"{larger} × {larger}", ha="center", va="top", fontsize=10.5)
    out = larger - size + 1
    x_out = x_big + larger * cell + 2.4
    y_out = (larger - out) * cell / 2
    for k in (2, 1, 0):
        ax.add_patch(mpatches.Rectangle((x_out + k * offset, y_out + k * offset), out * cell,
                                        out * cell, fc=_PAPER, ec=_INK, lw=0.8))
    for (i, j), style in [((0, 0), "-"), ((1, 2), "--")]:
        ax.add_patch(mpatches.Rectangle((x_out + j * cell, y_out + (out - 1 - i) * cell),
                                        cell, cell, fc=_ACCENT, ec=_INK, lw=1, ls=style))
    ax.text(x_out + out * cell / 2, y_out - 0.12, f"{units} × {out} × {out}\none answer per"
            " window", ha="center", va="top", fontsize=10.5)
    _arrow(ax, (x_big + larger * cell + 0.35, larger * cell / 2), (x_out - 0.05,
                                                                    larger * cell / 2),
           f"{size}×{size} conv,\nsame weights\nreshaped to\n{units} × {channels} × {size} × "
           f"{size}", offset=0.1)
    return _finish(ax, (-0.1, x_out + out * cell + 0.5), (-0.7, larger * cell + 1.1))


# --------------------------------------------------------------------------- the U-Net figure

def _unet_maps(net, size: int) -> dict:
    """Follow one ``size x size`` input through ``net`` on the meta device (shapes only) and
    return the feature maps the U-Net figure draws, level by level."""
    from .models import UNet
    if not isinstance(net, UNet):
        raise TypeError(f"expected a unet_teach.models.UNet, got {type(net).__name__}")
    seen: dict = {}

    def keep(key):
        def hook(module, args, out):
            seen.setdefault(key, tuple(out.shape[1:]))          # C, H, W
        return hook

    hooks = []
    convs = lambda block: [m for m in block if isinstance(m, torch.nn.Conv2d)]
    for i, block in enumerate(net.encoder):
        for k, conv in enumerate(convs(block)):
            hooks.append(conv.register_forward_hook(keep(("enc", i, k))))
        hooks.append(net.downs[i].register_forward_hook(keep(("pool", i))))
    for k, conv in enumerate(convs(net.bottleneck)):
        hooks.append(conv.register_forward_hook(keep(("enc", net.depth, k))))
    for j, up in enumerate(net.ups):
        level = net.depth - 1 - j
        hooks.append(up.up.register_forward_hook(keep(("up", level))))
        for k, conv in enumerate(convs(up.conv)):
            hooks.append(conv.register_forward_hook(keep(("dec", level, k))))
    hooks.append(net.head.register_forward_hook(keep(("head",))))
    # Parameters and buffers are swapped for meta tensors for this one call, so a net whose
    # weights live on the CPU or a GPU (batch-norm running statistics included) is
    # followed without computing anything and without changing it.
    meta = {name: torch.empty_like(t, device="meta")
            for name, t in [*net.named_parameters(), *net.named_buffers()]}
    try:
        torch.func.functional_call(
            net, meta, (torch.zeros(1, net.in_channels, size, size, device="meta"),))
    finally:
        for h in hooks:
            h.remove()
    return seen


def draw_unet(net, size: int, ax=None):
    """Draw a U-Net the way the U-Net paper draws it, from the network itself: one bar per
    feature map (its channel count above, its side length beside it), blue arrows for the
    3x3 convolutions, red for the 2x2 down-sampling, green for the up-sampling, grey for the
    copy (and crop) of the skip connections, teal for the head.

    The shapes come from a forward pass on PyTorch's ``meta`` device (nothing is computed),
    so the drawing shows what the code builds: for ``preset("paper")`` at 572 px the maps
    shrink 572 -> 570 -> 568 and the skips are cropped, 388 px come out.

    Args:
        net: a :class:`unet_teach.models.UNet` (any preset, depth, padding, skips).
        size: the input side length (must be one the net takes).
        ax: a matplotlib Axes (default: a new figure sized to the net).

    Returns:
        The Axes.

    Example:
        >>> from unet_teach.models import UNet
        >>> ax = draw_unet(UNet(1, 2, depth=2, base_width=4, padding="valid"), 60)
        >>> type(ax).__name__
        'Axes'
    """
    from matplotlib.patches import FancyArrowPatch, Rectangle

    net.check_input(torch.zeros(1, net.in_channels, size, size, device="meta"))
    maps = _unet_maps(net, size)
    depth = net.depth
    if ax is None:
        _, ax = plt.subplots(figsize=(FIGURE_WIDTH, 1.4 + 1.2 * depth))
    colours = {"conv": "#1f5fa8", "down": "#c0392b", "up": "#2e8b57", "copy": "#8c8c8c",
               "head": "#138d90"}
    widest = max(c for c, _, _ in maps.values())
    dy = 1.7                                            # vertical distance between levels
    height = 0.95                                       # of every bar
    sides, counts = [], []          # the labels beside and above the bars
    along, between = [], []         # arrows along a level and between levels, drawn last

    def bar(x, level, shape, face="#d9e6f5", label_side=True):
        c, h, w = shape
        width = 0.08 + 0.32 * (c / widest) ** 0.5       # wider for more channels
        y = -level * dy
        ax.add_patch(Rectangle((x, y - height / 2), width, height, fc=face, ec="black",
                               lw=0.8))
        counts.append(ax.text(x + width / 2, y + height / 2 + 0.04, f"{c}", ha="center",
                              va="bottom", fontsize=10))
        if label_side:              # the side, upright in the gap left of the bar, low
            sides.append(ax.text(x - 0.03, y - height / 2, f"{h}²", ha="right",
                                 va="bottom", fontsize=10, rotation=90))
        return x, x + width, y

    def arrow(x0, y0, x1, y1, kind):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>",
                                     mutation_scale=8, color=colours[kind], lw=1.2))

    def across(x0, x1, y, kind):
        along.append((x0, x1, y, kind))

    gap = 0.32                                          # between bars along a level
    # contracting path: a column per map; each pooled map sits under the map it came from
    left, right, y = bar(0.0, 0, (net.in_channels, size, size), face="white")
    last = {}
    for level in range(depth + 1):
        if level > 0:                                   # the down-sampled map, one level down
            top_left = left
            left, right, y = bar(top_left, level, maps[("pool", level - 1)])
            between.append((top_left + 0.05, y, "down"))
        for k in range(2):
            l2, r2, y = bar(right + gap, level, maps[("enc", level, k)])
            across(right, l2, y, "conv")
            left, right = l2, r2
        last[level] = (left, right)
    # expanding path: each up-sampled map sits above the map it came from
    for level in range(depth - 1, -1, -1):
        below_left = left
        left, right, y = bar(below_left, level, maps[("up", level)], face="#e3f2e1")
        between.append((below_left + 0.05, y - dy, "up"))
        if net.skips:                                   # copied (and cropped) across
            across(last[level][1] + 0.02, left - 0.02, y, "copy")
        for k in range(2):
            l2, r2, y = bar(right + gap, level, maps[("dec", level, k)])
            across(right, l2, y, "conv")
            left, right = l2, r2
    x_right = right
    head = maps[("head",)]
    l2, r2, y = bar(x_right + gap, 0, head, face="#fde2c8")
    across(x_right, l2, y, "head")
    handles = [plt.Line2D([], [], color=colours[k], lw=2, label=t) for k, t in [
        ("conv", "conv 3×3 + activation"), ("down", "down-sample 2×2"),
        ("up", "up-sample 2×2"), ("copy", "copy and crop" if net.padding == "valid" else "copy"),
        ("head", f"conv {net.head.kernel_size[0]}×{net.head.kernel_size[0]} head")]
        if k != "copy" or net.skips]
    ax.legend(handles=handles, loc="lower right", fontsize=10, frameon=False)
    ax.set_xlim(-0.6, r2 + 0.5)
    ax.set_ylim(-depth * dy - 0.9, 0.9)
    ax.axis("off")                  # a schematic: it fills the axes (no equal aspect), so
                                    # its labels stay apart at the column's width
    ax.set_title(f"{type(net).__name__}, depth {depth}, {net.padding} padding: "
                 f"{size}² in, {head[1]}² out", fontsize=10)
    # The side labels stand upright in the lower part of the gaps between bars; the arrows
    # along a level run above them, and the arrows between levels start or end above the
    # channel counts, so that no arrow crosses a label. How tall a 10 pt label is in data
    # units depends on the figure's size: measure it.
    up, count_top = 0.3, height / 2 + 0.3              # above the bars' centres
    renderer = getattr(ax.figure.canvas, "get_renderer", lambda: None)()
    if renderer is not None:
        to_data = ax.transData.inverted()

        def tall(texts):
            px = max(t.get_window_extent(renderer).height for t in texts)
            return abs(np.diff(to_data.transform([(0, 0), (0, px)])[:, 1])[0])

        up = min(max(up, tall(sides) - height / 2 + 0.12), height / 2 - 0.06)
        count_top = height / 2 + 0.04 + tall(counts) + 0.04
    for x0, x1, y, kind in along:
        arrow(x0, y + up, x1, y + up, kind)
    for x, y_low, kind in between:      # from the level above down, or from below up
        start, end = (x, y_low + dy - height / 2), (x, y_low + count_top)
        if kind == "up":
            start, end = end, start
        arrow(*start, *end, kind)
    return ax
