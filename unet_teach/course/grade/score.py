"""Phase 4 of grading: the points of each question, from what its test cell did.

A test cell earns its ``points`` when it ran without an error *and* the results it reported
satisfy the instructor's (:mod:`~unet_teach.course.grade.judge`, outside the kernel; a cell
of a source notebook that reports nothing is judged by its error alone, and the row says
so). One that raised earns 0 and records the error: the exception's name and a fixed text
(:mod:`~unet_teach.course.grade.messages`: the check's own message looked up by its id, never
the words that came out of the kernel), in full as ``message`` and cut to
``MAX_ERROR_CHARS`` as ``error`` for the terminal and ``grades.csv``; one whose results
differ earns 0 with the reason; one the notebook never reached earns 0 with
``not run: <why>``. A manually graded question
(nbgrader ``solution: true, grade: true``) gets ``"points": None, "manual": True``: a person
gives its points (:mod:`~unet_teach.course.grade.manual`); the row's ``max`` counts them (the
points possible) and ``manual_max`` says how many of them are manual, while ``total`` counts
only the points given so far.

A row of the report, one per submission::

    {"submission": "alice/01_pixel_metrics.ipynb", "student": "alice",
     "assignment": "01_pixel_metrics", "total": 6.0, "max": 10.0, "manual_max": 0.0,
     "error": None, "questions": {"q2_dice": {"points": 0.0, "max": 3.0, "manual": False,
     "error": "AssertionError: ..."}, ...}, "seconds": 5.1}
"""

from __future__ import annotations

import re

from .judge import judge
from .messages import feedback_message
from .read import Assignment

MAX_ERROR_CHARS = 300                # of an error message in the report


def short_error(ename: str, evalue: str) -> str:
    """``Name: first line ... last line`` of an error message, at most ``MAX_ERROR_CHARS``.

    Example:
        >>> short_error("AssertionError", "dice is wrong: expected 1, got 0.\\nHint: 2 TP / ...")
        'AssertionError: dice is wrong: expected 1, got 0. ... Hint: 2 TP / ...'
    """
    lines = [line.strip() for line in str(evalue).strip().splitlines() if line.strip()]
    text = ename + (f": {lines[0]}" if lines else "") + (f" ... {lines[-1]}" if len(lines) > 1 else "")
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


def _question(points: float | None, max_points: float, error: str | None = None,
              manual: bool = False) -> dict:
    return {"points": points, "max": max_points, "manual": manual, "error": error}


def expected_records(tests: list[tuple[int, str, float]], result: dict) -> dict[str, list]:
    """``{grade_id: records}`` of the instructor's run of the source notebook (``result`` as
    the worker returns it); a ``ValueError`` naming the first test cell that failed there (a
    source notebook whose own answers fail cannot grade anyone), or else the first cell of
    any kind that raised or the reason the run stopped: a source runs clean, as nbval
    would require of it.

    Example:
        >>> ok = {"status": "ok"}
        >>> expected_records([(1, "q1", 2.0)], {"replies": {1: ok}, "records": {1: [3]}})
        {'q1': [3]}
        >>> expected_records([(1, "q1", 2.0)], {"replies": {1: ok}, "raised": [[0, "NameError",
        ...                  "name 'x' is not defined"]]})
        Traceback (most recent call last):
        ...
        ValueError: the source notebook's cell 0 raises NameError: name 'x' is not defined; fix the source before grading
    """
    replies, records = result.get("replies", {}), result.get("records", {})
    for index, gid, _ in tests:
        content = replies.get(index)
        if content is None or content.get("status") != "ok":
            why = short_error(content.get("ename", "error"), content.get("evalue", "")) \
                if content else (result.get("error") or "not run")
            raise ValueError(f"the source notebook's own test cell {gid} fails with its own "
                             f"answers ({why}); fix the source before grading")
    for index, ename, evalue in result.get("raised", []):
        raise ValueError(f"the source notebook's cell {index} raises "
                         f"{short_error(ename, evalue)}; fix the source before grading")
    if result.get("stop"):
        raise ValueError(f"the source notebook's own run stopped: {result['stop']}; fix the "
                         "source before grading")
    return {gid: records.get(index, []) for index, gid, _ in tests}


def score_questions(assignment: Assignment, tests: list[tuple[int, str, float]],
                    replies: dict[int, dict], stop: str | None, cell_timeout: float,
                    records: dict[int, list] | None = None,
                    expected: dict[str, list] | None = None) -> dict:
    """Every question of ``assignment``, scored.

    ``tests`` is what :func:`~unet_teach.course.grade.assemble.assemble` returns with the
    notebook, ``replies`` maps a cell index to its execute reply (``status``, ``ename``,
    ``evalue``), ``records`` to the records its outputs carried, ``expected`` maps a grade id
    to the instructor's records (:func:`expected_records`) and ``stop`` says why the notebook
    stopped early, if it did.

    Example:
        >>> a = Assignment("ex", None, None, [("q1", 2.0, False), ("q2", 1.0, True)])
        >>> score_questions(a, [(3, "q1", 2.0)], {3: {"status": "ok"}}, None, 60)["q1"]
        {'points': 2.0, 'max': 2.0, 'manual': False, 'error': None, 'judged': 'kernel'}
        >>> score_questions(a, [(3, "q1", 2.0)], {}, "the kernel died", 60)["q1"]["error"]
        'not run: the kernel died'
    """
    cells = {gid: index for index, gid, _ in tests}
    questions = {}
    for gid, points, manual in assignment.questions:
        if manual:
            questions[gid] = _question(None, points, manual=True)
            continue
        content = replies.get(cells.get(gid))
        if content is None:
            questions[gid] = _question(0.0, points, f"not run: {stop}" if stop else "not run")
        elif content.get("status") == "ok":
            want = (expected or {}).get(gid) or []
            why = judge(want, (records or {}).get(cells[gid], [])) if want else None
            questions[gid] = _question(points, points) if why is None else \
                _question(0.0, points, f"wrong result: {why}")
            questions[gid]["judged"] = "outside" if want else "kernel"
        else:
            ename = str(content.get("ename", content.get("status", "error")))
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,60}", ename):
                ename = "Error"                   # the name came from the kernel too
            if ename == "CellTimeoutError":       # the grader's own words
                text = f"the test ran longer than {cell_timeout:g} s and was interrupted"
            else:                                 # a fixed text, never the kernel's message
                text = feedback_message(ename, content.get("evalue", ""))
            questions[gid] = _question(0.0, points, short_error(ename, text))
            questions[gid]["message"] = f"{ename}: {text}"
    return questions


def not_run(assignment: Assignment | None, why: str) -> dict:
    """Every question of ``assignment`` scored 0 (manual ones left to a person) because the
    notebook did not run."""
    if assignment is None:
        return {}
    return {gid: _question(None, points, manual=True) if manual
            else _question(0.0, points, f"not run: {why}")
            for gid, points, manual in assignment.questions}


def make_row(submission: str, student: str, assignment: Assignment | None, error: str | None,
             questions: dict | None = None, seconds: float = 0.0) -> dict:
    """One submission's row of the report (see the module's docstring); ``questions`` left
    out means that the notebook did not run, for the reason ``error``."""
    if questions is None:
        questions = not_run(assignment, error)
    return {"submission": submission, "student": student,
            "assignment": assignment.name if assignment else None,
            "total": float(sum(q["points"] for q in questions.values() if not q["manual"])),
            "max": assignment.max + assignment.manual_max if assignment else 0.0,
            "manual_max": assignment.manual_max if assignment else 0.0,
            "error": error, "questions": questions, "seconds": seconds}
