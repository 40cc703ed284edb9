"""Filling an LMS gradebook CSV with a batch's grades (``unet-teach grade --roster``).

Each test writes a gradebook the way Canvas or Moodle exports it, fills it from a report
written by hand, and compares the file with the expected text, also written by hand. The
whole batch, graded, fills a Canvas roster in test_grader.py.
"""

from __future__ import annotations

import csv

import pytest

from unet_teach.cli import main
from unet_teach.course.roster import RosterError, fill_roster, read_roster, write_roster

BOM = b"\xef\xbb\xbf"


def row(student, exercise, total, max_points=10.0, submission=None, error=None):
    return {"student": student, "assignment": exercise, "total": total,
            "max": max_points if exercise else 0.0, "error": error,
            "submission": submission or f"{student}/{exercise or 'notes'}.ipynb"}


def fill(tmp_path, text: str | bytes, key: str, report: list[dict]):
    src = tmp_path / "export.csv"
    src.write_bytes(text if isinstance(text, bytes) else text.encode())
    roster = read_roster(src, key)
    problems = fill_roster(roster, report)
    write_roster(roster, tmp_path / "roster.csv")
    return (tmp_path / "roster.csv").read_bytes(), {(p["problem"], p["student"]) for p in problems}


CANVAS = (
    "Student,ID,SIS User ID,SIS Login ID,Section,Homework 1 (1234),Current Score\r\n"
    "    Points Possible,,,,,5,\r\n"
    '"Liddell, Alice",101,S101,aliddell,A,4,80\r\n'
    '"Brown, Bob",102,S102,bbrown,A,5,100\r\n'
    '"Zeta, Zoe",104,S104,zzeta,B,3,60\r\n')


def test_canvas_export_with_points_possible_row_and_bom(tmp_path):
    report = [row("aliddell", "01_pixel_metrics", 7.0), row("aliddell", "02_patches", 3.0, 13.0),
              row("bbrown", "01_pixel_metrics", 10.0), row("carol", "01_pixel_metrics", 9.0)]
    written, problems = fill(tmp_path, BOM + CANVAS.encode(), "SIS Login ID", report)
    assert written == BOM + (
        "Student,ID,SIS User ID,SIS Login ID,Section,Homework 1 (1234),Current Score,"
        "01_pixel_metrics,02_patches\r\n"
        "    Points Possible,,,,,5,,10,13\r\n"
        '"Liddell, Alice",101,S101,aliddell,A,4,80,7,3\r\n'
        '"Brown, Bob",102,S102,bbrown,A,5,100,10,\r\n'
        '"Zeta, Zoe",104,S104,zzeta,B,3,60,,\r\n').encode()
    assert problems == {("not in roster", "carol"), ("no submission", "bbrown"),
                        ("no submission", "zzeta")}
    assert (tmp_path / "export.csv").read_bytes() == BOM + CANVAS.encode()     # input untouched


MOODLE = (
    "First name,Last name,ID number,Institution,Department,Email address,"
    "Assignment: Essay (Real),Last downloaded from this course\n"
    "Alice,Liddell,1001,Uni,CS,alice@uni.edu,8.00,1700000000\n"
    "Bob,Brown,1002,Uni,CS,bob@uni.edu,-,1700000000\n")


def test_moodle_export_matched_by_email_ignoring_case(tmp_path):
    report = [row("Alice@Uni.edu", "01_pixel_metrics", 6.0),
              row("bob@uni.edu", "01_pixel_metrics", 4.0, submission="bob/first.ipynb"),
              row("bob@uni.edu", "01_pixel_metrics", 9.0, submission="bob/second.ipynb"),
              row("bob@uni.edu", None, 0.0, error="corrupt notebook: invalid JSON")]
    written, problems = fill(tmp_path, MOODLE, "Email address", report)
    assert written.decode() == (
        "First name,Last name,ID number,Institution,Department,Email address,"
        "Assignment: Essay (Real),Last downloaded from this course,01_pixel_metrics\n"
        "Alice,Liddell,1001,Uni,CS,alice@uni.edu,8.00,1700000000,6\n"
        "Bob,Brown,1002,Uni,CS,bob@uni.edu,-,1700000000,9\n")     # the higher of Bob's two
    assert problems == {("several submissions", "bob@uni.edu"), ("not graded", "bob@uni.edu")}


def test_semicolons_and_an_existing_exercise_column_are_kept(tmp_path):
    text = "ID number;01_pixel_metrics;Email address\n1001;old;a@uni.edu\n1002;;b@uni.edu\n"
    written, problems = fill(tmp_path, text, "ID number", [row("1001", "01_pixel_metrics", 5.0)])
    assert written.decode() == ("ID number;01_pixel_metrics;Email address\n"
                                "1001;5;a@uni.edu\n1002;;b@uni.edu\n")
    assert problems == {("no submission", "1002")}


def test_unknown_key_column_lists_the_columns(tmp_path):
    (tmp_path / "export.csv").write_bytes(BOM + CANVAS.encode())
    with pytest.raises(RosterError) as info:
        read_roster(tmp_path / "export.csv", "Email")
    assert str(info.value) == ("export.csv has no column 'Email'; --roster-key must name one of: "
                               "'Student', 'ID', 'SIS User ID', 'SIS Login ID', 'Section', "
                               "'Homework 1 (1234)', 'Current Score'")     # no BOM in 'Student'
    assert read_roster(tmp_path / "export.csv", "sis login id").key == 3


def test_roster_errors_exit_2_before_grading(tmp_path, capsys):
    (tmp_path / "export.csv").write_text(MOODLE)
    out = tmp_path / "out"
    args = ["grade", str(tmp_path), "--out", str(out)]
    assert main(args + ["--roster", str(tmp_path / "nope.csv"), "--roster-key", "ID"]) == 2
    assert "nope.csv not found" in capsys.readouterr().err
    assert main(args + ["--roster", str(tmp_path / "export.csv"), "--roster-key", "Login"]) == 2
    err = capsys.readouterr().err
    assert "no column 'Login'" in err and "'Email address'" in err
    assert main(args + ["--roster", str(tmp_path / "export.csv")]) == 2
    assert "--roster-key" in capsys.readouterr().err
    out.mkdir()
    (out / "roster.csv").write_text(MOODLE)
    assert main(args + ["--roster", str(out / "roster.csv"), "--roster-key", "ID number"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert not (out / "report.json").exists()                     # nothing was graded


def test_problems_file_lists_every_problem(tmp_path):
    from unet_teach.course.roster import write_problems

    roster = read_roster(_write(tmp_path, MOODLE), "ID number")
    problems = fill_roster(roster, [row("999", "01_pixel_metrics", 1.0)])
    write_problems(problems, tmp_path / "problems.csv")
    with open(tmp_path / "problems.csv", newline="") as f:
        listed = [(p["problem"], p["student"], p["exercise"]) for p in csv.DictReader(f)]
    assert listed == [("not in roster", "999", "01_pixel_metrics"),
                      ("no submission", "1001", "01_pixel_metrics"),
                      ("no submission", "1002", "01_pixel_metrics")]


def _write(tmp_path, text):
    path = tmp_path / "export.csv"
    path.write_text(text)
    return path
