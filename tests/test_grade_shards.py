"""Grading in shards: ``unet-teach grade --shard i/n`` on each part, then ``grade-merge``,
writes the same files as one whole run, and mixed-up parts are refused.

One small batch (four notebooks that run, two that cannot be graded) is graded once whole and
once as three shards (eight kernels in all, about half a minute on two cores); the refusals
use batches of unreadable files, which start no kernel.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from grading_mode import ARGS
from unet_teach.course import cli
from unet_teach.course.grade import select

ROOT = Path(__file__).resolve().parents[1]
NAME = "01_pixel_metrics"
ROSTER = "Student,SIS Login ID\r\nAlice,alice\r\nBob,bob\r\nCarol,carol\r\nZoe,zoe\r\n"


def solved():
    """The release notebook with the source's answers typed in."""
    source = {c.id: c for c in nbformat.read(ROOT / "exercises" / "source" / f"{NAME}.ipynb",
                                             as_version=4).cells}
    nb = nbformat.read(ROOT / "exercises" / "release" / f"{NAME}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = source[cell.id].source
    return nb


def write(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def run(*argv) -> tuple[int, str, str]:
    """``unet-teach ARGV``: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exit_:               # argparse
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def grade_args(subs, out, source, *extra):
    return ["grade", subs, "--out", out, "--source", source, "--jobs", "2",
            "--cell-timeout", "20", "--timeout", "120", *ARGS, *extra]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The batch graded whole (``whole/``) and as shards 1/3, 2/3, 3/3 (``part1/`` ...)."""
    root = tmp_path_factory.mktemp("shards")
    source = root / "source"
    source.mkdir()
    shutil.copy(ROOT / "exercises" / "source" / f"{NAME}.ipynb", source)
    subs = root / "subs"
    # sorted: alice, bob, carol/01..., carol/Copy..., corrupt, mystery; shard 1/3 takes
    # positions 1 and 4, 2/3 takes 2 and 5, 3/3 takes 3 and 6 (1-based)
    write(solved(), subs / "alice" / f"{NAME}.ipynb")
    wrong = solved()
    answer = next(c for c in wrong.cells if c.get("id") == "q2-answer")
    answer.source = "def dice(pred, target):\n    return 1.0"
    write(wrong, subs / "bob" / f"{NAME}.ipynb")
    # carol's two files for one exercise fall in different shards: a whole run names their
    # feedback carol__01_pixel_metrics.md and ..._2.md, and so must the merge
    write(solved(), subs / "carol" / f"{NAME}.ipynb")
    write(wrong, subs / "carol" / f"Copy of {NAME}.ipynb")
    (subs / "corrupt.ipynb").write_text('{"cells": [')
    mystery = solved()
    del mystery.metadata["unet_teach"]
    write(mystery, subs / "mystery.ipynb")
    (root / "roster.csv").write_text(ROSTER, newline="")
    roster = ["--roster", root / "roster.csv", "--roster-key", "SIS Login ID"]

    codes = {"whole": run(*grade_args(subs, root / "whole", source, *roster))[0]}
    for i in (1, 2, 3):
        codes[f"part{i}"] = run(*grade_args(subs, root / f"part{i}", source,
                                            "--shard", f"{i}/3"))[0]
    parts = [root / f"part{i}" for i in (1, 2, 3)]
    merged = run("grade-merge", *parts, "--out", root / "merged", *roster)
    return {"root": root, "subs": subs, "source": source, "codes": codes, "parts": parts,
            "merged": merged}


def report(folder: Path) -> list[dict]:
    """report.json without the timings."""
    rows = json.loads((folder / "report.json").read_text())
    for row in rows:
        row.pop("seconds")
    return rows


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- the same files

def test_every_shard_and_the_merge_succeed(course):
    assert course["codes"] == {"whole": 0, "part1": 0, "part2": 0, "part3": 0}
    code, out, err = course["merged"]
    assert code == 0, err
    assert "6 submission(s) from 3 shard(s)" in out


def test_shards_take_every_third_submission_of_the_sorted_list(course):
    whole = [row["submission"] for row in report(course["root"] / "whole")]
    assert [Path(s).name for s in whole] == [
        f"{NAME}.ipynb", f"{NAME}.ipynb", f"{NAME}.ipynb", f"Copy of {NAME}.ipynb",
        "corrupt.ipynb", "mystery.ipynb"]
    for i, part in enumerate(course["parts"], start=1):
        assert [row["submission"] for row in report(part)] == whole[i - 1::3]
        info = json.loads((part / "shard.json").read_text())
        assert (info["shard"], info["of"], info["indices"]) == (i, 3, select(6, (i, 3)))


def test_merged_report_is_the_whole_runs(course):
    merged, whole = report(course["root"] / "merged"), report(course["root"] / "whole")
    assert merged == whole
    assert [r["total"] for r in whole] == [10.0, 6.0, 10.0, 6.0, 0.0, 0.0]    # really graded


def test_merged_grades_and_roster_are_the_whole_runs_byte_for_byte(course):
    for name in ("grades.csv", "roster.csv", "roster_problems.csv"):
        assert ((course["root"] / "merged" / name).read_bytes()
                == (course["root"] / "whole" / name).read_bytes()), name


def test_merged_feedback_is_the_whole_runs(course):
    merged = files(course["root"] / "merged" / "feedback")
    assert merged == files(course["root"] / "whole" / "feedback")
    assert {f"carol__{NAME}.md", f"carol__{NAME}_2.md"} <= set(merged)
    # in shard 1/3, carol's second file was her only one there
    assert f"carol__{NAME}.md" in files(course["parts"][0] / "feedback")


def test_merged_executed_notebooks_have_the_whole_runs_names(course):
    executed = set(files(course["root"] / "merged" / "executed"))
    assert executed == set(files(course["root"] / "whole" / "executed"))
    assert len(executed) == 4                   # the four notebooks that ran


# --------------------------------------------------------------------------- refusals

def unreadable_batch(root: Path, n: int, names=("a", "b", "c")) -> list[Path]:
    """A batch of files that cannot be graded (no kernel starts), graded as n shards."""
    subs = root / "subs"
    for name in names:
        (subs / f"{name}.ipynb").parent.mkdir(parents=True, exist_ok=True)
        (subs / f"{name}.ipynb").write_text("{")
    parts = [root / f"part{i}" for i in range(1, n + 1)]
    for i, part in enumerate(parts, start=1):
        code, _, err = run("grade", subs, "--out", part, "--source", ROOT / "exercises" / "source",
                           "--shard", f"{i}/{n}", *ARGS)
        assert code == 0, err
    return parts


def refused(*argv) -> str:
    code, _, err = run("grade-merge", *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_missing_shard_is_refused_and_nothing_written(course, tmp_path):
    error = refused(*course["parts"][:2], "--out", tmp_path / "out")
    assert "missing shard 3/3" in error
    assert not (tmp_path / "out").exists()


def test_repeated_shard_is_refused(course, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(course["parts"][1], copy)
    error = refused(*course["parts"], copy, "--out", tmp_path / "out")
    assert "shard 2/3 given twice" in error
    assert not (tmp_path / "out").exists()


def test_shards_of_another_batch_are_refused(course, tmp_path):
    other = unreadable_batch(tmp_path, 3)
    error = refused(course["parts"][0], other[1], course["parts"][2], "--out", tmp_path / "out")
    assert "parts of different runs: they collected different submissions" in error


def test_shards_of_another_split_are_refused(course, tmp_path):
    halves = unreadable_batch(tmp_path, 2, names=[f"x{k}" for k in range(6)])
    error = refused(course["parts"][0], halves[1], "--out", tmp_path / "out")
    assert "must come from one split" in error


def test_a_submission_changed_between_shards_is_refused(tmp_path):
    parts = unreadable_batch(tmp_path, 2)
    (tmp_path / "subs" / "b.ipynb").write_text("[]")    # re-uploaded before shard 2 ran again
    assert run("grade", tmp_path / "subs", "--out", parts[1], "--source",
               ROOT / "exercises" / "source", "--shard", "2/2", *ARGS)[0] == 0
    error = refused(*parts, "--out", tmp_path / "out")
    assert "a submission changed between them" in error


def test_other_exercise_sources_are_refused(tmp_path):
    parts = unreadable_batch(tmp_path, 2)
    source = tmp_path / "source"
    source.mkdir()
    nb = nbformat.read(ROOT / "exercises" / "source" / f"{NAME}.ipynb", as_version=4)
    nb.cells[0].source += "\n"                           # one more newline: another exercise
    nbformat.write(nb, source / f"{NAME}.ipynb")
    assert run("grade", tmp_path / "subs", "--out", parts[1], "--source", source,
               "--shard", "2/2", *ARGS)[0] == 0
    assert "the exercises' source notebooks differ" in refused(*parts, "--out", tmp_path / "o")


def test_a_whole_run_folder_is_not_a_shard(course, tmp_path):
    error = refused(course["root"] / "whole", "--out", tmp_path / "out")
    assert "is not the out folder of a shard" in error


def test_out_folder_must_be_new_or_empty_unless_forced(course, tmp_path):
    out = tmp_path / "out"
    (out / "feedback").mkdir(parents=True)
    (out / "feedback" / "stale__01_pixel_metrics.md").write_text("from an older run")
    assert "exists and is not empty" in refused(*course["parts"], "--out", out)
    assert not (out / "report.json").exists()
    code, _, err = run("grade-merge", *course["parts"], "--out", out, "--force")
    assert code == 0, err
    assert report(out) == report(course["root"] / "whole")
    assert files(out / "feedback") == files(course["root"] / "whole" / "feedback")   # stale gone
    assert "is one of the shards" in refused(*course["parts"], "--out", course["parts"][0],
                                             "--force")


def test_roster_goes_to_the_merge_not_to_a_shard(course, tmp_path):
    code, _, err = run(*grade_args(course["subs"], tmp_path / "p", course["source"],
                                   "--shard", "1/2", "--roster", course["root"] / "roster.csv",
                                   "--roster-key", "SIS Login ID"))
    assert code == 2 and "grade-merge" in err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("shard", ["0/3", "4/3", "1/0", "2", "a/b"])
def test_bad_shard_option_is_a_usage_error(shard, tmp_path):
    code, _, err = run("grade", tmp_path, "--out", tmp_path / "o", "--shard", shard)
    assert code == 2 and "--shard" in err
