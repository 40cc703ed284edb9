"""Pictures of images, masks and training: class overlays, image / mask / prediction
panels and grids, training curves.

One colour per class, the same everywhere in the book (``CLASS_COLORS``): class 0 is drawn
transparent on overlays (it is the background or cell interior), class 1 in orange, then
blue, green, purple, ...

The book's schematic figures are in :mod:`unet_teach.diagrams`; its tables, glued values
and figure sizes in :mod:`unet_teach.page`.
"""

from __future__ import annotations

import numpy as np
import torch
import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap

from .page import FIGURE_WIDTH

# RGB in [0, 1]; colour-blind-safe (Okabe-Ito) after the first.
CLASS_COLORS = np.array([
    [0.00, 0.00, 0.00],   # 0: interior / background (left transparent on overlays)
    [0.90, 0.62, 0.00],   # 1: membrane / nucleus - orange
    [0.34, 0.71, 0.91],   # 2: sky blue
    [0.00, 0.62, 0.45],   # 3: green
    [0.80, 0.47, 0.65],   # 4: purple
    [0.94, 0.89, 0.26],   # 5: yellow
    [0.00, 0.45, 0.70],   # 6: blue
    [0.84, 0.37, 0.00],   # 7: vermillion
])


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _gray(image) -> np.ndarray:
    img = _numpy(image).astype(np.float64)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)                       # C x H x W -> H x W x C
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an H x W (or 1/3-channel) image, got shape {_numpy(image).shape}")
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def class_cmap(num_classes: int = 2) -> ListedColormap:
    """A matplotlib colour map with the book's class colours (class 0 drawn black).

    Example:
        >>> class_cmap(3).N
        3
    """
    return ListedColormap(CLASS_COLORS[:num_classes])


def overlay(image, mask, alpha: float = 0.55, skip_background: bool = True) -> np.ndarray:
    """Blend a label map onto an image, each class in its own colour.

    Args:
        image: ``H x W`` grey (or ``H x W x 3``) image, any range (it is rescaled).
        mask: ``H x W`` integer class indices (a label map, a prediction, or a bool mask).
        alpha: opacity of the class colours.
        skip_background: leave class 0 uncoloured.

    Returns:
        ``H x W x 3`` float RGB in [0, 1], ready for ``plt.imshow``.

    Example:
        >>> rgb = overlay(np.zeros((8, 8)), np.eye(8, dtype=int))
        >>> rgb.shape, rgb[0, 0].round(2).tolist()
        ((8, 8, 3), [0.5, 0.34, 0.0])
    """
    rgb = _gray(image)
    labels = _numpy(mask).astype(np.int64)
    if labels.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {labels.shape} does not match image shape {rgb.shape[:2]}")
    if labels.max(initial=0) >= len(CLASS_COLORS):
        raise ValueError(f"at most {len(CLASS_COLORS)} classes can be coloured")
    colored = labels > 0 if skip_background else np.ones_like(labels, dtype=bool)
    out = rgb.copy()
    out[colored] = (1 - alpha) * rgb[colored] + alpha * CLASS_COLORS[labels[colored]]
    return out


def show_panels(image, mask=None, pred=None, titles: tuple[str, ...] | None = None,
                axes=None, num_classes: int = 2):
    """One row of panels: the image, its true mask overlaid, and the prediction overlaid.

    Returns the matplotlib axes.

    Example:
        >>> axes = show_panels(np.zeros((8, 8)), np.eye(8, dtype=int), np.eye(8, dtype=int))
        >>> len(axes)
        3
    """
    panels = [("image", _gray(image))]
    if mask is not None:
        panels.append(("truth", overlay(image, mask)))
    if pred is not None:
        panels.append(("prediction", overlay(image, pred)))
    if axes is None:
        _, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    axes = np.atleast_1d(axes)
    for i, (ax, (name, picture)) in enumerate(zip(axes, panels)):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(titles[i] if titles else name)
        ax.axis("off")
    return axes


def show_grid(images, masks=None, ncols: int = 4, size: float = 2.4, titles=None):
    """A grid of images, overlaid with their masks when given. Returns the figure.

    Example:
        >>> fig = show_grid(np.zeros((3, 8, 8)), np.zeros((3, 8, 8), dtype=int), ncols=3)
        >>> len(fig.axes)
        3
    """
    images = _numpy(images)
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, min(ncols, n), figsize=(size * min(ncols, n), size * nrows),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(overlay(images[i], masks[i]) if masks is not None else _gray(images[i]),
                      interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=10)
    fig.tight_layout()
    return fig


def plot_history(history: dict[str, list], axes=None):
    """Training curves from :func:`unet_teach.train.fit`: losses on the left, validation
    accuracy and Dice on the right (when present). Returns the axes.

    Example:
        >>> h = {"epoch": [1, 2], "train_loss": [0.7, 0.5], "val_loss": [0.6, 0.5],
        ...      "val_accuracy": [0.8, 0.9], "val_dice": [0.4, 0.6]}
        >>> len(plot_history(h))
        2
    """
    has_val = bool(history.get("val_dice"))
    if axes is None:
        _, axes = plt.subplots(1, 2 if has_val else 1, figsize=(FIGURE_WIDTH if has_val else FIGURE_WIDTH / 2, 3.4))
    axes = np.atleast_1d(axes)
    epochs = history["epoch"]
    axes[0].plot(epochs, history["train_loss"], "o-", label="train loss")
    if history.get("val_loss"):
        axes[0].plot(epochs, history["val_loss"], "s-", label="validation loss")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    if has_val:
        axes[1].plot(epochs, history["val_accuracy"], "o-", label="pixel accuracy")
        axes[1].plot(epochs, history["val_dice"], "s-", label="Dice (class 1)")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylim(0, 1)
        axes[1].legend()
    return axes
