"""The book builds with zero warnings, executing every chapter, and the pages have content.

The build runs once per test session (it executes the chapter notebooks, which is the point:
every figure and number in the book comes from code that ran). It writes _build/html, the
same place `make book` does.
"""

import json
import re
from pathlib import Path

import pytest

from unet_teach.page import MIN_TEXT_PX, rendered_text_px

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
FIGURES = ROOT / "_build" / "figures.jsonl"
KERNELS = ROOT / "_build" / "kernels.jsonl"

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def build(book_build):
    """The build log (the build itself runs once a session: tests/conftest.py)."""
    return book_build


def page(rel: str) -> str:
    path = HTML / rel
    assert path.is_file(), f"{rel} was not built"
    return path.read_text(encoding="utf-8")


def test_build_has_no_warnings(build):
    problems = [line for line in build.splitlines()
                if re.search(r"\bWARNING\b", line) and "IPKernelApp" not in line]
    assert not problems, "\n".join(problems)
    assert (HTML / "index.html").is_file()


def test_chapter_1_has_its_figures_and_measured_numbers(build):
    html = page("notebooks/01_pixel_classification.html")
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert len(images) >= 5, f"expected the chapter's figures, found {images}"
    for src in images:
        assert (HTML / "notebooks" / src).resolve().is_file(), f"missing image {src}"
    # Numbers written into the text by cells that ran during the build (myst-nb glue)
    pasted = re.findall(r'<span class="pasted-text">([^<]*)</span>', html)
    assert len(pasted) >= 5, f"expected measured values glued into the text, found {pasted}"
    assert sum(bool(re.search(r"\d", value)) for value in pasted) >= 5, pasted
    assert "Traceback" not in html


def test_api_reference_documents_the_package(build):
    html = page("book/api.html")
    for name in ["synthetic_membranes", "load_isbi2012", "UNet", "preset", "fit",
                 "dice_per_class", "overlay", "get_profile"]:
        assert 'id="unet_teach.' in html and name in html, name


def test_bibliography_and_launch_buttons(build):
    refs = page("book/references.html")
    for author in ["Ronneberger", "Ciresan", "Long", "Cardona", "Arganda-Carreras"]:
        assert author in refs.replace("Cireşan", "Ciresan"), author
    chapter = page("notebooks/01_pixel_classification.html")
    assert "colab.research.google.com/github/unet-teach/unet-teach" in chapter


def test_exercise_pages_are_the_release_versions(build):
    for nb in sorted((ROOT / "exercises" / "release").glob("*.ipynb")):
        html = page(f"exercises/release/{nb.stem}.html")
        assert "NotImplementedError" in html
        assert "BEGIN HIDDEN TESTS" not in html and "BEGIN SOLUTION" not in html


def chapter_cpu_seconds() -> dict[str, dict]:
    """Each chapter's kernel, from the records tests/kernel_clock.py wrote at its exit: the
    kernel that ran most of the notebook's code cells (at least 80 % of them, and more than
    it ran of any other chapter), and its CPU time (its own and its subprocesses') divided
    by its torch threads."""
    from kernel_clock import cell_hash

    records = [json.loads(line) for line in KERNELS.read_text().splitlines()]
    cells = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells[path.relative_to(ROOT).with_suffix("").as_posix()] = {
            cell_hash("".join(c["source"])) for c in nb["cells"]
            if c["cell_type"] == "code" and "".join(c["source"]).strip()}
    chapters = {}
    for name, own in cells.items():
        def share(record, of=own):
            return len(of & set(record["cells"])) / max(1, len(of))
        best = max(records, key=share, default=None)
        if best is None or share(best) < 0.8:
            continue
        if any(share(best, other) > share(best) for n, other in cells.items() if n != name):
            continue                      # that kernel ran another chapter more fully
        cpu = best["cpu_s"] + best["children_cpu_s"]
        chapters[name] = {"cpu_s": cpu, "threads": best["threads"],
                          "budget_s": cpu / max(1, best["threads"])}
    return chapters


def test_every_chapter_ran_within_its_budget(build):
    """Each chapter must execute in <= 3 minutes on a 2-core CPU (the fast profile). The
    budget is counted in the kernel's CPU time divided by its threads, which waiting behind
    other work on a busy machine does not inflate; the build's own table gives the wall time
    next to it."""
    html = page("book/execution.html")
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", html, flags=re.S)
    wall = {}
    for row in rows:
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if len(cells) >= 4 and cells[0].startswith("notebooks/"):
            wall[cells[0]] = float(cells[3])
    chapters = sorted(p.relative_to(ROOT).with_suffix("").as_posix()
                      for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(wall) == chapters, f"execution table lists {sorted(wall)}"
    cpu = chapter_cpu_seconds()
    assert sorted(cpu) == chapters, (f"no kernel record for {sorted(set(chapters) - set(cpu))} "
                                     f"in {KERNELS}")
    print("\nchapter: CPU s / threads = budget s (wall s)")
    for name in chapters:
        c = cpu[name]
        print(f"{name}: {c['cpu_s']:.0f} / {c['threads']} = {c['budget_s']:.0f} s "
              f"({wall[name]:.0f} s)")
    slow = {name: round(c["budget_s"]) for name, c in cpu.items() if c["budget_s"] > 180}
    assert not slow, f"chapters over the 3-minute budget (CPU s / threads): {slow}"


def test_result_tables_render_as_tables(build):
    """Tables that cells print as Markdown must reach the page as HTML tables, not as lines
    of pipes."""
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        # code listings (inside <pre>) may build tables from strings; look at the rest
        html = re.sub(r"<pre.*?</pre>", "", page(f"notebooks/{nb.stem}.html"), flags=re.S)
        assert not re.search(r"\|\s*(?:-{3,}|—|–)\s*\|", html), f"{nb.stem}: a table was left as raw text"
    for chapter in ["01_pixel_classification", "03_sliding_window_cost", "05_fully_convolutional",
                    "06_unet", "07_reference_unets"]:
        assert "<table" in page(f"notebooks/{chapter}.html"), chapter


def test_every_figure_is_legible_in_the_column(build):
    """No text in any chapter's figure renders below MIN_TEXT_PX once the page shrinks
    the PNG to the text column: the build recorded each figure's width and smallest font."""
    records = [json.loads(line) for line in FIGURES.read_text().splitlines()]
    assert len(records) > 50, f"only {len(records)} figures recorded: is the hook installed?"
    small = []
    for r in records:
        if r["min_font_pt"] is None:
            continue
        px = rendered_text_px(r["min_font_pt"], r["dpi"], r["png_width"])
        if px < MIN_TEXT_PX:
            small.append(f"{px:.1f} px: {r['min_font_pt']} pt {r['min_font_text']!r} in a "
                         f"{r['png_width']} px figure drawn by: {r['cell'][:80]!r}")
    assert not small, "text too small to read on the page:\n" + "\n".join(small)
