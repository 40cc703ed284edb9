"""The explorers (unet_teach.explore): live in a kernel, precomputed in the built book.

The first part drives the widgets through their Python API (what a kernel does when the
reader moves a slider). The second opens the built pages in headless Chromium with the
network off and moves every explorer's sliders as a reader would (the book tier: it needs
the build). Chromium and chromedriver come from Debian (``apt-get install chromium
chromium-driver``; .ci/run installs them); without them the browser tests skip, except in
CI ($CI set), where a missing browser fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from unet_teach.explore import FRAME_PX, explore, frame_parts, live, precomputed

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"


def _frame(sigma, text_only=False):
    if text_only:
        return f"<b>σ = {sigma}</b>"
    fig, ax = plt.subplots(figsize=(9.6, 2))
    ax.plot([0, sigma])
    return fig, f"strain {sigma / 10:.2f}"


def _shown_text(widget):
    """The text of the frame an explorer shows now, as the kernel sees it."""
    *_, shown, _ = widget.children
    if type(shown).__name__ == "Stack":                   # precomputed
        while type(shown).__name__ == "Stack":
            shown = shown.children[shown.selected_index]
    return shown.children[-1].value


# --------------------------------------------------------------------------- in a kernel

def test_a_frame_is_an_image_no_wider_than_the_column():
    from io import BytesIO

    from PIL import Image

    image, text = frame_parts(_frame(5))
    picture = Image.open(BytesIO(image))
    assert picture.format == "WEBP" and text == "strain 0.50"
    assert 0 < picture.size[0] <= FRAME_PX and picture.size[1] > 0
    assert plt.get_fignums() == []                        # the figure was closed


@pytest.mark.parametrize("bad", [42, (1, "x"), None])
def test_a_frame_function_must_return_a_figure_or_text(bad):
    with pytest.raises(TypeError, match="matplotlib Figure"):
        frame_parts(bad)


def test_live_runs_the_function_on_every_move_and_keeps_what_it_made():
    calls = []

    def frame(sigma):
        calls.append(sigma)
        return _frame(sigma, text_only=True)

    w = live(frame, "σ", [2, 5, 10])
    slider = w.children[0]
    assert _shown_text(w) == "<b>σ = 2</b>" and calls == [2]
    slider.index = 2
    assert _shown_text(w) == "<b>σ = 10</b>"
    slider.index = 0
    assert _shown_text(w) == "<b>σ = 2</b>" and calls == [2, 10]     # kept, not run again
    assert "Live" in w.children[-1].value


def test_live_with_two_knobs():
    w = live(lambda a, b: f"{a}-{b}", "w0", [1, 10], "σ", [3, 5])
    w.children[1].index = 1
    assert _shown_text(w) == "1-5"
    w.children[0].index = 1
    assert _shown_text(w) == "10-5"


def test_precomputed_holds_every_frame_and_links_the_slider_in_the_browser():
    import ipywidgets as widgets

    w = precomputed(lambda s: _frame(s), "σ", [2, 5, 10])
    slider, stack, note = w.children
    assert len(stack.children) == 3
    assert [f.children[-1].value for f in stack.children] == ["strain 0.20", "strain 0.50",
                                                              "strain 1.00"]
    assert all(isinstance(f.children[0], widgets.Image) for f in stack.children)
    assert "Precomputed for σ ∈ {2, 5, 10}" in note.value
    assert "unet-explorer" in w._dom_classes
    [link] = w.links
    assert type(link).__name__ == "Link"
    assert link.source == (slider, "index") and link.target == (stack, "selected_index")


def test_precomputed_two_knobs_turn_every_inner_stack():

    w = precomputed(lambda a, b: f"{a}-{b}", "w0", [1, 10, 30], "σ", [3, 5])
    s1, s2, outer, note = w.children
    assert [[f.children[-1].value for f in inner.children] for inner in outer.children] == \
        [["1-3", "1-5"], ["10-3", "10-5"], ["30-3", "30-5"]]
    first, *inner_links = w.links
    assert first.source == (s1, "index") and first.target == (outer, "selected_index")
    assert all(type(x).__name__ == "Link" and x.source == (s2, "index") for x in inner_links)
    assert [x.target for x in inner_links] == [(s, "selected_index") for s in outer.children]
    assert "w0 ∈ {1, 10, 30} and σ ∈ {3, 5}" in note.value


def test_explore_is_precomputed_in_the_book_build_and_live_elsewhere(monkeypatch):
    monkeypatch.delenv("UNET_TEACH_BOOK_BUILD", raising=False)
    assert "Live" in explore(lambda s: str(s), "t", [1, 2]).children[-1].value
    monkeypatch.setenv("UNET_TEACH_BOOK_BUILD", "1")
    assert "Precomputed" in explore(lambda s: str(s), "t", [1, 2]).children[-1].value


def test_an_empty_knob_is_refused():
    with pytest.raises(ValueError, match="at least one value"):
        precomputed(lambda s: "", "t", [])


# --------------------------------------------------------------------------- in the book

def _explorer_chapters() -> dict[str, int]:
    """``{page: number of explorers}`` from the chapters' code (cells calling explore)."""
    found = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        n = sum(len(re.findall(r"\bexplore\(", "".join(c["source"])))
                for c in nb["cells"] if c["cell_type"] == "code")
        if n:
            found[f"notebooks/{path.stem}.html"] = n
    return found


def _state(page: str) -> dict:
    """The widget state a built page embeds (model id -> state)."""
    html = (HTML / page).read_text(encoding="utf-8")
    m = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>',
                  html, re.S)
    assert m, f"{page}: no widget state embedded"
    return {k: v["state"] for k, v in json.loads(m.group(1))["state"].items()}


def _explorers(state: dict) -> list[list[str]]:
    """Per explorer, the texts of its frames in order (a list of lists for two knobs)."""
    def texts(stack_id):
        out = []
        for child in state[stack_id]["children"]:
            cid = child.removeprefix("IPY_MODEL_")
            if state[cid]["_model_name"] == "StackModel":
                out.append(texts(cid))
            else:
                last = state[cid]["children"][-1].removeprefix("IPY_MODEL_")
                out.append(state[last]["value"])
        return out

    result = []
    for s in state.values():
        if "unet-explorer" in s.get("_dom_classes", []):
            stack = next(c.removeprefix("IPY_MODEL_") for c in s["children"]
                         if state[c.removeprefix("IPY_MODEL_")]["_model_name"] == "StackModel")
            result.append(texts(stack))
    return result


@pytest.mark.book
def test_there_are_eight_explorers_in_the_chapters():
    assert sum(_explorer_chapters().values()) >= 8, _explorer_chapters()


@pytest.mark.book
def test_every_explorer_page_embeds_its_frames_and_stays_small(book_build):
    for page, n in _explorer_chapters().items():
        size = (HTML / page).stat().st_size
        explorers = _explorers(_state(page))
        print(f"{page}: {n} explorer(s), {size / 1e6:.2f} MB")
        assert len(explorers) == n, page
        assert size <= 1.5e6, f"{page} is {size / 1e6:.2f} MB with its widget state (1.5 MB)"
        for frames in explorers:
            flat = [t for f in frames for t in (f if isinstance(f, list) else [f])]
            assert len(set(flat)) == len(flat), f"{page}: two frames say the same: {flat}"


@pytest.mark.book
def test_no_built_page_loads_a_script_or_style_from_another_host(book_build):
    remote = re.compile(r'<(?:script|link)[^>]+(?:src|href)="((?:https?:)?//[^"]+)"')
    for page in HTML.rglob("*.html"):
        found = [u for u in remote.findall(page.read_text(encoding="utf-8"))
                 if not u.startswith(("http://localhost", "https://localhost"))]
        assert not found, f"{page.relative_to(HTML)} loads {found[:3]} from another host"


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not (chromium and driver_path):
        why = ("needs Chromium, chromedriver and selenium (apt-get install chromium "
               "chromium-driver; pip install selenium)")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    # no network at all: what the page needs must come from the build
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    yield driver
    driver.quit()


def _visible(explorer):
    """What an explorer shows now in the page: (text of the shown frame, image src)."""
    texts = [e.text for e in explorer.find_elements("css selector", ".widget-html-content")
             if e.is_displayed()]
    images = [e.get_attribute("src") for e in explorer.find_elements("css selector", "img")
              if e.is_displayed()]
    return texts, images


@pytest.mark.book
def test_every_explorer_responds_in_the_browser_without_network(book_build, browser):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    for page, n in _explorer_chapters().items():
        expected = _explorers(_state(page))
        browser.get((HTML / page).as_uri())
        WebDriverWait(browser, 60).until(
            lambda d: len(d.find_elements("css selector", ".unet-explorer")) == n)
        for explorer, frames in zip(browser.find_elements("css selector", ".unet-explorer"),
                                    expected):
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", explorer)
            handles = explorer.find_elements("css selector", ".noUi-handle")
            assert handles, f"{page}: an explorer without a slider"
            first = frames[0][0] if isinstance(frames[0], list) else frames[0]
            texts, images = _visible(explorer)
            assert any(_plain(first) in t for t in texts), (page, first, texts)
            # the first slider to its second value, then to its last
            for key, index in ((Keys.ARROW_RIGHT, 1), (Keys.END, len(frames) - 1)):
                handles[0].send_keys(key)
                want = frames[index][0] if isinstance(frames[index], list) else frames[index]
                WebDriverWait(browser, 10).until(
                    lambda d: any(_plain(want) in t for t in _visible(explorer)[0]))
                if images:
                    assert _visible(explorer)[1] != images, f"{page}: the image did not change"
            if len(handles) > 1:                          # the second knob
                handles[1].send_keys(Keys.END)
                want = frames[-1][-1]
                WebDriverWait(browser, 10).until(
                    lambda d: any(_plain(want) in t for t in _visible(explorer)[0]))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
                  and _from_widgets(e["message"])]
        assert not errors, f"{page}: JavaScript errors from the widgets: {errors[:3]}"


def _from_widgets(message: str) -> bool:
    """Whether a console error comes from the widgets: their scripts (``_static/widgets/``),
    a file they load (``@jupyter-widgets/...``), or a message that names them. The theme's
    own console errors are not the explorers' to fix."""
    return any(s in message for s in ("_static/widgets/", "@jupyter-widgets", "widget",
                                      "require.js", "MathJax"))


def _plain(html_text: str) -> str:
    """The text a browser shows of a frame's HTML (tags dropped, entities kept simple)."""
    import html

    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", html_text))).strip()


def test_the_committed_widget_scripts_are_the_fetched_ones():
    """_static/widgets holds what scripts/fetch_widget_js.py fetched (VERSIONS.json: the
    SHA-256 of every file), and _config.yml loads them, not a CDN's copies."""
    import hashlib

    folder = ROOT / "_static" / "widgets"
    versions = json.loads((folder / "VERSIONS.json").read_text())
    for package, info in versions.items():
        assert info["license"] in ("BSD-3-Clause", "MIT"), package
        for name, digest in info["files"].items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    config = (ROOT / "_config.yml").read_text()
    for script in ("widgets/require.js", "widgets/setup.js", "widgets/embed-amd.js"):
        assert f"{script}:" in config, f"_config.yml's nb_ipywidgets_js does not load {script}"
    assert (folder / "LICENSES.md").is_file() and (folder / "html-manager.LICENSE.txt").is_file()


def test_a_frame_whose_labels_reach_past_the_figure_is_still_no_wider_than_the_column():
    from io import BytesIO

    from PIL import Image

    fig, ax = plt.subplots(figsize=(9.6, 2))
    ax.set_ylabel("a label far outside the axes", labelpad=60)
    fig.text(1.02, 0.5, "past the right edge")            # a tight box grows to hold it
    image, _ = frame_parts(fig)
    assert Image.open(BytesIO(image)).size[0] <= FRAME_PX
