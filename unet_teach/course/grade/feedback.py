"""One feedback file per submission, in Markdown, for the instructor to hand back.

``OUT/feedback/<student>__<exercise>.md`` says which exercise it is, the score, each
question's points out of its maximum and, for a question that failed, the message of the
check that failed (the hint included). A manually graded question is listed as awaiting
manual grading; a file that could not be graded says why. Each row of the report gets the
file's path, relative to ``OUT``, as ``"feedback"``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _block(text: str) -> list[str]:
    fence = _fence(text)
    return [f"{fence}text", text, fence, ""]


def feedback_text(row: dict) -> str:
    """The Markdown feedback of one row of the report.

    Example:
        >>> row = {"submission": "alice/01_pixel_metrics.ipynb", "student": "alice",
        ...        "assignment": "01_pixel_metrics", "total": 2.0, "max": 5.0,
        ...        "manual_max": 0.0, "error": None, "questions": {
        ...            "q1": {"points": 2.0, "max": 2.0, "manual": False, "error": None},
        ...            "q2": {"points": 0.0, "max": 3.0, "manual": False,
        ...                   "error": "AssertionError: dice is wrong ... Hint: 2 TP"}}}
        >>> print(feedback_text(row))
        # 01_pixel_metrics: 2 / 5 points
        <BLANKLINE>
        Student: alice. Submission: `01_pixel_metrics.ipynb`.
        <BLANKLINE>
        | question | points | result |
        |---|---|---|
        | q1 | 2 / 2 | passed |
        | q2 | 0 / 3 | failed |
        <BLANKLINE>
        ## What failed
        <BLANKLINE>
        ### q2 (0 / 3)
        <BLANKLINE>
        ```text
        AssertionError: dice is wrong ... Hint: 2 TP
        ```
    """
    exercise = row["assignment"]
    # the file's name, not the instructor's path to it
    who = f"Student: {row.get('student') or '?'}. Submission: `{Path(row['submission']).name}`."
    if exercise is None:
        return "\n".join([f"# {Path(row['submission']).name}: not graded", "", who, "",
                          "This file could not be graded:", "", *_block(row["error"] or ""),
                          "Check the file (open it in Jupyter) and hand it in again."]).rstrip()
    questions = row["questions"]
    waiting = [gid for gid, q in questions.items() if q["manual"] and q["points"] is None]
    lines = [f"# {exercise}: {row['total']:g} / {row['max']:g} points", "", who, ""]
    if waiting:
        lines += [f"{', '.join(waiting)} ({sum(questions[g]['max'] for g in waiting):g} points "
                  "in all) will be graded by hand; the total does not include them yet.", ""]
    lines += ["| question | points | result |", "|---|---|---|"]
    for gid, q in questions.items():
        if q["manual"]:
            lines.append(f"| {gid} | - / {q['max']:g} | awaiting manual grading |"
                         if q["points"] is None else
                         f"| {gid} | {q['points']:g} / {q['max']:g} | graded by hand |")
        else:
            result = "passed" if q["error"] is None else (
                "not run" if q["error"].startswith("not run") else "failed")
            lines.append(f"| {gid} | {q['points']:g} / {q['max']:g} | {result} |")
    lines.append("")
    if row["error"]:
        lines += ["## The notebook as a whole", "", *_block(row["error"])]
    # "not run" questions are explained once, by the notebook's own error above
    failed = [(gid, q) for gid, q in questions.items()
              if not q["manual"] and q["error"] and not q["error"].startswith("not run")]
    if failed:
        lines += ["## What failed", ""]
        for gid, q in failed:
            lines += [f"### {gid} ({q['points']:g} / {q['max']:g})", "",
                      *_block(q.get("message") or q["error"])]
    comments = [(gid, q) for gid, q in questions.items() if q["manual"] and q.get("comment")]
    if comments:
        lines += ["## Comments on your written answers", ""]
        for gid, q in comments:
            lines += [f"### {gid} ({q['points']:g} / {q['max']:g})", "", *_block(q["comment"])]
    return "\n".join(lines).rstrip()


def _file_name(row: dict) -> str:
    """``<student>__<exercise>.md`` with only safe characters in it."""
    exercise = row["assignment"] or Path(row["submission"]).stem
    name = f"{row.get('student') or Path(row['submission']).stem}__{exercise}"
    return re.sub(r"[^\w.@-]+", "_", name).strip("._") or "submission"


def write_feedback(report: list[dict], out_dir: str | os.PathLike) -> None:
    """Write ``out_dir/feedback/<student>__<exercise>.md`` for every row of ``report`` and
    record its path in the row (two submissions of one student for one exercise get
    ``..._2.md``)."""
    folder = Path(out_dir) / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for row in report:
        stem = _file_name(row)
        name, n = f"{stem}.md", 1
        while name in used:
            n += 1
            name = f"{stem}_{n}.md"
        used.add(name)
        (folder / name).write_text(feedback_text(row) + "\n", encoding="utf-8")
        row["feedback"] = f"feedback/{name}"
