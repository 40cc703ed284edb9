"""The teaching code stays apart from the course tooling.

Everything a chapter imports lives in ``unet_teach/`` outside ``course/``; the release, the
checks, the grader and the ``unet-teach`` command live in ``unet_teach/course/``, and only
they use ``nbformat`` and ``nbclient``. The one module outside that may import the course is
``unet_teach/checks.py``, which re-exports the checks under the name students' notebooks use.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unet_teach"
BANNED = ("nbformat", "nbclient", "unet_teach.course")
RE_EXPORT = PACKAGE / "checks.py"


#: The command's entry points put the app, the course and the bench together: not teaching code.
COMMAND = {PACKAGE / "cli.py", PACKAGE / "__main__.py"}


def teaching_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if "course" not in p.relative_to(PACKAGE).parts and p != RE_EXPORT
                  and p not in COMMAND)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute names (relative imports resolved against the
    file's package; ``from . import course`` counts as ``unet_teach.course``)."""
    parts = ["unet_teach", *path.relative_to(PACKAGE).with_suffix("").parts]
    package = parts if path.name == "__init__.py" else parts[:-1]
    if package[-1:] == ["__init__"]:
        package = package[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def _banned(names: set[str]) -> set[str]:
    return {n for n in names for b in BANNED if n == b or n.startswith(b + ".")}


def test_imported_resolves_relative_imports(tmp_path, monkeypatch):
    # a hand-worked case for the helper itself, on a file laid out like the package
    fake = tmp_path / "unet_teach"
    (fake / "sub").mkdir(parents=True)
    (fake / "sub" / "mod.py").write_text("from .. import course\nfrom ..course.grade import grade\n"
                                         "from . import sibling\nimport nbclient.util\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    names = imported(fake / "sub" / "mod.py")
    assert _banned(names) == {"unet_teach.course", "unet_teach.course.grade",
                              "unet_teach.course.grade.grade", "nbclient.util"}
    assert "unet_teach.sub.sibling" in names


def test_there_are_teaching_modules_to_check():
    names = {p.name for p in teaching_modules()}
    assert {"__init__.py", "models.py", "metrics.py", "data.py"} <= names
    assert "checks.py" not in names


@pytest.mark.parametrize("path", teaching_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_teaching_code_does_not_import_the_course_tooling(path):
    assert not _banned(imported(path)), (
        f"{path.relative_to(PACKAGE.parent)} imports {sorted(_banned(imported(path)))}; "
        "the teaching code must not depend on the course tooling (unet_teach/course)")


def test_checks_re_export_is_thin():
    tree = ast.parse(RE_EXPORT.read_text(encoding="utf-8"))
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    def thin(node):                    # re-exports, and the lazy ones' module __getattr__
        return ((isinstance(node, ast.ImportFrom) and node.module.startswith("course.checks"))
                or (isinstance(node, ast.Import) and [a.name for a in node.names] == ["importlib"])
                or (isinstance(node, ast.Assign) and node.targets[0].id == "_LAZY")
                or (isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
                    and len(node.body) <= 3))
    assert body and all(thin(node) for node in body), \
        "unet_teach/checks.py: a docstring and re-exports only"


def test_importing_the_teaching_code_loads_no_notebook_machinery():
    modules = sorted("unet_teach." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
                     for p in teaching_modules() if p.name != "__init__.py")
    code = (f"import sys\nimport {', '.join(modules)}\nimport unet_teach.checks\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nbformat', 'nbclient')"
            " or m.startswith('unet_teach.course.grade')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"loaded: {result.stdout}"


# ------------------------------------------------------------- the app stays apart too

APP = ("unet_teach.app", "unet_teach.course")
CHAPTERS = sorted((PACKAGE.parent / "notebooks").glob("*.ipynb"))


def _from(names: set[str], prefixes) -> set[str]:
    return {n for n in names for b in prefixes if n == b or n.startswith(b + ".")}


def notebook_imports(path: Path) -> set[str]:
    """Every module the code cells of a notebook import (IPython magics and shell lines
    left out)."""
    import json

    names = set()
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        code = "\n".join(line for line in source.splitlines()
                         if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code, filename=f"{path.name}")):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_notebook_imports_sees_an_app_import(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["%matplotlib inline\n",
                                                      "from unet_teach.app.train import x\n"]},
                    {"cell_type": "markdown", "source": ["import unet_teach.course"]}]}
    path = tmp_path / "x.ipynb"
    path.write_text(__import__("json").dumps(nb))
    assert _from(notebook_imports(path), APP) == {"unet_teach.app.train",
                                                  "unet_teach.app.train.x"}


def test_there_are_chapters_to_check():
    assert len(CHAPTERS) >= 10


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_import_teaching_modules_only(path):
    assert not _from(notebook_imports(path), APP), (
        f"{path.name}: a chapter imports the teaching modules only; move what it needs out "
        "of unet_teach.app / unet_teach.course into a teaching module")


@pytest.mark.parametrize("path", [p for p in teaching_modules()
                                  if "app" not in p.relative_to(PACKAGE).parts],
                         ids=lambda p: p.stem)
def test_teaching_code_does_not_import_the_app(path):
    assert not _from(imported(path), ("unet_teach.app",)), (
        f"{path.relative_to(PACKAGE)}: the teaching code must not depend on the app "
        "(unet_teach/app)")
