"""Phase 1 of grading: find the submissions, read each one, tell which exercise it answers.

Everything here runs in the grader's own process before any student code does, so a file is
judged on the bytes it had when the batch started. A file that cannot be graded raises
:class:`SubmissionError`, whose message is the reason the report shows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..release import METADATA_KEY, grade_id, is_manual, is_test, source_notebooks

MAX_NOTEBOOK_BYTES = 50_000_000      # a larger file is refused unread


# --------------------------------------------------------------------------- exercises

@dataclass
class Assignment:
    """One exercise: its source notebook ``nb`` (nbformat's ``NotebookNode``, a dict with
    attribute access) and its questions, in source order, as ``(grade_id, points, manual)``;
    ``manual`` marks a question a person grades."""

    name: str
    path: Path
    nb: dict
    questions: list[tuple[str, float, bool]] = field(default_factory=list)

    @property
    def tests(self) -> list[tuple[str, float]]:
        """The automatically graded questions, ``(grade_id, points)``."""
        return [(gid, points) for gid, points, manual in self.questions if not manual]

    @property
    def max(self) -> float:
        """Points of the automatically graded questions."""
        return float(sum(points for _, points in self.tests))

    @property
    def manual_max(self) -> float:
        """Points of the manually graded questions (not in :attr:`max`)."""
        return float(sum(points for _, points, manual in self.questions if manual))


def load_assignments(source_dir: str | os.PathLike = "exercises/source") -> dict[str, Assignment]:
    """Every source notebook of ``source_dir``, keyed by file stem."""
    assignments = {}
    for path in source_notebooks(source_dir):
        nb = nbformat.read(path, as_version=4)
        questions = [(grade_id(c), float(c.metadata.nbgrader["points"]), is_manual(c))
                     for c in nb.cells if is_test(c) or is_manual(c)]
        assignments[path.stem] = Assignment(path.stem, path, nb, questions)
    return assignments


# --------------------------------------------------------------------------- finding files

def collect(paths) -> list[tuple[Path, str]]:
    """Expand folders (recursively, ``*.ipynb``, checkpoints skipped), keep files as given,
    and pair each file with its student: the first folder under the folder given, as in
    ``submissions/<student>/<exercise>.ipynb``, else the file's stem.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ["alice/01_pixel_metrics.ipynb", "bob.ipynb"]:
        ...     (root / name).parent.mkdir(exist_ok=True)
        ...     _ = (root / name).write_text("{}")
        >>> [(p.name, student) for p, student in collect([root])]
        [('01_pixel_metrics.ipynb', 'alice'), ('bob.ipynb', 'bob')]
    """
    found: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            for q in sorted(q for q in p.rglob("*.ipynb")
                            if q.is_file() and ".ipynb_checkpoints" not in q.parts):
                inside = q.relative_to(p).parts
                found.append((q, inside[0] if len(inside) > 1 else q.stem))
        else:
            found.append((p, p.stem))
    unique, seen = [], set()
    for p, student in found:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            unique.append((p, student))
    return unique


def match(path: Path, nb, assignments: dict[str, Assignment]) -> Assignment | None:
    """The exercise a submission answers: the release's id in its metadata, else its file name
    (exactly, else the one exercise name it contains, as in ``Copy of 01_x (2).ipynb``).

    Example:
        >>> a = {"01_pixel_metrics": "A"}
        >>> match(Path("Copy of 01_pixel_metrics (2).ipynb"), {"metadata": {}}, a)
        'A'
        >>> match(Path("mine.ipynb"), {"metadata": {"unet_teach": {"assignment": "01_pixel_metrics"}}}, a)
        'A'
    """
    meta = nb.get("metadata", {}).get(METADATA_KEY)
    if isinstance(meta, dict) and meta.get("assignment") in assignments:
        return assignments[meta["assignment"]]
    if path.stem in assignments:
        return assignments[path.stem]
    inside = [name for name in assignments if name in path.stem]
    return assignments[inside[0]] if len(inside) == 1 else None


# --------------------------------------------------------------------------- reading

class SubmissionError(ValueError):
    """A submission that cannot be graded; the message is the reason shown in the report."""


def _text(source) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    raise SubmissionError("not a valid notebook: a cell's source is neither text nor a list "
                          "of lines")


def read_submission(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES):
    """Parse a submitted file into a v4 notebook or raise ``SubmissionError`` with the reason.

    Only what grading needs is kept: each cell's type, text, metadata and id.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "homework.ipynb"
        >>> _ = path.write_text("[1, 2]")
        >>> read_submission(path)
        Traceback (most recent call last):
        ...
        unet_teach.course.grade.read.SubmissionError: not a notebook: the JSON is not an object
    """
    if not path.exists():
        raise SubmissionError("file not found")
    if not path.is_file():
        raise SubmissionError("not a file")
    if path.suffix.lower() != ".ipynb":
        kind = f"a {path.suffix} file" if path.suffix else "a file without an extension"
        raise SubmissionError(f"not a notebook: expected a .ipynb file, got {kind}")
    size = path.stat().st_size
    if size > max_bytes:
        raise SubmissionError(f"file is {size / 1e6:.0f} MB, more than the {max_bytes / 1e6:.0f} "
                              "MB allowed; clear the outputs (Edit > Clear All Outputs), save, "
                              "resubmit")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise SubmissionError("corrupt notebook: not UTF-8 text (a binary file renamed "
                              ".ipynb?)") from None
    except ValueError as err:
        raise SubmissionError(f"corrupt notebook: invalid JSON ({err}); was the file saved "
                              "completely?") from None
    if not isinstance(data, dict):
        raise SubmissionError("not a notebook: the JSON is not an object")
    cells = data.get("cells")
    if cells is None and data.get("worksheets"):          # nbformat 3
        try:
            data = dict(nbformat.convert(nbformat.from_dict(data), 4))
        except Exception as err:                          # noqa: BLE001 - any reason is a reason
            raise SubmissionError(f"not a valid notebook ({err})") from None
        cells = data.get("cells")
    if not isinstance(cells, list):
        raise SubmissionError("not a notebook: it has no 'cells' list")
    if not cells:
        raise SubmissionError("the notebook has no cells")
    clean = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise SubmissionError("not a valid notebook: a cell has no valid cell_type")
        meta = cell.get("metadata")
        clean.append({"cell_type": cell["cell_type"], "source": _text(cell.get("source", "")),
                      "metadata": meta if isinstance(meta, dict) else {},
                      "id": cell.get("id") if isinstance(cell.get("id"), str) else None})
    meta = data.get("metadata")
    return {"cells": clean, "metadata": meta if isinstance(meta, dict) else {}}
