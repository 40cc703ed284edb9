"""The quality-control page of ``unet-teach evaluate --report DIR``: one HTML file.

``DIR/report.html`` is self-contained (the pictures are PNGs embedded as base64), so it can
be mailed or archived as one file. It holds the scores table, then one section per image
with its scores and three panels drawn with matplotlib: the truth and the prediction
overlaid on the image (on grey without ``--images``; the background value left
uncoloured, each other value in the book's class colours), and a map of the errors:

* magenta - a foreground value predicted where the truth is background (too much);
* green   - background predicted where the truth is foreground (missed);
* red     - one foreground value predicted for another (with more than two classes).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..plot import CLASS_COLORS, overlay
from .images import write_atomic

#: Pictures are drawn from at most this many pixels on a side (larger masks are subsampled).
MAX_SIDE = 1024

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 80em; color: #222; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.mean td { font-weight: bold; border-top: 2px solid #888; }
img { max-width: 100%; }
.legend span { display: inline-block; width: 1em; height: 1em; vertical-align: middle; }
"""


def error_map(pred: np.ndarray, truth: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """``H x W x 3`` RGB: right pixels dim grey (or the dimmed ``base`` image), wrong ones
    coloured: magenta = foreground predicted on background, green = background predicted on
    foreground, red = the wrong foreground class. ``pred``/``truth``: class indices, 0 =
    background.

    Example:
        >>> error_map(np.array([[0, 1, 0, 2]]), np.array([[0, 0, 1, 1]]))[0].tolist()
        [[0.3, 0.3, 0.3], [1.0, 0.0, 1.0], [0.0, 0.8, 0.0], [0.9, 0.0, 0.0]]
    """
    grey = 0.3 if base is None else 0.3 + 0.3 * base
    rgb = np.repeat(np.broadcast_to(grey, pred.shape)[..., None], 3, axis=-1).astype(np.float64)
    rgb[(pred > 0) & (truth == 0)] = (1.0, 0.0, 1.0)
    rgb[(pred == 0) & (truth > 0)] = (0.0, 0.8, 0.0)
    rgb[(pred > 0) & (truth > 0) & (pred != truth)] = (0.9, 0.0, 0.0)
    return rgb


def _colourable(labels: np.ndarray) -> np.ndarray:
    # the book has 8 class colours; further classes reuse them (never the background's)
    n = len(CLASS_COLORS)
    return np.where(labels >= n, 1 + (labels - 1) % (n - 1), labels)


def panels_png(pred: np.ndarray, truth: np.ndarray, image: np.ndarray | None,
               names: tuple[str, str, str] = ("truth", "prediction", "errors")) -> bytes:
    """The three panels of one image as PNG bytes (``pred``, ``truth``: class indices;
    ``image``: ``H x W`` in [0, 1] or ``None``)."""
    step = max(1, -(-max(truth.shape) // MAX_SIDE))
    pred, truth = pred[::step, ::step], truth[::step, ::step]
    base = image[::step, ::step] if image is not None else np.full(truth.shape, 0.5)
    h, w = truth.shape
    fig = Figure(figsize=(12, 4 * h / w + 0.4), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    pictures = (overlay(base, _colourable(truth)), overlay(base, _colourable(pred)),
                error_map(pred, truth, image[::step, ::step] if image is not None else None))
    for ax, picture, name in zip(axes, pictures, names):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name)
        ax.set_axis_off()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _cell(value) -> str:
    return html.escape(value) if isinstance(value, str) else f"{value:.4f}"


def write_report(path, columns: list[str], rows: list[dict], mean: dict,
                 masks: dict[str, tuple[np.ndarray, np.ndarray]], values: list[int],
                 images: dict[str, np.ndarray] | None = None, title: str = "evaluation",
                 regions: int | None = None) -> Path:
    """Write the page to ``path`` atomically (its folder is created); return ``path``.

    ``masks``: ``{stem: (pred, truth)}`` in mask values; ``values``: all values, sorted
    (the first is the background); ``images``: ``{stem: 1 x H x W or H x W}`` in [0, 1].
    """
    images = images or {}
    background, fg = values[0], values[1:]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["image", *columns])
    body = "".join("<tr><td><a href='#{0}'>{1}</a></td>{2}</tr>".format(
        html.escape(r["image"]), html.escape(r["image"]),
        "".join(f"<td>{_cell(r[c])}</td>" for c in columns)) for r in rows)
    body += ("<tr class='mean'><td>mean</td>"
             + "".join(f"<td>{_cell(mean[c])}</td>" for c in columns) + "</tr>")
    legend = ("<p class='legend'>Errors: <span style='background:#f0f'></span> "
              f"predicted {'/'.join(map(str, fg))} where the truth is {background} &nbsp; "
              f"<span style='background:#0c0'></span> predicted {background} where the truth "
              f"is {'/'.join(map(str, fg))}"
              + (" &nbsp; <span style='background:#e00'></span> the wrong foreground value"
                 if len(fg) > 1 else "") + "</p>")
    sections = []
    for r in rows:
        stem = r["image"]
        pred, truth = masks[stem]
        image = images.get(stem)
        if image is not None and image.ndim == 3:
            image = image[0]
        png = panels_png(np.searchsorted(values, pred), np.searchsorted(values, truth), image)
        numbers = ", ".join(f"{c} {r[c]:.4f}" for c in columns)
        sections.append(f"<h2 id='{html.escape(stem)}'>{html.escape(stem)}</h2>"
                        f"<p>{html.escape(numbers)}</p>"
                        f"<img alt='{html.escape(stem)}: truth, prediction, errors' "
                        f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    about = (f"{len(rows)} image(s). Pixel error: the fraction of pixels whose value differs. "
             f"Dice and IoU: of value{'s' if len(fg) > 1 else ''} {', '.join(map(str, fg))} "
             f"(the background is {background})"
             + ("; with more than two classes, the mean over them" if len(fg) > 1 else "")
             + (f". Regions: the connected pixels of value {regions}; Rand error = 1 - "
                "adapted Rand F-score, VI split/merge in bits" if regions is not None else "")
             + ". Lower is better for the errors, higher for Dice and IoU.")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(about)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{legend}"
            + "".join(sections) + "</body></html>\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
