"""Grade collected exercise notebooks: restore the tests, run each notebook in its own kernel,
score the test cells, write ``report.json``, ``grades.csv`` and a feedback file per submission.

The pipeline, one file a phase, in the order :func:`grade` runs it::

    # read.py      1. find the files and read every one, in this process, before any student
    #                 code runs; match each to its exercise (release id, else file name)
    # assemble.py  2. build the notebook to run: the student's cells, with every test cell
    #                 and locked code cell (hidden tests included) taken from the source
    #              3a. first the source notebook itself, with the instructor's answers: what
    #                 each test cell reports there is what a student's must report
    # run.py       3. run it in a worker process, in a kernel in an empty temporary folder,
    #                 with a time limit per cell and per notebook and capped output
    #                 (pool.py starts the workers, a few at a time, and kills any that overrun)
    # score.py     4. a test cell earns its points when it ran without an error and the
    # judge.py        results it reported (evidence.py) match the instructor's, compared here,
    #                 outside the kernel; manually graded questions are left to a person
    # restore.py   5. write back any input file that student code changed while the batch ran
    # manual.py    6. the points a person gave the written answers (--manual FILE), then
    # report.py       report.json, grades.csv and the table on the terminal, and
    # feedback.py     one Markdown file per submission to hand back
    # shard.py     (a large course) grade every n-th submission on each of n machines, with
    #                 --shard i/n, and merge the parts into the files of one whole run

What keeps one submission from changing another's grade: each kernel runs in its own
sandbox, which holds nothing of the batch (no submissions, no sources, no report) and whose
processes all end with it; everything is read (1) before the first kernel starts (3); the
grader runs no student code in its own process. Phase 5 stays as a second line for
``--no-sandbox`` runs, where a kernel runs with the grader's rights and could reach a file by
its absolute path: it puts such a file back and marks the submission ``"restored": true``.

Example (a blank release scores 0; this starts a kernel, so it is not run as a doctest)::

    report = grade(["exercises/release/01_pixel_metrics.ipynb"], "/tmp/grades")
    report[0]["total"], report[0]["max"]        # (0.0, 10.0)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import nbformat

from .assemble import assemble
from .feedback import feedback_text, write_feedback
from .flags import scan_cells
from .manual import ManualError, apply_manual, read_manual, write_template
from .pool import run_jobs
from .read import (Assignment, SubmissionError, collect, load_assignments, match,
                   read_submission)
from .report import format_table, question_ids, write_report
from .restore import restore, snapshot
from .run import STARTUP_TIMEOUT
from .sandbox import SandboxError, probe
from .score import expected_records, make_row, score_questions
from .shard import ShardError, merge, parse_shard, run_identity, select, write_shard_info

__all__ = ["grade", "Assignment", "ManualError", "SandboxError", "ShardError", "SubmissionError", "assemble", "collect",
           "feedback_text", "format_table", "read_manual", "write_template", "load_assignments", "match", "merge", "parse_shard",
           "question_ids", "read_submission", "write_feedback", "write_report"]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# The instructor's records of a source notebook, by (its bytes' hash, sandbox): a process
# that grades several batches of one exercise (a test suite, a notebook) runs the source
# once. The key changes with every byte of the source; the time and memory limits are left
# out of it (they bind the students: a source that passed under one passes under any).
_EXPECTED: dict[tuple, dict] = {}


def _expected_records(assignments: dict[str, Assignment], jobs: int, sandbox: bool,
                      memory: float | None, cell_timeout: float, timeout: float) -> dict:
    """``{exercise: {grade_id: records}}``: each source notebook, answers included, assembled
    and run like a submission; a ``ValueError`` if one of its own test cells fails."""
    todo, tests_of, keys, found = [], {}, {}, {}
    for name, assignment in assignments.items():
        digest = hashlib.sha256(Path(assignment.path).read_bytes()).hexdigest()
        keys[name] = (digest, sandbox)
        if keys[name] in _EXPECTED:
            found[name] = _EXPECTED[keys[name]]
            continue
        nb, tests = assemble(read_submission(assignment.path), assignment)
        tests_of[name] = tests
        todo.append((name, {"notebook": nbformat.writes(nb), "tests": tests, "sandbox": sandbox,
                            "memory": int(memory * 2**30) if memory else None,
                            "cell_timeout": cell_timeout, "timeout": timeout}))
    results: dict[str, dict] = {}
    run_jobs(todo, jobs, hard_limit=timeout + STARTUP_TIMEOUT + 30,
             finish=lambda name, result, _: results.__setitem__(name, result))
    for name in results:
        found[name] = _EXPECTED[keys[name]] = expected_records(tests_of[name], results[name])
    return found


def grade(submissions, out_dir: str | os.PathLike, source_dir: str | os.PathLike = "exercises/source",
          jobs: int | None = None, cell_timeout: float = 60, timeout: float = 600,
          progress=None, shard: tuple[int, int] | None = None, sandbox: bool = True,
          memory: float | None = None, manual: dict | None = None) -> list[dict]:
    """Grade ``submissions`` (notebook files and folders), write ``out_dir/report.json``,
    ``out_dir/grades.csv``, ``out_dir/feedback/``, ``out_dir/flags.md``,
    ``out_dir/reference.json`` (the results each source's test cells reported: what a
    student's must report) and the executed notebooks under ``out_dir/executed/``; return
    the report (one dict per submission, in the order found).

    ``jobs`` notebooks run at once (default: the number of CPUs, at most 4); a cell may run
    ``cell_timeout`` seconds, a notebook ``timeout`` seconds. ``progress``, if given, is
    called with each finished row.

    ``sandbox`` runs each kernel in its own bubblewrap sandbox (see
    :mod:`~unet_teach.course.grade.sandbox`); where none can start, grading stops with a
    ``SandboxError`` that says why, unless ``sandbox=False`` (the ``--no-sandbox`` of the
    command line) accepts running students' code with the grader's own rights. In the sandbox
    a kernel may use ``memory`` GiB of address space (default
    ``sandbox.MEMORY_LIMIT``) and CPU time of about four
    times ``timeout``; beyond that it is stopped (a ``MemoryError``, or the kernel killed).

    ``manual`` (from :func:`~unet_teach.course.grade.manual.read_manual`) gives the manually
    graded questions their points and comments before anything is written; a line it cannot
    apply is a warning.

    ``shard=(i, n)`` grades only the i-th of n parts of the batch (every n-th submission of
    the sorted list, from the i-th on; see ``unet_teach.course.grade.shard``), writes
    the same files for that part plus ``out_dir/shard.json``, and returns that part's rows;
    ``merge`` turns the n out folders into the files of the whole run.
    """
    jobs = jobs or min(4, os.cpu_count() or 1)
    if jobs < 1 or cell_timeout <= 0 or timeout <= 0 or (memory is not None and memory <= 0):
        raise ValueError("jobs, cell_timeout, timeout and memory must be positive")
    if shard is not None:
        shard = parse_shard(f"{shard[0]}/{shard[1]}")          # 1 <= i <= n, or ShardError
    assignments = load_assignments(source_dir)
    if sandbox and (why := probe()):
        raise SandboxError(f"{why}. Students' code would run with your rights, able to read the "
                           "solutions and change other students' grades; fix that, grade in a "
                           "container (see the instructors' guide, 'Security'), or pass "
                           "--no-sandbox to accept the risk")
    out_dir = Path(out_dir)
    (out_dir / "executed").mkdir(parents=True, exist_ok=True)
    # a second run must not grade the executed notebooks of the first one
    outside = out_dir.resolve()
    found = [(p, s) for p, s in collect(submissions) if outside not in p.resolve().parents]
    rows: list[dict | None] = [None] * len(found)
    mine = select(len(found), shard)

    def done(i, row):
        rows[i] = row
        if progress:
            progress(row)

    # 1. read everything, and keep the bytes of every input for phase 5
    inputs = snapshot([*(p for p, _ in found), *(a.path for a in assignments.values())])
    todo, matched, executed, flagged = [], {}, {}, {}
    for i in mine:
        path, student = found[i]
        shown = _display(path)
        try:
            sub = read_submission(path)
        except SubmissionError as err:
            done(i, make_row(shown, student, None, str(err)))
            continue
        assignment = match(path, sub, assignments)
        if assignment is None:
            done(i, make_row(shown, student, None, "cannot tell which exercise this is: the file "
                             f"name matches none of {sorted(assignments)} and the notebook has no "
                             "release id"))
            continue
        # 2. the notebook to run
        nb, tests = assemble(sub, assignment)
        # the student's own code cells (the grader's carry nbgrader metadata), scanned for
        # reaches into the grader's machinery, numbered as in the graded notebook
        flagged[i] = scan_cells(nb)
        matched[i] = (assignment, tests)
        safe = re.sub(r"[^\w.-]+", "_", path.name) or "submission.ipynb"
        executed[i] = f"{i + 1:03d}_{safe}"          # numbered as in the whole run
        todo.append((i, {"notebook": nbformat.writes(nb), "tests": tests, "sandbox": sandbox,
                         "memory": int(memory * 2**30) if memory else None,
                         "cell_timeout": cell_timeout, "timeout": timeout,
                         "executed_path": str(out_dir / "executed" / executed[i])}))

    # 3a. the instructor's answers, run the same way: the results each test cell must report
    expected = _expected_records({a.name: a for a, _ in matched.values()}, jobs, sandbox,
                                 memory, cell_timeout, timeout)
    # what each test cell of each source reported: the names a student's cell must report
    (out_dir / "reference.json").write_text(json.dumps(
        {name: {gid: [r.get("name") for r in records] for gid, records in cells.items()}
         for name, cells in sorted(expected.items())}, indent=1) + "\n", encoding="utf-8")

    # 3. run, `jobs` workers at a time; 4. score each as it finishes
    def finish(i, result, seconds):
        path, student = found[i]
        assignment, tests = matched[i]
        questions = None                  # the worker failed: every question "not run"
        if "replies" in result:
            questions = score_questions(assignment, tests, result["replies"], result["stop"],
                                        cell_timeout, result.get("records"),
                                        expected[assignment.name])
        row = make_row(_display(path), student, assignment, result.get("error"), questions,
                       result.get("seconds", seconds))
        row["sandboxed"] = sandbox
        row["flags"] = flagged[i]
        done(i, row)

    try:
        run_jobs(todo, jobs, hard_limit=timeout + STARTUP_TIMEOUT + 30, finish=finish)
    finally:
        # 5. undo what student code did to the inputs (other submissions, sources)
        restored = restore(inputs)

    for i, (path, _) in enumerate(found):
        if path in restored and rows[i] is not None:
            rows[i]["restored"] = True
    for path in restored:
        warnings.warn(f"{_display(path)} was changed while the batch ran (by a submission's "
                      "code) and has been restored to the bytes that were graded", stacklevel=2)
    # 6. the files (the points a person gave folded in first)
    report = [r for r in rows if r is not None]
    for problem in apply_manual(report, manual) if manual is not None else []:
        warnings.warn(f"manual points: {problem}", stacklevel=2)
    write_feedback(report, out_dir)
    write_report(report, out_dir, assignments)
    if shard is not None:
        identity = run_identity([(_display(p), s, inputs.get(p)) for p, s in found],
                                {a.name: inputs.get(a.path) for a in assignments.values()},
                                cell_timeout, timeout)
        write_shard_info(out_dir, shard, identity, mine, [executed.get(i) for i in mine],
                         [i for i, (p, _) in enumerate(found) if p in restored], assignments)
    return report
