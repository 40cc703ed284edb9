"""The grader against adversarial submissions.

One batch, graded once by ``unet-teach grade`` with two worker processes (the slow part, about
a minute on two cores), holds a correct notebook and one notebook per way of breaking things;
each test then reads its row of the report.
"""

from __future__ import annotations

import copy
import csv
import contextlib
import io
import json
from pathlib import Path

import nbformat
import pytest

from grading_mode import ARGS, SANDBOX
from unet_teach.course import cli
from unet_teach.course.checks import all_messages
from unet_teach.course.release import ReleaseError, release_notebook
from unet_teach.course.grade import (SubmissionError, assemble, format_table, load_assignments,
                                     match, question_ids, read_submission)

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "exercises" / "source"
NAME = "01_pixel_metrics"
FULL = {"q1_pixel_accuracy": 2.0, "q2_dice": 3.0, "q3_iou": 2.0, "q4_mean_iou": 2.0,
        "q5_baseline": 1.0}
CELL_TIMEOUT = 5                       # the endless loop burns a core this long
CANVAS = """Student,ID,SIS User ID,SIS Login ID,Section,Homework 1 (1234),Current Score
    Points Possible,,,,,5,
"Liddell, Alice",101,S101,alice,A,4,80
"Loop, Larry",102,S102,LOOPS,A,5,100
"Corrupt, Carl",103,S103,corrupt,B,,0
"Zeta, Zoe",104,S104,zoe,B,3,60
"""


# --------------------------------------------------------------------------- building submissions

def released():
    return nbformat.read(ROOT / "exercises" / "release" / f"{NAME}.ipynb", as_version=4)


def solved():
    """The release notebook with the reference answers typed in (what a good student hands in)."""
    source = {c.id: c for c in nbformat.read(SOURCE_DIR / f"{NAME}.ipynb", as_version=4).cells}
    nb = released()
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = source[cell.id].source
    return nb


def index(nb, cell_id):
    return [c.id for c in nb.cells].index(cell_id)


def set_answer(nb, cell_id, code):
    nb.cells[index(nb, cell_id)].source = code


def add_after(nb, cell_id, code):
    nb.cells.insert(index(nb, cell_id) + 1, nbformat.v4.new_code_cell(code))


def write(nb, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """``course/source`` (a copy of the exercise sources) and ``course/submissions``."""
    root = tmp_path_factory.mktemp("course")
    source = root / "source"
    source.mkdir()
    (source / f"{NAME}.ipynb").write_bytes((SOURCE_DIR / f"{NAME}.ipynb").read_bytes())
    subs = root / "submissions"

    good = solved()
    del good.metadata["unet_teach"]            # matched by its file name only
    write(good, subs / "alice" / f"{NAME}.ipynb")

    write(solved(), subs / "renamed" / "Copy of my homework (2).ipynb")   # matched by metadata id

    nb = solved()                              # wrong Dice, and its test cell replaced by `pass`
    set_answer(nb, "q2-answer", "def dice(pred, target):\n    return 1.0")
    nb.cells[index(nb, "q2-test")].source = "pass"
    write(nb, subs / "edited_test.ipynb")

    nb = solved()                              # test cells deleted: a right and a wrong answer
    set_answer(nb, "q3-answer", "def iou(pred, target, cls=1):\n    return 0.5")
    del nb.cells[index(nb, "q3-test")]
    del nb.cells[index(nb, "q1-test")]
    write(nb, subs / "deleted_tests.ipynb")

    nb = solved()                              # a function that never returns
    set_answer(nb, "q4-answer", "def mean_iou(pred, target):\n    while True:\n        pass")
    write(nb, subs / "loops.ipynb")

    nb = solved()                              # kills its kernel half-way
    add_after(nb, "q2-test", "import os\nos._exit(1)")
    write(nb, subs / "os_exit.ipynb")

    nb = solved()                              # sys.exit() inside an answer
    set_answer(nb, "q1-answer", "import sys\ndef pixel_accuracy(pred, target):\n    sys.exit()")
    write(nb, subs / "sys_exit.ipynb")

    nb = solved()                              # 100 MB of output, otherwise right
    add_after(nb, "q1-answer", "for _ in range(100):\n    print('x' * 999_999)")
    write(nb, subs / "chatty.ipynb")

    nb = solved()                              # reads and rewrites files around it
    alice = subs / "alice" / f"{NAME}.ipynb"
    add_after(nb, "q1-answer", f"""
import os
seen = sorted(os.listdir("."))
print("SEEN", seen)
for path in ["alice/{NAME}.ipynb", "../source/{NAME}.ipynb", "../../source/{NAME}.ipynb",
             "edited_test.ipynb"]:
    try:
        with open(path, "w") as f:       # relative to where the submission was collected
            f.write("vandalised")
    except OSError:
        pass
# an absolute path: absent in the sandbox; with --no-sandbox it works, but alice's grade
# was read before
try:
    with open({str(alice)!r}, "w") as f:
        f.write("vandalised")
except OSError:
    pass
with open("vandal.ipynb", "w") as f:     # its own copy: changes nothing either
    f.write("vandalised")
""")
    write(nb, subs / "vandal.ipynb")

    (subs / "corrupt.ipynb").write_text('{"cells": [{"cell_type": "code", "sour')
    (subs / "binary.ipynb").write_bytes(bytes(range(256)) * 4)
    write(nbformat.v4.new_notebook(), subs / "empty.ipynb")
    (subs / "no_cells.ipynb").write_text(json.dumps({"metadata": {}, "nbformat": 4,
                                                     "nbformat_minor": 5}))
    (subs / "notes.txt").write_text("not collected from a folder")
    essay = root / "essay.pdf"
    essay.write_bytes(b"%PDF-1.4 not a notebook")
    nb = solved()
    del nb.metadata["unet_teach"]
    write(nb, subs / "mystery.ipynb")          # neither a known name nor a release id
    # the gradebook as Canvas exports it: a byte-order mark, CRLF, a Points Possible row
    (root / "canvas.csv").write_bytes(b"\xef\xbb\xbf" + CANVAS.replace("\n", "\r\n").encode())
    return {"root": root, "source": source, "subs": subs, "essay": essay,
            "source_bytes": (source / f"{NAME}.ipynb").read_bytes(),
            "alice_bytes": (subs / "alice" / f"{NAME}.ipynb").read_bytes()}


@pytest.fixture(scope="module")
def graded(course):
    out = course["root"] / "out"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli.main(["grade", str(course["subs"]), str(course["essay"]), "--out", str(out),
                         "--source", str(course["source"]), "--jobs", "2",
                         "--cell-timeout", str(CELL_TIMEOUT), "--timeout", "120",
                         "--roster", str(course["root"] / "canvas.csv"),
                         "--roster-key", "SIS Login ID", *ARGS])
    report = json.loads((out / "report.json").read_text())
    rows = {Path(r["submission"]).name: r for r in report}
    lines = stderr.getvalue().splitlines()
    return {"code": code, "out": out, "report": report, "rows": rows,
            "warnings": [line for line in lines if line.startswith("warning:")
                         and not line.startswith("warning: roster:")],
            "roster_warnings": [line for line in lines if line.startswith("warning: roster:")]}


def points(row):
    return {gid: q["points"] for gid, q in row["questions"].items()}


# --------------------------------------------------------------------------- the batch

def test_batch_finishes_with_one_row_per_submission(graded):
    assert graded["code"] == 0
    assert sorted(graded["rows"]) == sorted([
        f"{NAME}.ipynb", "Copy of my homework (2).ipynb", "edited_test.ipynb",
        "deleted_tests.ipynb", "loops.ipynb", "os_exit.ipynb", "sys_exit.ipynb", "chatty.ipynb",
        "vandal.ipynb", "corrupt.ipynb", "binary.ipynb", "empty.ipynb", "no_cells.ipynb",
        "mystery.ipynb", "essay.pdf"])
    for row in graded["report"]:
        assert set(row) >= {"submission", "total", "max", "error", "questions"}
        assert row["total"] == sum(q["points"] for q in row["questions"].values())


def test_correct_submission_gets_full_marks(graded):
    row = graded["rows"][f"{NAME}.ipynb"]
    assert (row["total"], row["max"], row["error"]) == (10.0, 10.0, None)
    assert points(row) == FULL
    assert all(q["error"] is None and q["max"] == FULL[g] for g, q in row["questions"].items())


def test_renamed_submission_is_matched_by_its_release_id(graded):
    row = graded["rows"]["Copy of my homework (2).ipynb"]
    assert row["assignment"] == NAME and row["total"] == 10.0 and row["error"] is None


def test_edited_test_cell_is_restored(graded):
    row = graded["rows"]["edited_test.ipynb"]
    # Q5 uses dice too, so it fails with it
    assert points(row) == {**FULL, "q2_dice": 0.0, "q5_baseline": 0.0}
    # the check's fixed message, looked up by the id it raised with (not the kernel's text)
    assert row["questions"]["q2_dice"]["message"] == \
        f"CheckFailed: {all_messages()['pixel_metrics.dice.value']}"
    assert row["questions"]["q2_dice"]["error"].startswith(
        "CheckFailed: dice gives the wrong value")


def test_deleted_test_cells_are_put_back(graded):
    row = graded["rows"]["deleted_tests.ipynb"]
    # q1's test was put back and passes; q3's was put back and fails (and q4, which uses iou)
    assert points(row) == {**FULL, "q3_iou": 0.0, "q4_mean_iou": 0.0}
    assert row["questions"]["q3_iou"]["message"] == \
        f"CheckFailed: {all_messages()['pixel_metrics.iou.value']}"
    assert row["questions"]["q3_iou"]["error"].startswith("CheckFailed: iou gives the wrong value")
    assert " ... Hint: " in row["questions"]["q3_iou"]["error"]   # first and last line


def test_endless_loop_is_interrupted_and_the_rest_still_graded(graded):
    row = graded["rows"]["loops.ipynb"]
    assert points(row) == {**FULL, "q4_mean_iou": 0.0}
    assert row["questions"]["q4_mean_iou"]["error"] == (
        f"CellTimeoutError: the test ran longer than {CELL_TIMEOUT} s and was interrupted")
    assert "ran past the time limit and was interrupted" in row["error"]


def test_killed_kernel_scores_what_ran_before(graded):
    row = graded["rows"]["os_exit.ipynb"]
    assert points(row) == {"q1_pixel_accuracy": 2.0, "q2_dice": 3.0, "q3_iou": 0.0,
                           "q4_mean_iou": 0.0, "q5_baseline": 0.0}
    assert row["error"].startswith("the kernel died in cell")
    assert row["questions"]["q3_iou"]["error"].startswith("not run: the kernel died")


def test_sys_exit_fails_only_its_question(graded):
    row = graded["rows"]["sys_exit.ipynb"]
    # Q5's answer calls pixel_accuracy, so it fails too
    assert points(row) == {**FULL, "q1_pixel_accuracy": 0.0, "q5_baseline": 0.0}
    assert row["questions"]["q1_pixel_accuracy"]["error"].startswith("SystemExit: The code")
    assert row["error"] is None


def test_huge_output_is_truncated_not_stored(graded):
    row = graded["rows"]["chatty.ipynb"]
    assert row["total"] == 10.0
    assert row["error"].startswith("output truncated in cell")
    executed = list((graded["out"] / "executed").glob("*chatty.ipynb"))
    assert len(executed) == 1 and executed[0].stat().st_size < 5_000_000


def test_submission_cannot_touch_other_submissions_or_the_sources(graded, course):
    row = graded["rows"]["vandal.ipynb"]
    assert row["total"] == 10.0 and row["error"] is None
    # its kernel ran in a folder that was empty: the notebook reaches it only as cells
    executed = next((graded["out"] / "executed").glob("*vandal.ipynb"))
    assert "SEEN []" in executed.read_text()
    # the relative paths it tried led nowhere
    assert (course["source"] / f"{NAME}.ipynb").read_bytes() == course["source_bytes"]
    assert nbformat.read(course["subs"] / "edited_test.ipynb", as_version=4).cells
    assert nbformat.read(course["subs"] / "vandal.ipynb", as_version=4).cells
    alice = course["subs"] / "alice" / f"{NAME}.ipynb"
    assert alice.read_bytes() == course["alice_bytes"]
    assert graded["rows"][f"{NAME}.ipynb"]["total"] == 10.0
    if SANDBOX:
        # the absolute path does not exist in its sandbox: nothing to put back
        assert "restored" not in graded["rows"][f"{NAME}.ipynb"]
        assert not graded["warnings"], graded["warnings"]
    else:
        # with the grader's rights it overwrote alice's file after it had been read: her
        # grade stands, and the grader put her file back and says so
        assert graded["rows"][f"{NAME}.ipynb"].get("restored") is True
        assert any("alice" in w and "restored" in w for w in graded["warnings"]), graded["warnings"]
        assert not any("vandal.ipynb" in w for w in graded["warnings"])
    assert graded["rows"]["edited_test.ipynb"]["total"] == 6.0


@pytest.mark.parametrize("name, reason", [
    ("corrupt.ipynb", "corrupt notebook: invalid JSON"),
    ("binary.ipynb", "corrupt notebook: not UTF-8 text"),
    ("empty.ipynb", "the notebook has no cells"),
    ("no_cells.ipynb", "not a notebook: it has no 'cells' list"),
    ("essay.pdf", "not a notebook: expected a .ipynb file, got a .pdf file"),
    ("mystery.ipynb", "cannot tell which exercise this is"),
])
def test_unreadable_submissions_get_a_row_with_the_reason(graded, name, reason):
    row = graded["rows"][name]
    assert row["error"].startswith(reason), row["error"]
    assert row["total"] == 0.0
    if name in ("empty.ipynb", "no_cells.ipynb"):
        # the exercise is unknown (nothing to match), so nothing counts towards a maximum
        assert row["max"] == 0.0 and row["questions"] == {}


def test_grades_csv_has_one_row_per_submission(graded):
    with open(graded["out"] / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["student", "submission", "total", "max", *FULL, "error", "flags"]
    assert len(rows) == len(graded["report"])
    alice = next(r for r in rows if r["submission"].endswith(f"alice/{NAME}.ipynb"))
    assert (alice["total"], alice["max"], alice["q2_dice"], alice["error"]) == ("10", "10", "3", "")
    assert alice["flags"] == "0"
    vandal = next(r for r in rows if r["submission"].endswith("vandal.ipynb"))
    assert int(vandal["flags"]) >= 1            # os.listdir(".") is fine; open("/...") is not
    essay = next(r for r in rows if r["submission"].endswith("essay.pdf"))
    assert essay["q1_pixel_accuracy"] == "" and essay["max"] == "0"


def test_student_is_the_first_folder_under_the_root_else_the_file_stem(graded):
    students = {name: row["student"] for name, row in graded["rows"].items()}
    assert students[f"{NAME}.ipynb"] == "alice"                        # submissions/alice/...
    assert students["Copy of my homework (2).ipynb"] == "renamed"      # submissions/renamed/...
    assert students["loops.ipynb"] == "loops"                          # submissions/loops.ipynb
    assert students["essay.pdf"] == "essay"                            # a file given by name
    with open(graded["out"] / "grades.csv", newline="") as f:
        csv_students = {Path(r["submission"]).name: r["student"] for r in csv.DictReader(f)}
    assert csv_students == students


def test_feedback_file_per_submission_says_what_failed(graded):
    folder = graded["out"] / "feedback"
    assert len(list(folder.glob("*.md"))) == len(graded["report"])
    for row in graded["report"]:
        assert (graded["out"] / row["feedback"]).is_file()
    alice = (folder / f"alice__{NAME}.md").read_text()
    assert alice.startswith(f"# {NAME}: 10 / 10 points")
    assert "| q2_dice | 3 / 3 | passed |" in alice and "What failed" not in alice
    deleted = (folder / f"deleted_tests__{NAME}.md").read_text()
    assert deleted.startswith(f"# {NAME}: 6 / 10 points")
    assert "| q1_pixel_accuracy | 2 / 2 | passed |" in deleted
    assert "| q3_iou | 0 / 2 | failed |" in deleted
    # the failed check's whole message, hint included, under the question's heading
    message = graded["rows"]["deleted_tests.ipynb"]["questions"]["q3_iou"]["message"]
    assert message.startswith("CheckFailed: ") and "\nHint: " in message
    assert f"### q3_iou (0 / 2)\n\n```text\n{message}\n```" in deleted
    os_exit = (folder / f"os_exit__{NAME}.md").read_text()
    assert "| q3_iou | 0 / 2 | not run |" in os_exit and "the kernel died" in os_exit
    essay = (folder / "essay__essay.md").read_text()
    assert "not graded" in essay and "expected a .ipynb file, got a .pdf file" in essay


def test_roster_gets_a_column_per_exercise_and_keeps_the_rest(graded):
    written = (graded["out"] / "roster.csv").read_bytes()
    assert written.startswith(b"\xef\xbb\xbf")                        # BOM kept, CRLF kept
    assert written[3:].decode() == CANVAS.replace("\n", "\r\n").replace(
        "Current Score\r\n", f"Current Score,{NAME}\r\n").replace(
        "5,\r\n", "5,,10\r\n").replace(          # Points Possible: the exercise's maximum
        ",80\r\n", ",80,10\r\n").replace(",100\r\n", ",100,8\r\n").replace(
        ",0\r\n", ",0,\r\n").replace(",60\r\n", ",60,\r\n")
    with open(graded["out"] / "roster_problems.csv", newline="") as f:
        problems = {(p["problem"], p["student"]) for p in csv.DictReader(f)}
    assert problems == {("no submission", "zoe"), ("no submission", "corrupt"),
                        ("not graded", "corrupt"),
                        *{("not in roster", r["student"]) for r in graded["report"]
                          if r["student"] not in ("alice", "loops", "corrupt")}}
    assert any("no submission: zoe" in w for w in graded["roster_warnings"])
    assert any("not in roster: renamed" in w for w in graded["roster_warnings"])


# --------------------------------------------------------------------------- pieces, no kernels

@pytest.fixture(scope="module")
def assignment():
    return load_assignments(SOURCE_DIR)[NAME]


def as_submission(nb, tmp_path, name="sub.ipynb"):
    return read_submission(write(nb, tmp_path / name))


def test_assemble_puts_deleted_and_moved_tests_back_in_source_order(assignment, tmp_path):
    nb = solved()
    del nb.cells[index(nb, "q2-test")]
    moved = nb.cells.pop(index(nb, "q4-test"))
    nb.cells.insert(0, moved)                            # moved to the top
    nb.cells.append(copy.deepcopy(moved))                # and duplicated
    nb.cells[-1].id = "copy-of-q4-test"
    nb.cells[index(nb, "q1-test")].source = "pass"       # and edited
    run, tests = assemble(as_submission(nb, tmp_path), assignment)
    # the restored cells (locked code and tests) and the answers, in the source's order
    order = [c.metadata.get("nbgrader", {}).get("grade_id") or c.get("id") for c in run.cells]
    expected = [c.id for c in assignment.nb.cells if c.cell_type == "code"]
    assert [x for x in order if x in set(expected) | set(FULL) | {"setup", "demo_data"}] == [
        c.metadata.nbgrader.grade_id if c.metadata.nbgrader.get("locked") else c.id
        for c in assignment.nb.cells if c.cell_type == "code"]
    assert [gid for _, gid, _ in tests] == list(FULL)
    for i, gid, pts in tests:
        assert "BEGIN HIDDEN" not in run.cells[i].source and pts == FULL[gid]
    # the hidden tests are back, unmarked: they report the results the grader judges
    assert '_record("dice with no membrane in pred or target (nan)"' in "".join(
        c.source for c in run.cells)
    assert '_record("pixel_accuracy of two all-interior 4 x 4 masks"' in run.cells[tests[0][0]].source
    nbformat.validate(run)


def test_assemble_keeps_students_extra_cells_and_ignores_their_nbgrader_metadata(assignment, tmp_path):
    nb = solved()
    fake = nbformat.v4.new_code_cell("print('bonus')", metadata={"nbgrader": {
        "grade_id": "bonus", "grade": True, "solution": False, "points": 100}})
    nb.cells.insert(index(nb, "q1-answer") + 1, fake)
    run, tests = assemble(as_submission(nb, tmp_path), assignment)
    assert "print('bonus')" in [c.source for c in run.cells]
    assert [gid for _, gid, _ in tests] == list(FULL)       # no 100 bonus points
    bonus = [c.source for c in run.cells].index("print('bonus')")
    assert "nbgrader" not in run.cells[bonus].metadata
    assert run.cells[bonus - 1].metadata.nbgrader.grade_id == "q1_pixel_accuracy"


def test_match_by_name_or_release_id(assignment):
    known = {NAME: assignment}
    assert match(Path(f"{NAME}.ipynb"), {"metadata": {}}, known) is assignment
    assert match(Path(f"{NAME} (1).ipynb"), {"metadata": {}}, known) is assignment
    assert match(Path("x.ipynb"), {"metadata": {"unet_teach": {"assignment": NAME}}}, known) is assignment
    assert match(Path("x.ipynb"), {"metadata": {"unet_teach": {"assignment": "02"}}}, known) is None


def test_read_submission_reasons(tmp_path):
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    with pytest.raises(SubmissionError, match="not an object"):
        read_submission(tmp_path / "list.ipynb")
    with pytest.raises(SubmissionError, match="file not found"):
        read_submission(tmp_path / "missing.ipynb")
    (tmp_path / "big.ipynb").write_text("{}" + " " * 100)
    with pytest.raises(SubmissionError, match="more than"):
        read_submission(tmp_path / "big.ipynb", max_bytes=10)


def test_table_lists_every_submission(graded):
    table = format_table(graded["report"])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["submission", "score", "q1_pixel_accuracy"]
    assert len(lines) == 1 + len(graded["report"])


def test_missing_source_folder_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["grade", str(tmp_path), "--out", str(tmp_path / "o"),
                     "--source", str(tmp_path / "nope")]) == 2
    assert "source folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- manually graded

def _nbgrader(grade_id, **flags):
    return {"nbgrader": {"grade_id": grade_id, "schema_version": 3, "locked": False,
                         "solution": False, "grade": False, **flags}}


def manual_source():
    """A small exercise with one autograded question (2 points) and two manually graded
    answers: a markdown one (3 points) and a code one (1 point)."""
    new_code, new_md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    cells = [
        new_code("import math", id="setup", metadata=_nbgrader("setup", locked=True)),
        new_code("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                 id="q1-answer", metadata=_nbgrader("q1_answer", solution=True)),
        new_code("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(-1) == -2\n"
                 "### END HIDDEN TESTS", id="q1-test",
                 metadata=_nbgrader("q1_double", grade=True, locked=True, points=2)),
        new_md("Why does a valid convolution shrink the image?", id="q2-question"),
        new_md("It only looks at windows that fit inside the image.", id="q2-answer",
               metadata=_nbgrader("q2_explain", solution=True, grade=True, points=3)),
        new_code("def triple(x):\n    ### BEGIN SOLUTION\n    return 3 * x\n    ### END SOLUTION",
                 id="q3-answer", metadata=_nbgrader("q3_style", solution=True, grade=True,
                                                    points=1)),
    ]
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
    """The manual exercise released, answered by one student and left blank by another, and
    graded."""
    from unet_teach.course.grade import grade
    from unet_teach.course.release import release

    root = tmp_path_factory.mktemp("manual")
    (root / "source").mkdir()
    nbformat.write(manual_source(), root / "source" / "04_manual.ipynb")
    release(root / "source", root / "release")
    released_nb = nbformat.read(root / "release" / "04_manual.ipynb", as_version=4)
    answered = copy.deepcopy(released_nb)
    set_answer(answered, "q1-answer", "def double(x):\n    return x + x")
    set_answer(answered, "q2-answer", "The kernel must fit inside the image.")
    write(answered, root / "subs" / "ann" / "04_manual.ipynb")
    write(released_nb, root / "subs" / "ben" / "04_manual.ipynb")
    report = grade([root / "subs"], root / "out", source_dir=root / "source", jobs=2,
                   cell_timeout=CELL_TIMEOUT, timeout=60, sandbox=SANDBOX)
    return {"released": released_nb, "out": root / "out",
            "rows": {row["student"]: row for row in report}}


def test_release_stubs_manually_graded_answers(manual):
    cells = {c.id: c for c in manual["released"].cells}
    assert cells["q2-answer"].source == "YOUR ANSWER HERE"
    assert cells["q3-answer"].source == ("def triple(x):\n    # YOUR CODE HERE\n"
                                         "    raise NotImplementedError()")
    assert cells["q2-answer"].metadata.get("editable", True) is True      # students write here
    assert cells["q2-question"].source == manual_source().cells[3].source


def test_release_refuses_a_manual_answer_without_points():
    nb = manual_source()
    del nb.cells[4].metadata.nbgrader["points"]
    with pytest.raises(ReleaseError, match="a manually graded answer needs numeric 'points'"):
        release_notebook(nb, "manual")


def test_manual_questions_are_reported_apart_from_the_automatic_total(manual):
    ann, ben = manual["rows"]["ann"], manual["rows"]["ben"]
    # max is the points possible, manual ones included; total counts the points given so far
    assert (ann["total"], ann["max"], ann["manual_max"], ann["error"]) == (2.0, 6.0, 4.0, None)
    assert ann["questions"]["q2_explain"] == {"points": None, "max": 3.0, "manual": True,
                                              "error": None}
    assert ann["questions"]["q3_style"]["manual"] is True
    assert ann["questions"]["q1_double"] == {"points": 2.0, "max": 2.0, "manual": False,
                                             "error": None, "judged": "kernel"}
    assert list(ann["questions"]) == ["q1_double", "q2_explain", "q3_style"]   # source order
    assert (ben["total"], ben["max"], ben["manual_max"]) == (0.0, 6.0, 4.0)
    assert ben["questions"]["q2_explain"]["points"] is None
    assert "not implemented" not in json.dumps(ben["questions"]["q2_explain"])


def test_manual_questions_in_grades_csv_table_and_feedback(manual):
    with open(manual["out"] / "grades.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert (rows["ann"]["total"], rows["ann"]["max"], rows["ann"]["q1_double"]) == ("2", "6", "2")
    assert rows["ann"]["q2_explain"] == rows["ann"]["q3_style"] == "manual"
    table = format_table(list(json.loads((manual["out"] / "report.json").read_text())))
    assert table.splitlines()[1].split()[2:5] == ["2", "manual", "manual"]
    feedback = (manual["out"] / "feedback" / "ann__04_manual.md").read_text()
    assert feedback.startswith("# 04_manual: 2 / 6 points")
    assert "q2_explain, q3_style (4 points in all) will be graded by hand" in feedback
    assert "| q2_explain | - / 3 | awaiting manual grading |" in feedback


def test_manual_points_flow_from_a_file_to_grades_feedback_and_roster(manual, capsys):
    subs, source = manual["out"].parent / "subs", manual["out"].parent / "source"
    out, points = manual["out"].parent / "out_manual", manual["out"].parent / "manual.csv"
    roster = manual["out"].parent / "canvas.csv"
    roster.write_text("Student,Login,Other\n    Points Possible,,\nAnn,ann,x\nBen,ben,y\n")
    args = ["grade", str(subs), "--out", str(out), "--source", str(source), "--jobs", "2",
            "--manual", str(points), "--roster", str(roster), "--roster-key", "Login", *ARGS]
    # 1. no file yet: the grader writes the template, every manual answer awaiting points
    assert cli.main(args) == 0
    assert "a template with the 4 manually graded answer(s)" in capsys.readouterr().err
    with open(points, newline="") as f:
        template = list(csv.DictReader(f))
    assert [(r["student"], r["question"], r["max"], r["points"]) for r in template] == [
        ("ann", "q2_explain", "3", ""), ("ann", "q3_style", "1", ""),
        ("ben", "q2_explain", "3", ""), ("ben", "q3_style", "1", "")]
    # 2. the instructor fills some in (one line too many points, one for nobody)
    template[0].update(points="2.5", comment="Right idea; say which windows.")
    template[1].update(points="5")
    template.append({"student": "zoe", "exercise": "04_manual", "question": "q2_explain",
                     "max": "3", "points": "3", "comment": ""})
    with open(points, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(template[0]))
        writer.writeheader()
        writer.writerows(template)
    before = points.read_bytes()
    for _ in range(2):                    # a rerun with the same file keeps the points
        assert cli.main(args) == 0
        err = capsys.readouterr().err
        assert "q3_style: 5 points given, the question has 1; not applied" in err
        assert "zoe, 04_manual, q2_explain: no graded submission" in err
        assert "3 manually graded answer(s) still await points" in err
        report = {r["student"]: r for r in json.loads((out / "report.json").read_text())}
        assert report["ann"]["total"] == 4.5 and report["ann"]["max"] == 6.0
        assert report["ann"]["questions"]["q2_explain"]["points"] == 2.5
        assert report["ann"]["questions"]["q3_style"]["points"] is None
        with open(out / "grades.csv", newline="") as f:
            rows = {r["student"]: r for r in csv.DictReader(f)}
        assert (rows["ann"]["total"], rows["ann"]["q2_explain"], rows["ann"]["q3_style"]) == \
            ("4.5", "2.5", "manual")
        feedback = (out / "feedback" / "ann__04_manual.md").read_text()
        assert feedback.startswith("# 04_manual: 4.5 / 6 points")
        assert "| q2_explain | 2.5 / 3 | graded by hand |" in feedback
        assert "Right idea; say which windows." in feedback
        lines = (out / "roster.csv").read_text().splitlines()
        assert lines[1].split(",")[-1] == "6"                 # Points Possible counts them
        assert lines[2] == "Ann,ann,x,4.5"
        assert points.read_bytes() == before                  # the instructor's file is theirs


def test_a_malformed_manual_file_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "manual.csv"
    bad.write_text("student,exercise,question,points\nann,04_manual,q2_explain,lots\n")
    assert cli.main(["grade", str(tmp_path), "--out", str(tmp_path / "o"), "--manual", str(bad),
                     *ARGS]) == 2
    assert "line 2: points 'lots' is not a number" in capsys.readouterr().err


def test_grades_csv_has_columns_only_for_the_exercises_graded():
    assignments = load_assignments(SOURCE_DIR)            # all five exercises
    report = [{"assignment": NAME, "questions": {gid: {} for gid in FULL}}]
    assert question_ids(report, assignments) == list(FULL)


def test_release_cells_carry_nbgrader_checksums():
    from unet_teach.course.release import nbgrader_checksum
    for path in sorted((ROOT / "exercises" / "release").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") or meta.get("solution") or meta.get("locked"):
                assert meta.get("checksum") == nbgrader_checksum(cell), (path.name, cell.id)


@pytest.mark.kernel
def test_a_source_notebook_must_run_clean_not_only_its_test_cells(tmp_path):
    """The grader's run of the instructor's notebook is the exercises' execution check in
    `make test` (what nbval did before): a cell that raises anywhere in the source stops
    grading before any student is graded, naming the cell."""
    from unet_teach.course.grade import grade

    root = Path(__file__).resolve().parents[1] / "exercises"
    name = "01_pixel_metrics"
    source = tmp_path / "source"
    source.mkdir()
    nb = nbformat.read(root / "source" / f"{name}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('a broken demo cell')"))
    nbformat.write(nb, source / f"{name}.ipynb")
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / f"{name}.ipynb").write_bytes(
        (root / "release" / f"{name}.ipynb").read_bytes())
    with pytest.raises(ValueError, match=rf"cell {len(nb.cells) - 1} raises RuntimeError: "
                                         "a broken demo cell"):
        grade([tmp_path / "subs"], tmp_path / "out", source_dir=source, jobs=1,
              cell_timeout=120, timeout=600, sandbox=SANDBOX)
    assert not (tmp_path / "out" / "grades.csv").exists()
