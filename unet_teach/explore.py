"""Explorers: move a knob the text talks about, and see what it does.

A chapter says "a larger σ bends the membranes more" or "a lower threshold closes the gaps";
an explorer lets the reader move that σ or that threshold and look. It turns a function of
one knob (or two) into a widget:

    >>> def frame(sigma):
    ...     fig = show_the_field(sigma)                         # a matplotlib Figure
    ...     return fig, f"strain {strain(sigma):.3f}"           # and the text that goes with it
    >>> explore(frame, "σ", [2, 5, 10, 20])                     # doctest: +SKIP

It works in two ways, and says which under the slider:

* **live** (Jupyter, Colab: a kernel runs): the function runs on every move of the slider,
  for any value of ``live_values`` (default: the same values);
* **precomputed** (the built book, which has no kernel; ``$UNET_TEACH_BOOK_BUILD`` set): the
  function runs once per value while the book builds, each result becomes a frame of a
  ``Stack`` widget, and the slider is ``jslink``-ed to the stack's ``selected_index`` in the
  browser. The widget state, frames included, is saved in the page, so moving the slider
  shows the frame computed for that value without any server. Two knobs make a stack of
  stacks, the second slider linked to every inner stack.

A frame is what the function returns: a matplotlib ``Figure``, a text (HTML; a number the
text quotes changes with the knob), or both as ``(figure, text)``. Figures are saved at
most ``FRAME_PX`` wide (the page's column), as WebP so that a page of frames stays small,
and are closed after saving. No explorer trains a net while the reader waits: frames are made
from what the chapter already computed.
"""

from __future__ import annotations

import html
import io
import os
from typing import Callable, Sequence

from .page import BOOK_BUILD

#: The widest a frame's image is drawn, in px (the book's text column).
FRAME_PX = 690
#: The WebP quality of a frame: text stays crisp, images lose no visible detail.
WEBP_QUALITY = 80


def _image(fig) -> bytes:
    """``fig`` as a WebP image at most ``FRAME_PX`` wide; the figure is closed after.

    Drawn as PNG (the format the book's figure-size check records), then stored as lossy
    WebP (quality ``WEBP_QUALITY``): a frame of EM images is about 200 KB as PNG and 40 KB
    as WebP, and a page holds every frame of its explorers.
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    width_in = fig.get_size_inches()[0]
    dpi = min(float(fig.dpi), FRAME_PX / width_in)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    picture = Image.open(png).convert("RGB")
    if picture.width > FRAME_PX:    # the tight box can reach past the figure by a pixel
        picture = picture.resize((FRAME_PX, round(picture.height * FRAME_PX / picture.width)),
                                 Image.LANCZOS)
    webp = io.BytesIO()
    picture.save(webp, format="WEBP", quality=WEBP_QUALITY)
    return webp.getvalue()


def frame_parts(result) -> tuple[bytes | None, str]:
    """``(WebP image bytes or None, HTML text)`` of what a frame function returned: a Figure, a
    str, or ``(Figure, str)``.

    Example:
        >>> frame_parts("Dice <b>0.91</b>")
        (None, 'Dice <b>0.91</b>')
    """
    from matplotlib.figure import Figure

    if isinstance(result, tuple) and len(result) == 2:
        fig, text = result
    elif isinstance(result, Figure):
        fig, text = result, ""
    elif isinstance(result, str):
        fig, text = None, result
    else:
        raise TypeError(f"an explorer's frame function returned {type(result).__name__}; "
                        "return a matplotlib Figure, a str, or (Figure, str)")
    if fig is not None and not isinstance(fig, Figure):
        raise TypeError(f"the first of (figure, text) is a {type(fig).__name__}; return the "
                        "matplotlib Figure itself (plt.subplots() gives it)")
    return (_image(fig) if fig is not None else None), str(text)


def _frame_widget(result):
    """A VBox of the frame's image and its text."""
    import ipywidgets as widgets

    png, text = frame_parts(result)
    children = []
    if png is not None:
        # drawn at its own size (at most the column's), shrunk only on a narrower screen
        children.append(widgets.Image(value=png, format="webp",
                                      layout=widgets.Layout(max_width="100%", height="auto")))
    children.append(widgets.HTML(value=text))
    return widgets.VBox(children)


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _slider(name: str, values: Sequence):
    import ipywidgets as widgets

    return widgets.SelectionSlider(options=[(_label(v), i) for i, v in enumerate(values)],
                                   value=0, description=name, continuous_update=True,
                                   style={"description_width": "initial"},
                                   layout=widgets.Layout(width="min(100%, 520px)"))


def _box(children):
    """The explorer: its sliders, what it shows, and the line that says how it works; the
    class ``unet-explorer`` lets the book's styles and tests find it in a page."""
    import ipywidgets as widgets

    box = widgets.VBox(children)
    box.add_class("unet-explorer")
    return box


def _values_text(name: str, values: Sequence) -> str:
    return f"{html.escape(name)} ∈ {{{', '.join(_label(v) for v in values)}}}"


def _check(name, values) -> list:
    values = list(values)
    if not values:
        raise ValueError(f"explorer knob {name!r}: give at least one value to show")
    return values


def precomputed(frame: Callable, name: str, values: Sequence, name2: str | None = None,
                values2: Sequence | None = None):
    """The explorer of the built book: ``frame`` evaluated on every value (every pair, for
    two knobs) now, the frames in a ``Stack`` whose ``selected_index`` the slider sets in the
    browser (``jslink``), and a line that says the values are precomputed.

    Example:
        >>> w = precomputed(lambda s: f"σ = {s}", "σ", [1, 2, 3])
        >>> [type(c).__name__ for c in w.children]
        ['SelectionSlider', 'Stack', 'HTML']
        >>> stack = w.children[1]; w.children[0].index = 2
        >>> stack.children[2].children[-1].value      # the frame the browser would show
        'σ = 3'
    """
    import ipywidgets as widgets

    values = _check(name, values)
    slider = _slider(name, values)
    if name2 is None:
        stack = widgets.Stack([_frame_widget(frame(v)) for v in values], selected_index=0)
        sliders, said, links = [slider], _values_text(name, values), []
    else:
        values2 = _check(name2, values2 or [])
        slider2 = _slider(name2, values2)
        inner = [widgets.Stack([_frame_widget(frame(v, w)) for w in values2], selected_index=0)
                 for v in values]
        stack = widgets.Stack(inner, selected_index=0)
        # the second slider turns every inner stack at once
        links = [widgets.jslink((slider2, "index"), (s, "selected_index")) for s in inner]
        sliders = [slider, slider2]
        said = f"{_values_text(name, values)} and {_values_text(name2, values2)}"
    # in the browser, with no kernel: moving the slider sets the stack's index
    links.insert(0, widgets.jslink((slider, "index"), (stack, "selected_index")))
    note = widgets.HTML(f"<small><em>Precomputed for {said}; run the notebook to try any "
                        "value.</em></small>")
    box = _box([*sliders, stack, note])
    box.links = links                        # (what the page's state holds besides the box)
    return box


def live(frame: Callable, name: str, values: Sequence, name2: str | None = None,
         values2: Sequence | None = None):
    """The explorer of a running notebook: ``frame`` runs whenever a slider moves (results
    are kept, so going back is instant).

    Example:
        >>> w = live(lambda s: f"σ = {s}", "σ", [1, 2, 3])
        >>> w.children[0].index = 1
        >>> w.children[1].children[-1].value
        'σ = 2'
    """
    import ipywidgets as widgets

    values = _check(name, values)
    sliders = [_slider(name, values)]
    if name2 is not None:
        values2 = _check(name2, values2 or [])
        sliders.append(_slider(name2, values2))
    shown = widgets.VBox([])
    made: dict[tuple, object] = {}

    def show(_=None):
        key = tuple(s.index for s in sliders)
        if key not in made:
            args = (values[key[0]],) if name2 is None else (values[key[0]], values2[key[1]])
            made[key] = _frame_widget(frame(*args)).children
        shown.children = made[key]

    for s in sliders:
        s.observe(show, names="index")
    show()
    note = widgets.HTML("<small><em>Live: computed as you move the slider.</em></small>")
    return _box([*sliders, shown, note])


def explore(frame: Callable, name: str, values: Sequence, name2: str | None = None,
            values2: Sequence | None = None, *, live_values: Sequence | None = None,
            live_values2: Sequence | None = None, static: bool | None = None):
    """An explorer of ``frame(value)`` (or ``frame(value, value2)``) over a knob called
    ``name`` (and ``name2``): :func:`precomputed` in the book's build (or with
    ``static=True``), else :func:`live` over ``live_values`` (default ``values``).

    Returns the widget; end a cell with it to show it.
    """
    if static is None:
        static = bool(os.environ.get(BOOK_BUILD))
    if static:
        return precomputed(frame, name, values, name2, values2)
    return live(frame, name, live_values or values, name2, live_values2 or values2)
