"""Turn instructor notebooks into student notebooks, the way nbgrader's ``generate_assignment``
does, without needing nbgrader.

An exercise's *source* notebook (``exercises/source/``) carries nbgrader's cell metadata,
``cell.metadata.nbgrader = {"grade_id", "points", "solution", "grade", "locked",
"schema_version": 3}``, and its markers:

* a **solution cell** (``solution: true``) holds the answer between ``### BEGIN SOLUTION``
  and ``### END SOLUTION``; the release keeps the lines around the markers (the function's
  signature and docstring) and puts a stub in their place::

      # YOUR CODE HERE
      raise NotImplementedError()

* a **grade cell** (``grade: true``, ``solution: false``) is an autograded test worth
  ``points``; lines between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are
  removed from the release and put back by the grader;
* a **manually graded answer** (``solution: true`` *and* ``grade: true``, usually a markdown
  cell) is worth ``points`` that a person gives; the release replaces the answer (between the
  markers, else the whole cell) by ``YOUR ANSWER HERE`` in markdown, the code stub in code,
  and the grader reports the question as awaiting manual grading;
* a **locked** cell (``locked: true``) may not be edited: the release marks grade and
  locked cells ``editable: false, deletable: false`` for Jupyter.

The release also clears every output and execution count, and writes
``metadata.unet_teach = {"assignment": <source file stem>}`` so that a renamed submission
("Copy of 01_pixel_metrics.ipynb") can still be matched to its source.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import nbformat

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
MARKDOWN_STUB = ["YOUR ANSWER HERE"]
METADATA_KEY = "unet_teach"          # notebook.metadata[METADATA_KEY]["assignment"]


class ReleaseError(ValueError):
    """A source notebook that cannot be released safely (e.g. unbalanced markers)."""


# --------------------------------------------------------------------------- cell kinds

def nbgrader_meta(cell) -> dict:
    """The cell's ``metadata.nbgrader`` dict (empty if it has none)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def grade_id(cell) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_solution(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell) -> bool:
    """An autograded test cell: code, ``grade: true``, ``solution: false``."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_manual(cell) -> bool:
    """A manually graded answer: ``solution: true`` and ``grade: true`` (any cell type).

    Example:
        >>> is_manual({"cell_type": "markdown", "metadata": {"nbgrader": {
        ...     "grade_id": "q6", "solution": True, "grade": True, "points": 2}}})
        True
    """
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and bool(meta.get("solution"))


def is_locked(cell) -> bool:
    """Cells students may not change: locked read-only cells and test cells."""
    return is_test(cell) or (bool(nbgrader_meta(cell).get("locked")) and not is_solution(cell))


# --------------------------------------------------------------------------- markers

def _source_text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def replace_regions(text: str, begin: str, end: str, stub: list[str] | None,
                    where: str = "cell") -> str:
    """Replace every ``begin`` ... ``end`` region of ``text`` (marker lines included) by
    ``stub`` indented like the ``begin`` line, or drop it when ``stub`` is ``None``.

    Raises ``ReleaseError`` for a marker without its partner.

    Example:
        >>> src = "def f(x):\\n    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION"
        >>> print(replace_regions(src, SOLUTION_BEGIN, SOLUTION_END, CODE_STUB))
        def f(x):
            # YOUR CODE HERE
            raise NotImplementedError()
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(text.split("\n"), start=1):
        if begin in line:                        # nbgrader's rule: the marker anywhere on the line
            if inside:
                raise ReleaseError(f"{where}, line {number}: a second {begin!r} before "
                                   f"{end!r}; close the first region")
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out += [indent + s for s in stub or []]
        elif end in line:
            if not inside:
                raise ReleaseError(f"{where}, line {number}: {end!r} without {begin!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ReleaseError(f"{where}: {begin!r} is never closed; add a {end!r} line")
    return "\n".join(out)


def strip_hidden_tests(text: str, where: str = "cell") -> str:
    """Drop the hidden-test regions (and their marker lines) from a test cell's code."""
    return replace_regions(text, HIDDEN_BEGIN, HIDDEN_END, None, where)


def unmark_hidden_tests(text: str, where: str = "cell") -> str:
    """Keep the hidden tests but drop their marker lines (what the grader runs).

    Example:
        >>> print(unmark_hidden_tests("check(f)\\n### BEGIN HIDDEN TESTS\\nassert f(0) == 0\\n"
        ...                           "### END HIDDEN TESTS"))
        check(f)
        assert f(0) == 0
    """
    replace_regions(text, HIDDEN_BEGIN, HIDDEN_END, None, where)      # validate the markers
    return "\n".join(line for line in text.split("\n")
                     if HIDDEN_BEGIN not in line and HIDDEN_END not in line)


# --------------------------------------------------------------------------- release

def check_source(nb, name: str = "notebook") -> None:
    """Raise ``ReleaseError`` if releasing ``nb`` could publish an answer or confuse grading:
    duplicate or missing grade ids, solution markers outside solution cells, hidden tests
    outside test cells."""
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        where = f"{name}, cell {index}" + (f" ({meta['grade_id']})" if meta.get("grade_id") else "")
        text = _source_text(cell)
        if meta and (meta.get("solution") or meta.get("grade") or meta.get("locked")):
            gid = meta.get("grade_id")
            if not gid:
                raise ReleaseError(f"{where}: nbgrader cells need a grade_id")
            if gid in seen:
                raise ReleaseError(f"{where}: grade_id {gid!r} is used twice; make it unique")
            seen.add(gid)
        if (is_test(cell) or is_manual(cell)) and not isinstance(meta.get("points"), (int, float)):
            kind = "a test cell" if is_test(cell) else "a manually graded answer"
            raise ReleaseError(f"{where}: {kind} needs numeric 'points'")
        if SOLUTION_BEGIN in text and not is_solution(cell):
            raise ReleaseError(f"{where}: {SOLUTION_BEGIN!r} in a cell not marked as a solution "
                               "cell would be released with the answer; set nbgrader.solution")
        if HIDDEN_BEGIN in text and not is_test(cell):
            raise ReleaseError(f"{where}: hidden tests in a cell that is not a test cell would be "
                               "released; set nbgrader.grade (and solution: false)")


def release_notebook(nb, assignment: str):
    """The student version of the source notebook ``nb`` (a new notebook; ``nb`` is kept).

    Example:
        >>> src = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        ...     "x = 1\\n### BEGIN SOLUTION\\nx = 2\\n### END SOLUTION", id="a",
        ...     metadata={"nbgrader": {"grade_id": "q1", "solution": True, "grade": False,
        ...                            "locked": False, "schema_version": 3}})])
        >>> print(release_notebook(src, "demo").cells[0].source)
        x = 1
        # YOUR CODE HERE
        raise NotImplementedError()
    """
    check_source(nb, assignment)
    out = copy.deepcopy(nb)
    for index, cell in enumerate(out.cells):
        where = f"{assignment}, cell {index}"
        text = _source_text(cell)
        if is_solution(cell):
            stub = CODE_STUB if cell.cell_type == "code" else MARKDOWN_STUB
            if SOLUTION_BEGIN in text:
                text = replace_regions(text, SOLUTION_BEGIN, SOLUTION_END, stub, where)
            else:                                   # nbgrader's rule: no markers, whole cell
                text = "\n".join(stub)
        if is_test(cell):
            text = strip_hidden_tests(text, where).rstrip("\n")
        cell.source = text
        if is_locked(cell):
            cell.metadata["editable"] = False
            cell.metadata["deletable"] = False
            cell.metadata["nbgrader"]["locked"] = True
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)        # nbclient's timing records
        meta = nbgrader_meta(cell)
        if meta.get("grade") or meta.get("solution") or meta.get("locked"):
            meta["checksum"] = nbgrader_checksum(cell)
    out.metadata[METADATA_KEY] = {"assignment": assignment}
    return out


def nbgrader_checksum(cell) -> str:
    """The checksum nbgrader's ``generate_assignment`` writes into a released cell's metadata
    (``nbgrader.utils.compute_checksum``): the MD5 of the source, the cell type, whether it
    is a grade, a solution and a locked cell (in nbgrader's sense: a grade cell that is not a
    solution is locked), its grade id and, for a grade cell, its points. With it, nbgrader's
    ``autograde`` can tell an unchanged released cell from an edited one.

    Example:
        >>> nbgrader_checksum({"cell_type": "code", "source": "assert f(1) == 2", "metadata": {
        ...     "nbgrader": {"grade_id": "q1", "grade": True, "solution": False, "points": 2}}})
        '2d4ea0cff05ad306581407803bee7283'
    """
    meta = nbgrader_meta(cell)
    grade, solution = meta.get("grade", False), meta.get("solution", False)
    locked = False if solution else True if grade else meta.get("locked", False)
    m = hashlib.md5()
    for part in (cell["source"], cell["cell_type"], str(grade), str(solution), str(locked),
                 meta["grade_id"]):
        m.update(str(part).encode("utf-8"))
    if grade:
        m.update(str(float(meta["points"])).encode("utf-8"))
    return m.hexdigest()


def source_notebooks(source_dir: str | os.PathLike) -> list[Path]:
    """The exercise source notebooks of a folder (not its sub-folders), sorted by name."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(f"source folder {source_dir} not found; pass --source with the "
                                "folder holding the instructor notebooks (exercises/source)")
    return sorted(p for p in source_dir.glob("*.ipynb") if p.is_file())


def _released(path: Path):
    nb = nbformat.read(path, as_version=4)
    return release_notebook(nb, path.stem)


def release(source_dir: str | os.PathLike = "exercises/source",
            release_dir: str | os.PathLike = "exercises/release") -> list[Path]:
    """Write the student version of every source notebook; return the paths written.

    Validates each notebook first (``nbformat.validate``), so a broken source stops the release
    before anything is written.
    """
    sources = source_notebooks(source_dir)
    released = []
    for path in sources:
        nb = _released(path)
        nbformat.validate(nb)
        released.append((path.name, nb))
    release_dir = Path(release_dir)
    release_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, nb in released:
        nbformat.write(nb, release_dir / name)
        written.append(release_dir / name)
    return written


def stale(source_dir: str | os.PathLike = "exercises/source",
          release_dir: str | os.PathLike = "exercises/release") -> list[str]:
    """What is out of date in ``release_dir``: one line per problem, empty when up to date.

    Compares JSON content, not bytes, so a release notebook re-saved with other formatting
    still counts as up to date.
    """
    problems = []
    release_dir = Path(release_dir)
    sources = source_notebooks(source_dir)
    for path in sources:
        target = release_dir / path.name
        if not target.exists():
            problems.append(f"{target}: missing")
            continue
        fresh = json.loads(nbformat.writes(_released(path)))
        try:
            current = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            problems.append(f"{target}: unreadable ({err})")
            continue
        if current != fresh:
            problems.append(f"{target}: differs from the release of {path}")
    names = {p.name for p in sources}
    for extra in sorted(release_dir.glob("*.ipynb")):
        if extra.name not in names:
            problems.append(f"{extra}: has no source notebook (delete it?)")
    return problems
