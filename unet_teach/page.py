"""The book's page plumbing: what chapters print their measurements with, and how figures
are kept readable on the page.

* tables - :func:`markdown_table`, and :func:`mean_sd` / :func:`mean_sd_text` for the
  "mean ± sd over the seeds" that every trained comparison reports;
* measured values - :func:`glue` hands a number to the chapter's text (``BOOK_BUILD``);
* figure sizes - the text column's width (``COLUMN_PX``), the widest figure
  (``FIGURE_WIDTH``), and the record of every saved figure that the book's test checks its
  smallest text against (:func:`record_figures`, :func:`rendered_text_px`, ``FIGURE_LOG``);
* code on the page - :func:`show_source` shows the package's own code in a chapter.

Pictures live in :mod:`unet_teach.plot` (images, masks, curves) and
:mod:`unet_teach.diagrams` (the book's schematic figures).
"""

from __future__ import annotations

import os

import numpy as np
import torch


# --------------------------------------------------------------------------- tables

def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header, rows, formats=None) -> str:
    """A Markdown table from a header and rows of values (the chapters ``display`` it with
    ``IPython.display.Markdown``; the book renders it as a table).

    Args:
        header: column titles.
        rows: one sequence of values per row, as long as ``header``.
        formats: optional format strings per column (``"{:.3f}"``, ``"{:,}"``,
            ``"**{:.2f}**"``, or ``None`` for the default: integers with thousands
            separators, floats to 3 significant digits, anything else as ``str``).

    Example:
        >>> print(markdown_table(["net", "params", "Dice"], [["U-Net", 31030658, 0.91234]],
        ...                      formats=[None, None, "{:.3f}"]))
        | net | params | Dice |
        |---|---|---|
        | U-Net | 31,030,658 | 0.912 |
    """
    header = list(header)
    formats = list(formats) if formats is not None else [None] * len(header)
    if len(formats) != len(header):
        raise ValueError(f"{len(formats)} formats for {len(header)} columns")
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} values for {len(header)} columns: {row!r}")
        cells = [_cell(v) if f is None else f.format(v) for v, f in zip(row, formats)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- mean ± sd

def mean_sd(values) -> tuple[float, float]:
    """The mean and the standard deviation of one number per run (per seed).

    The standard deviation is the sample's (``ddof=1``): the spread of the runs as an
    estimate of how much another seed could differ, which is what the book reports next to
    every mean over seeds. With one run there is no spread: it is ``nan``.

    Example:
        >>> mean_sd([1.0, 2.0, 4.0, 5.0])         # sd: sqrt((2² + 1² + 1² + 2²) / (4 - 1))
        (3.0, 1.8257418583505538)
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values to average: pass one number per run")
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return float(v.mean()), sd


def mean_sd_text(values, digits: int = 3) -> str:
    """``"mean ± sd"`` of one number per run (see :func:`mean_sd`), both with ``digits``
    decimals, as the book's tables print a result over seeds; one run prints its value alone.

    Example:
        >>> mean_sd_text([0.5, 0.7, 0.9])
        '0.700 ± 0.200'
        >>> mean_sd_text([0.000351, 0.000362], digits=6), mean_sd_text([0.25])
        ('0.000357 ± 0.000008', '0.250')
    """
    m, s = mean_sd(values)
    if np.isnan(s):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


# --------------------------------------------------------------------------- measured values

#: Set by the book's build (``make book``, tests/test_book.py). There myst-nb pastes every
#: glued value into the text, so a glue cell shows nothing. Anywhere else (Jupyter, Colab,
#: the GPU check) the text shows its ``{glue:text}`` roles raw, so the value is printed
#: where it is glued: ``name = value``.
BOOK_BUILD = "UNET_TEACH_BOOK_BUILD"


def _shown(value) -> str:
    """A glued value as a reader needs it: 4 significant digits for a float."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def glue(name: str, value, display: bool = False) -> None:
    """Record a measured value under ``name`` for the chapter's text, where the book's
    Markdown quotes it as ``{glue:text}`name:.3f```. In the book's build this is myst-nb's
    ``glue`` and the cell shows nothing; anywhere else (Colab, a plain Jupyter) the value
    is printed as ``name = value``, next to the text that quotes it (and recorded too where
    myst-nb is installed, so that a book built without ``make book`` still has it).
    Returns ``None``, so that a cell ending in a ``glue`` call shows no stray number.

    Example:
        >>> glue("dice_unet", 0.912)                 # outside the book build: printed
        dice_unet = 0.912
        >>> glue("share", np.float64(0.25))          # stored as the Python number 0.25
        share = 0.25
    """
    if isinstance(value, (np.generic, np.ndarray, torch.Tensor)) and np.ndim(value) == 0:
        # numpy 2 shows np.float64(0.5) as "np.float64(0.5)", which the book's number
        # formats ({glue:text}`name:.3f`) cannot read: store a plain Python number
        value = value.item()
    in_book = bool(os.environ.get(BOOK_BUILD))
    try:
        # myst-nb's glue imports docutils when called: a machine with myst-nb but without
        # the book's build stack (the GPU check's) has nothing to record into either
        from myst_nb import glue as myst_glue
        myst_glue(name, value, display=display and in_book)
    except ImportError:                       # outside the book: nothing to record into
        pass
    if not in_book:
        print(f"{name} = {_shown(value)}")


# --------------------------------------------------------------------------- figure sizes
#
# The book's text column is COLUMN_PX wide (measured: the article column of the built pages
# in a 1280 px browser window). A PNG wider than that is shrunk to fit, and its text with
# it: a 15-inch figure with 10 pt labels shows them 6 px tall. So figures are drawn at
# most FIGURE_WIDTH inches wide, and the book's build records every figure it saves to
# check the size its smallest text renders at (tests/test_book.py, MIN_TEXT_PX).

COLUMN_PX = 676                     # the column, in CSS px, at a 1280 px window
FIGURE_WIDTH = 9.6                  # inches: 10 pt text then renders at >= 9 px
MIN_TEXT_PX = 9.0
FIGURE_LOG = "UNET_TEACH_FIGURE_LOG"    # env: a JSON-lines file to record figures into


def rendered_text_px(font_pt: float, dpi: float, png_width: int,
                     column_px: int = COLUMN_PX) -> float:
    """How tall (in CSS px) text of ``font_pt`` points shows on the page, for a figure saved
    at ``dpi`` as a PNG ``png_width`` pixels wide: the PNG is shown at its own size, or
    shrunk to the column when it is wider.

    Example:
        >>> round(rendered_text_px(10, 100, 1500), 1)    # a 15-inch figure: too small
        6.3
        >>> round(rendered_text_px(10, 100, 600), 1)     # narrower than the column
        13.9
    """
    return font_pt * dpi / 72 * min(1.0, column_px / png_width)


def _figure_record(fig, dpi: float, png: bytes) -> dict:
    """What the size check needs to know about one saved figure."""
    from io import BytesIO

    from matplotlib.text import Text
    from PIL import Image

    width, height = Image.open(BytesIO(png)).size
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    smallest = min(texts, key=lambda t: t.get_fontsize(), default=None)
    try:                                   # the cell that drew it, to find the figure again
        from IPython import get_ipython
        cell = get_ipython().user_ns["In"][-1]
    except Exception:                      # not in IPython
        cell = ""
    return {"png_width": width, "png_height": height, "dpi": dpi,
            "min_font_pt": smallest.get_fontsize() if smallest else None,
            "min_font_text": smallest.get_text()[:40] if smallest else None,
            "cell": cell[:200]}


def record_figures(path: str | None = None) -> None:
    """Append a record of every PNG matplotlib saves (its width in px, its dpi and its
    smallest text in pt) to the JSON-lines file ``path`` (default: ``$UNET_TEACH_FIGURE_LOG``).
    The book's test build turns it on, then checks each figure with
    :func:`rendered_text_px`. Installed once; figures are saved exactly as before."""
    import json
    from io import BytesIO

    from matplotlib.backend_bases import FigureCanvasBase

    path = path or os.environ.get(FIGURE_LOG)
    original = FigureCanvasBase.print_figure
    if not path or getattr(original, "records_to", None):
        return

    def print_figure(self, filename, *args, **kwargs):
        result = original(self, filename, *args, **kwargs)
        fmt = str(kwargs.get("format") or getattr(filename, "name", "png")).lower()
        if isinstance(filename, BytesIO) and fmt.endswith("png"):   # the inline backend's
            dpi = kwargs.get("dpi")
            dpi = self.figure.dpi if dpi in (None, "figure") else float(dpi)
            record = _figure_record(self.figure, dpi, filename.getvalue())
            with open(path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        return result

    print_figure.records_to = path
    FigureCanvasBase.print_figure = print_figure


record_figures()                         # a no-op unless $UNET_TEACH_FIGURE_LOG is set


# --------------------------------------------------------------------------- code on the page

def show_source(obj):
    """The source of a class or function as a highlighted Python block, docstrings removed.

    Chapters include the package's own code this way, so the page cannot drift from it.
    The docstrings' lines are cut out of the source text (rather than regenerating the
    code from its syntax tree), so that comments, which say *why*, survive.

    Args:
        obj: a class, a function or a method, e.g. ``UNet.forward``.

    Returns:
        An ``IPython.display.Markdown`` holding a fenced ``python`` block; Jupyter and the
        book both render it highlighted.

    Example:
        >>> from unet_teach.models import Down, UNet
        >>> text = show_source(Down).data
        >>> text.splitlines()[:2]
        ['```python', 'class Down(nn.Sequential):']
        >>> '"' * 3 in text                        # the docstring is gone
        False
        >>> "# kept for the expanding path" in show_source(UNet.forward).data
        True
    """
    import ast
    import inspect
    import re
    import textwrap
    from IPython.display import Markdown

    lines = textwrap.dedent(inspect.getsource(obj)).splitlines()
    drop = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        body = getattr(node, "body", None)
        if not (isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            continue
        doc = body[0]
        if doc.lineno == node.lineno:              # a one-line `def f(): """..."""`
            continue
        first, last = doc.lineno - 1, doc.end_lineno - 1     # 0-based, inclusive
        drop.update(range(first, last + 1))
        if last + 1 < len(lines) and not lines[last + 1].strip():
            drop.add(last + 1)                     # and the blank line after a docstring
    code = "\n".join(line for i, line in enumerate(lines) if i not in drop)
    # a fence longer than any run of backticks in the code, so the code cannot close it
    fence = "`" * max(3, 1 + max(map(len, re.findall("`+", code)), default=0))
    return Markdown(f"{fence}python\n{code}\n{fence}")
