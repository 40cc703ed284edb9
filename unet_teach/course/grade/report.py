"""The batch's results as files and as a table: ``report.json``, ``grades.csv``, the terminal.

``report.json`` is the list of rows as they are (see :mod:`~unet_teach.course.grade.score`).
``grades.csv`` has one line per submission: ``student``, ``submission``, ``total``, ``max``,
one column per question (its points; ``manual`` for a manually graded one), ``error`` and
``flags`` (how many lines of the student's code reach for the grader's machinery; see
:mod:`~unet_teach.course.grade.flags`). ``flags.md`` lists those lines, submission by
submission, for the instructor to read (it is never handed back).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .read import Assignment


def question_ids(report: list[dict], assignments: dict[str, Assignment] | None = None) -> list[str]:
    """Grade ids of the exercises graded in ``report``, in exercise order, then any others in
    order of appearance (an exercise nobody handed in gets no columns)."""
    graded = {row.get("assignment") for row in report}
    ids: list[str] = []
    for a in (assignments or {}).values():
        if a.name not in graded:
            continue
        ids += [gid for gid, _, _ in a.questions if gid not in ids]
    for row in report:
        ids += [gid for gid in row["questions"] if gid not in ids]
    return ids


def _cell(question: dict | None, missing: str) -> str:
    """A question's entry in a table: its points, ``manual``, or ``missing``."""
    if question is None:
        return missing
    if question.get("manual") and question.get("points") is None:
        return "manual"
    return f"{question['points']:g}"


def write_report(report: list[dict], out_dir: str | os.PathLike,
                 assignments: dict[str, Assignment] | None = None) -> None:
    """Write ``report.json`` (the list as is) and ``grades.csv`` (one row per submission)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    ids = question_ids(report, assignments)
    with open(out_dir / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "submission", "total", "max", *ids, "error", "flags"])
        for row in report:
            q = row["questions"]
            writer.writerow([row.get("student", ""), row["submission"], f"{row['total']:g}",
                             f"{row['max']:g}", *[_cell(q.get(g), "") for g in ids],
                             row["error"] or "", len(row.get("flags") or [])])
    (out_dir / "flags.md").write_text(flags_text(report) + "\n", encoding="utf-8")


def flags_text(report: list[dict]) -> str:
    """``flags.md``: for each submission with flags, the lines and why each is listed.

    Example:
        >>> print(flags_text([{"submission": "bob/ex.ipynb", "flags": [{"cell": 4, "line": 2,
        ...     "code": "checks.check_dice = print", "why": "replaces the checks"}]}]))
        # Submissions whose code reaches for the grader's machinery
        <BLANKLINE>
        A flag says where to look, not that the student cheated. The points were decided outside the kernel either way.
        <BLANKLINE>
        ## bob/ex.ipynb
        <BLANKLINE>
        - cell 4, line 2: `checks.check_dice = print` (replaces the checks)
    """
    lines = ["# Submissions whose code reaches for the grader's machinery", "",
             "A flag says where to look, not that the student cheated. The points were "
             "decided outside the kernel either way.", ""]
    flagged = [row for row in report if row.get("flags")]
    if not flagged:
        return "\n".join(lines + ["None."])
    for row in flagged:
        lines += [f"## {row['submission']}", ""]
        for f in row["flags"]:
            code = f["code"].replace("`", "'")
            lines.append(f"- cell {f['cell']}, line {f['line']}: `{code}` ({f['why']})")
        lines.append("")
    return "\n".join(lines).rstrip()


def format_table(report: list[dict], width: int = 60) -> str:
    """The report as a plain-text table: one line per submission, points per question.

    Example:
        >>> print(format_table([{"submission": "a.ipynb", "total": 3.0, "max": 5.0, "error": None,
        ...                      "questions": {"q1": {"points": 3.0, "max": 3.0, "error": None},
        ...                                    "q2": {"points": 0.0, "max": 2.0, "error": "X"}}}]))
        submission  score  q1  q2  flags  error
        a.ipynb     3/5    3   0
    """
    ids = question_ids(report)
    header = ["submission", "score", *ids, "flags", "error"]
    lines = [header]
    for row in report:
        q = row["questions"]
        error = row["error"] or ""
        if len(error) > width:
            error = error[:width - 3] + "..."
        lines.append([row["submission"], f"{row['total']:g}/{row['max']:g}",
                      *[_cell(q.get(g), "-") for g in ids],
                      str(len(row.get("flags") or [])) if row.get("flags") else "", error])
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)
