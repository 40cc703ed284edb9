"""Put a batch's grades into the gradebook CSV a learning platform exports (Canvas, Moodle).

The instructor exports the course's gradebook, names the column that holds what the
submission folders are called (``--roster-key "SIS Login ID"``, ``"Email address"``, ``"ID
number"``), and gets the same CSV back with one column per graded exercise holding each
student's total (the automatically graded points; see :mod:`~unet_teach.course.grade.score`).
Everything else is kept: the other columns and their order, rows without a submission (their
grade left blank), extra rows such as Canvas's ``Points Possible`` (which gets each
exercise's maximum), the delimiter, a UTF-8 byte-order mark and the line endings. An
exercise column already there is filled in place; a new one is added at the end.

Nothing is dropped in silence. :func:`fill_roster` returns the problems, one dict each:
a submission whose student is in no roster row (``not in roster``), a roster row without a
submission for an exercise graded (``no submission``), a file the grader could not place
(``not graded``), two submissions for one student and exercise (``several submissions``:
the higher total is kept) and a key that two rows share (``duplicate key``: both are filled).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

PROBLEM_FIELDS = ["problem", "student", "exercise", "submission", "detail"]


class RosterError(ValueError):
    """A roster that cannot be used; the message says how to fix it."""


@dataclass
class Roster:
    """A gradebook CSV as read: ``header``, ``rows`` (lists of strings), the key column and
    what it takes to write the file back the way it came (delimiter, BOM, line ending)."""

    header: list[str]
    rows: list[list[str]]
    key: int
    delimiter: str = ","
    bom: bool = False
    newline: str = "\r\n"


def _norm(name: str) -> str:
    """Names compare without case or surrounding spaces (``Alice@Uni.edu`` = ``alice@uni.edu``)."""
    return name.strip().casefold()


def _delimiter(first_line: str) -> str:
    """The one of ``,``, ``;`` and tab that splits the header into the most columns (Moodle
    lets the user choose; Canvas uses commas)."""
    def width(d):
        return len(next(csv.reader([first_line], delimiter=d), []))
    return max([",", ";", "\t"], key=width)


def read_roster(path: str | os.PathLike, key: str) -> Roster:
    """Read the gradebook CSV at ``path`` and find its column ``key`` (exactly, else ignoring
    case); raise :class:`RosterError` saying what to do when either is missing.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "grades.csv"
        >>> _ = path.write_text("First name,Last name,Email address\\nAlice,Ng,a@uni.edu\\n")
        >>> read_roster(path, "email address").rows
        [['Alice', 'Ng', 'a@uni.edu']]
        >>> read_roster(path, "Login")
        Traceback (most recent call last):
        ...
        unet_teach.course.roster.RosterError: grades.csv has no column 'Login'; --roster-key must name one of: 'First name', 'Last name', 'Email address'
    """
    path = Path(path)
    if not path.is_file():
        raise RosterError(f"roster {path} not found; --roster takes the gradebook CSV exported "
                          "from your course (Canvas: Grades > Export; Moodle: Grades > Export "
                          "> Plain text file)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RosterError(f"{path.name} is not UTF-8 text; save it as 'CSV UTF-8' and try "
                          "again") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise RosterError(f"{path.name} is empty; it needs a header row naming its columns")
    delimiter = _delimiter(lines[0])
    table = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    header, rows = table[0], table[1:]           # blank lines stay, as empty rows
    names = [h.strip() for h in header]
    if key.strip() in names:
        index = names.index(key.strip())
    elif [_norm(h) for h in header].count(_norm(key)) == 1:
        index = [_norm(h) for h in header].index(_norm(key))
    else:
        raise RosterError(f"{path.name} has no column {key!r}; --roster-key must name one of: "
                          + ", ".join(repr(h) for h in header))
    return Roster(header, rows, index, delimiter, raw.startswith(b"\xef\xbb\xbf"),
                  "\r\n" if "\r\n" in text else "\n")


def _is_points_possible(row: list[str]) -> bool:
    """Canvas's second row, ``    Points Possible,,,,,10,...``."""
    return bool(row) and row[0].strip().casefold() == "points possible"


def fill_roster(roster: Roster, report: list[dict]) -> list[dict]:
    """Add (or fill) one column per exercise graded in ``report`` with each student's total,
    matching the roster's key column to the rows' ``student``; return the problems (see the
    module's docstring). ``roster`` is changed in place.

    Example:
        >>> roster = Roster(["Name", "Login"], [["    Points Possible", ""], ["Alice", "alice"],
        ...                                     ["Bob", "bob"]], key=1)
        >>> report = [{"student": "alice", "assignment": "01", "total": 7.0, "max": 10.0,
        ...            "submission": "alice/01.ipynb", "error": None}]
        >>> [p["problem"] + ": " + p["student"] for p in fill_roster(roster, report)]
        ['no submission: bob']
        >>> roster.header, roster.rows
        (['Name', 'Login', '01'], [['    Points Possible', '', '10'], ['Alice', 'alice', '7'], ['Bob', 'bob', '']])
    """
    problems: list[dict] = []

    def problem(kind, student, exercise="", submission="", detail=""):
        problems.append(dict(zip(PROBLEM_FIELDS, [kind, student, exercise, submission, detail])))

    exercises: dict[str, float] = {}                  # name -> max, in the order first graded
    for row in report:
        if row["assignment"] is not None:
            exercises.setdefault(row["assignment"], row["max"])

    students: dict[str, list[int]] = {}               # key -> roster rows holding it
    for i, line in enumerate(roster.rows):
        name = line[roster.key] if roster.key < len(line) else ""
        if name.strip() and not _is_points_possible(line):
            students.setdefault(_norm(name), []).append(i)
    for name, where in students.items():
        if len(where) > 1:
            problem("duplicate key", roster.rows[where[0]][roster.key],
                    detail=f"{len(where)} roster rows have this {roster.header[roster.key]!r}; "
                           "all of them get the grade")

    best: dict[tuple[str, str], dict] = {}            # (student, exercise) -> the row kept
    for row in report:
        student = row.get("student") or ""
        if _norm(student) not in students:
            grade = (f"{row['total']:g}/{row['max']:g}" if row["assignment"]
                     else f"not graded: {row['error']}")
            problem("not in roster", student, row["assignment"] or "", row["submission"], grade)
            continue
        if row["assignment"] is None:
            problem("not graded", student, "", row["submission"], row["error"] or "")
            continue
        slot = (_norm(student), row["assignment"])
        if slot in best:
            kept = max(best[slot], row, key=lambda r: r["total"])
            problem("several submissions", student, row["assignment"],
                    f"{best[slot]['submission']}; {row['submission']}",
                    f"kept the higher total, {kept['total']:g} ({kept['submission']})")
            row = kept
        best[slot] = row

    columns = []
    for exercise in exercises:
        if exercise in roster.header:
            columns.append(roster.header.index(exercise))
        else:
            roster.header.append(exercise)
            columns.append(len(roster.header) - 1)
    for line in roster.rows:
        if not line:
            continue
        line += [""] * (len(roster.header) - len(line))
        name = _norm(line[roster.key])
        missing = []
        for exercise, column in zip(exercises, columns):
            if _is_points_possible(line):
                line[column] = f"{exercises[exercise]:g}"
            elif name in students:
                row = best.get((name, exercise))
                line[column] = f"{row['total']:g}" if row else ""
                if row is None:
                    missing.append(exercise)
        if missing:
            problem("no submission", line[roster.key], "; ".join(missing))
    return problems


def write_roster(roster: Roster, path: str | os.PathLike) -> None:
    """Write ``roster`` to ``path`` with the input's delimiter, BOM and line endings."""
    with open(path, "w", newline="", encoding="utf-8-sig" if roster.bom else "utf-8") as f:
        writer = csv.writer(f, delimiter=roster.delimiter, lineterminator=roster.newline)
        writer.writerow(roster.header)
        writer.writerows(roster.rows)


def write_problems(problems: list[dict], path: str | os.PathLike) -> None:
    """Write the problems :func:`fill_roster` found as a CSV (a header alone when none)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=PROBLEM_FIELDS)
        writer.writeheader()
        writer.writerows(problems)
