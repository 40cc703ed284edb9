"""Committed notebooks carry no outputs, and their Colab install cells agree with the one
place the repository's address is set: _config.yml."""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for folder in ("notebooks", "exercises") for p in (ROOT / folder).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_there_are_notebooks():
    assert CHAPTERS, "no chapter notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_stripped(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; clear them"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_installs_itself_in_colab(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert "google.colab" in source, "the first code cell must install unet_teach in Colab"
    assert f"git+{repository_url()}" in source, "Colab install URL differs from _config.yml"


def test_pyproject_points_at_the_same_repository():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'Homepage = "{repository_url()}"' in text


HIDDEN = {"hide-input", "remove-input", "hide-cell", "remove-cell"}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_visible_code_fits_the_page(path):
    # the book sets code small enough for 88 characters (_static/code.css); longer lines
    # scroll sideways, and a reader misses their end
    nb = json.loads(path.read_text(encoding="utf-8"))
    long = [(i, len(line)) for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
            and not HIDDEN & set(cell.get("metadata", {}).get("tags", []))
            for line in "".join(cell["source"]).splitlines() if len(line) > 88]
    assert not long, f"{path.name}: (cell, length) of visible lines over 88 characters: {long}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_prose_is_written_not_generated(path):
    # measured values reach the text through glue; code may caption a table it builds, but
    # it never writes the chapter's sentences, and never chooses between them
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if "Markdown(" not in source:
            continue
        assert "markdown_table(" in source, f"{path.name} cell {i}: Markdown without a table"
        assert " if " not in source.split("Markdown(", 1)[1].split("markdown_table(")[0], (
            f"{path.name} cell {i}: a caption chosen by an if")


@pytest.mark.kernel
def test_a_chapter_run_outside_the_book_shows_every_number_its_text_quotes(monkeypatch):
    # Opened in Jupyter or Colab, the text's {glue:text}`name` roles stay raw: each value
    # must appear in a cell's output (page.glue prints `name = value` outside the build).
    # Chapter 3 is the shortest chapter that quotes measured values.
    import re

    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "notebooks" / "03_sliding_window_cost.ipynb"
    nb = nbformat.read(path, as_version=4)
    quoted = {m for c in nb.cells if c.cell_type == "markdown"
              for m in re.findall(r"\{glue:text\}`([A-Za-z0-9_]+)", c.source)}
    assert quoted, "chapter 3 quotes no glued value"
    monkeypatch.delenv("UNET_TEACH_BOOK_BUILD", raising=False)   # the kernel inherits it
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs if o.output_type == "stream")
    missing = sorted(k for k in quoted if not re.search(rf"^{k} = \S", printed, re.M))
    assert not missing, f"values the text quotes but the run does not show: {missing}"
