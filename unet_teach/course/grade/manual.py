"""Points a person gives: the manually graded questions, from a CSV file into the report.

``unet-teach grade --manual FILE`` reads FILE, a CSV with one line per (student, exercise,
question)::

    student,exercise,question,max,points,comment
    alice,04_losses,q4_losses_in_words,2,1.5,"right about the border; Dice is not convex"
    bob,04_losses,q4_losses_in_words,2,,

and folds the points into each row of the report: the question's ``points`` and
``comment``, the row's ``total`` (its ``max`` always counts the manual questions), and so
into ``grades.csv``, the feedback files and the roster. An empty ``points`` means "not graded
yet": the question stays "awaiting manual grading". Where FILE does not exist yet, the grader
writes it as a template, one line per manual question of every graded submission, points
empty, for the instructor to fill in; rerunning with the same FILE keeps the points. Lines
that match no graded submission, or give more points than the question has, are reported,
not applied.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ...files import write_atomic

FIELDS = ["student", "exercise", "question", "max", "points", "comment"]


class ManualError(ValueError):
    """The manual-points file cannot be used; the message says where and why."""


def _norm(text: str) -> str:
    return text.strip().casefold()


def read_manual(path: str | os.PathLike) -> dict[tuple[str, str, str], tuple[float | None, str]]:
    """``{(student, exercise, question): (points or None, comment)}`` from the CSV at ``path``
    (comma, semicolon or tab; a byte-order mark is fine; student matched without case)."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManualError(f"{path}: not UTF-8 text; save it as CSV (UTF-8)") from None
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = max([",", ";", "\t"], key=first.count)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    missing = [f for f in ("student", "exercise", "question", "points")
               if f not in (reader.fieldnames or [])]
    if missing:
        raise ManualError(f"{path}: the header needs the columns {', '.join(FIELDS)}; "
                          f"{', '.join(missing)} missing")
    entries: dict[tuple[str, str, str], tuple[float | None, str]] = {}
    for n, line in enumerate(reader, start=2):
        key = (_norm(line["student"] or ""), (line["exercise"] or "").strip(),
               (line["question"] or "").strip())
        if not all(key):
            raise ManualError(f"{path}, line {n}: student, exercise and question are required")
        text_points = (line["points"] or "").strip().replace(",", ".")
        try:
            points = float(text_points) if text_points else None
        except ValueError:
            raise ManualError(f"{path}, line {n}: points {line['points']!r} is not a number "
                              "(leave it empty for 'not graded yet')") from None
        if points is not None and (points < 0 or points != points):
            raise ManualError(f"{path}, line {n}: points must be 0 or more, not {text_points}")
        if key in entries:
            raise ManualError(f"{path}, line {n}: {key[0]}, {key[1]}, {key[2]} is given twice")
        entries[key] = (points, (line.get("comment") or "").strip())
    return entries


def apply_manual(report: list[dict], entries: dict) -> list[str]:
    """Give every manual question of ``report`` its points and comment from ``entries``
    (:func:`read_manual`) and update each row's total; return the problems, one line each."""
    problems, used = [], set()
    for row in report:
        for gid, q in row.get("questions", {}).items():
            if not q.get("manual"):
                continue
            key = (_norm(row.get("student") or ""), row["assignment"], gid)
            if key not in entries:
                continue
            used.add(key)
            points, comment = entries[key]
            if points is not None and points > q["max"]:
                problems.append(f"{row['student']}, {row['assignment']}, {gid}: {points:g} points "
                                f"given, the question has {q['max']:g}; not applied")
                continue
            q["points"], q["comment"] = points, comment
        row["total"] = float(sum(q["points"] or 0.0 for q in row.get("questions", {}).values()))
    for key in entries.keys() - used:
        problems.append(f"{', '.join(key)}: no graded submission has this manual question; "
                        "not applied")
    return sorted(problems)


def write_template(report: list[dict], path: str | os.PathLike,
                   entries: dict | None = None) -> int:
    """Write ``path``: one line per manual question of every graded row (points and comment
    from ``entries`` where given, else empty); return how many still await points."""
    lines, waiting = [], 0
    for row in sorted(report, key=lambda r: (r.get("student") or "", r.get("assignment") or "")):
        for gid, q in row.get("questions", {}).items():
            if not q.get("manual"):
                continue
            points, comment = (entries or {}).get(
                (_norm(row.get("student") or ""), row["assignment"], gid), (None, ""))
            waiting += points is None
            lines.append([row.get("student") or "", row["assignment"], gid, f"{q['max']:g}",
                          "" if points is None else f"{points:g}", comment])
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(FIELDS)
            writer.writerows(lines)

    write_atomic(path, write)          # the instructor's points are never left half-written
    return waiting
