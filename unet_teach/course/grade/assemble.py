"""Phase 2 of grading: the notebook to run, built from a submission and its source.

Every test cell (nbgrader ``grade: true``) and every locked code cell comes from the
*source* notebook, hidden tests included; a student's copy of such a cell, edited or not, is
dropped, and a deleted one is put back after the cell it follows in the source. Students' own
cells are kept with their text only: outputs cleared, nbgrader metadata not trusted (a cell
a student marks as a 100-point test is just a cell).
"""

from __future__ import annotations

import copy
import re

import nbformat

from ..release import METADATA_KEY, grade_id, is_locked, is_test, unmark_hidden_tests
from .read import Assignment


def _new_cell(cell_type: str, source: str, cell_id: str | None, metadata: dict | None = None):
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell}[cell_type]
    cell = make(source=source, metadata=copy.deepcopy(metadata or {}))
    if cell_id and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cell_id):
        cell.id = cell_id
    return cell


def _student_grade_id(cell) -> str | None:
    """The grade id a submitted cell claims (used to find its place, never to score it)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def assemble(submission: dict, assignment: Assignment):
    """The notebook the grader runs, and its test cells as ``[(cell index, grade_id, points)]``.

    ``submission`` is what :func:`~unet_teach.course.grade.read.read_submission` returns.
    Kept from the student: every cell that is not a copy of a test or locked code cell. Taken
    from the source: test cells (with their hidden tests) and locked code cells, each placed
    after the last cell that precedes it in the source and is present in the submission
    (matched by grade id, else cell id).
    """
    source_cells = assignment.nb.cells
    restored = [c for c in source_cells if c.cell_type == "code" and is_locked(c)]
    restored_gids = {grade_id(c) for c in restored}
    restored_ids = {c.get("id") for c in restored}

    kept = [c for c in submission["cells"]
            if _student_grade_id(c) not in restored_gids and c.get("id") not in restored_ids]
    by_gid, by_id = {}, {}
    for i, c in enumerate(kept):
        if _student_grade_id(c):
            by_gid.setdefault(_student_grade_id(c), i)
        if c.get("id"):
            by_id.setdefault(c["id"], i)

    after: dict[int, list] = {}               # position in `kept` (-1: the top) -> source cells
    anchor = -1
    for c in source_cells:
        if c.cell_type == "code" and is_locked(c):
            after.setdefault(anchor, []).append(c)
            continue
        pos = by_gid.get(grade_id(c)) if grade_id(c) else None
        if pos is None:
            pos = by_id.get(c.get("id"))
        if pos is not None:
            anchor = max(anchor, pos)          # never move back: tests stay in source order

    cells, tests, used_ids = [], [], set()

    def add(cell):
        if cell.get("id") in used_ids:          # ids must be unique in a valid notebook
            cell.pop("id", None)
            cell.id = nbformat.v4.new_code_cell().id
        used_ids.add(cell.get("id"))
        cells.append(cell)

    def add_restored(position):
        for c in after.get(position, []):
            text = unmark_hidden_tests(c.source, f"{assignment.name}/{grade_id(c)}")
            if is_test(c):
                tests.append((len(cells), grade_id(c), float(c.metadata.nbgrader["points"])))
            add(_new_cell("code", text, c.get("id"), {"nbgrader": dict(c.metadata.nbgrader)}))

    add_restored(-1)
    for i, c in enumerate(kept):
        # a student's cell keeps its text; its nbgrader metadata is not trusted for anything
        add(_new_cell(c["cell_type"], c["source"], c.get("id")))
        add_restored(i)
    nb = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(assignment.nb.metadata))
    nb.metadata.pop(METADATA_KEY, None)
    return nb, tests
