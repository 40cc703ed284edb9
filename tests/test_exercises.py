"""The exercise notebooks: source notebooks are commit-ready, release notebooks are up to date and
hold no answers, the checks give informative feedback, and a blank release scores 0."""

from __future__ import annotations

import json
import importlib
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from unet_teach import checks, metrics
from unet_teach.course import cli
from unet_teach.course.release import (HIDDEN_BEGIN, SOLUTION_BEGIN, ReleaseError, is_solution,
                                       is_test, release, release_notebook, stale)

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "exercises" / "source"
RELEASE = ROOT / "exercises" / "release"
SOURCES = sorted(SOURCE.glob("*.ipynb"))


def test_there_are_exercises():
    assert [p.name for p in SOURCES] == [p.name for p in sorted(RELEASE.glob("*.ipynb"))]
    assert "01_pixel_metrics.ipynb" in [p.name for p in SOURCES]


@pytest.mark.parametrize("path", SOURCES + sorted(RELEASE.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_commit_ready(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    ids = [cell.get("id") for cell in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids), "every cell needs its own id"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{path.name}: clear the outputs of cell {cell.id}"


def test_release_notebooks_are_up_to_date(tmp_path):
    # What the committed release should be: release again, into a fresh folder, and compare.
    written = release(SOURCE, tmp_path)
    assert [p.name for p in written] == [p.name for p in SOURCES]
    for path in written:
        fresh = json.loads(path.read_text())
        committed = json.loads((RELEASE / path.name).read_text())
        assert fresh == committed, f"{path.name} is stale: run `unet-teach release`"
    assert stale(SOURCE, RELEASE) == []


def test_release_check_command_detects_stale_notebooks(tmp_path):
    rel = tmp_path / "release"
    assert cli.main(["release", "--source", str(SOURCE), "--release", str(rel)]) == 0
    before = {p.name: p.read_bytes() for p in rel.glob("*.ipynb")}
    assert cli.main(["release", "--source", str(SOURCE), "--release", str(rel)]) == 0
    assert before == {p.name: p.read_bytes() for p in rel.glob("*.ipynb")}, "not idempotent"
    assert cli.main(["release", "--check", "--source", str(SOURCE), "--release", str(rel)]) == 0

    nb = nbformat.read(rel / "01_pixel_metrics.ipynb", as_version=4)
    nb.cells[0].source += "\nedited"
    nbformat.write(nb, rel / "01_pixel_metrics.ipynb")
    assert cli.main(["release", "--check", "--source", str(SOURCE), "--release", str(rel)]) == 1
    (rel / "01_pixel_metrics.ipynb").unlink()
    assert cli.main(["release", "--check", "--source", str(SOURCE), "--release", str(rel)]) == 1


def test_release_check_console_script():
    # The command the Makefile and CI use, on the committed notebooks.
    exe = Path(sys.executable).with_name("unet-teach")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "unet_teach.course.cli"]
    result = subprocess.run(cmd + ["release", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_release_strips_answers_and_locks_tests(path):
    source = nbformat.read(path, as_version=4)
    released = nbformat.read(RELEASE / path.name, as_version=4)
    assert released.metadata.unet_teach == {"assignment": path.stem}
    assert [c.id for c in released.cells] == [c.id for c in source.cells]
    for src, rel in zip(source.cells, released.cells):
        assert "BEGIN SOLUTION" not in rel.source and "END SOLUTION" not in rel.source
        assert "HIDDEN TESTS" not in rel.source
        if is_solution(src):
            assert "raise NotImplementedError()" in rel.source
            assert "# YOUR CODE HERE" in rel.source
            if src.source.startswith("def "):           # the signature is kept
                assert rel.source.splitlines()[0] == src.source.splitlines()[0]
        if is_test(src):
            assert rel.metadata.nbgrader.locked is True
            assert rel.metadata.editable is False and rel.metadata.deletable is False
            assert rel.metadata.nbgrader.points == src.metadata.nbgrader.points
            public = src.source.split(HIDDEN_BEGIN)[0].rstrip()
            assert rel.source == public
        else:
            assert rel.metadata.get("editable", True) is True or src.metadata.nbgrader.locked


def test_every_solution_cell_has_markers_and_every_test_hidden_tests():
    for path in SOURCES:
        nb = nbformat.read(path, as_version=4)
        tests = [c for c in nb.cells if is_test(c)]
        assert tests, f"{path.name} has no test cells"
        for cell in nb.cells:
            if is_solution(cell):
                assert SOLUTION_BEGIN in cell.source
            if is_test(cell):
                assert HIDDEN_BEGIN in cell.source, f"{cell.id} has no hidden tests"


def _checks_module(nb):
    """The checks module a notebook imports: ``from unet_teach.checks import X as checks``
    (or ``from unet_teach import checks``, the chapter 1 checks)."""
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    found = re.search(r"from unet_teach\.checks import (\w+) as checks", text)
    return importlib.import_module(f"unet_teach.course.checks.{found[1]}") if found else checks


def test_test_cells_points_match_the_checks_they_call():
    for path in SOURCES:
        nb = nbformat.read(path, as_version=4)
        module = _checks_module(nb)
        for cell in nb.cells:
            if is_test(cell):
                called = re.findall(r"checks\.check_(\w+)\(", cell.source)
                assert len(called) == 1, f"{cell.id} should call exactly one check"
                assert module.POINTS[called[0]] == cell.metadata.nbgrader.points


def _cell(source, **nbgrader):
    meta = {"nbgrader": {"schema_version": 3, "locked": False, "solution": False, "grade": False,
                         **nbgrader}} if nbgrader else {}
    return nbformat.v4.new_code_cell(source, metadata=meta)


def test_release_refuses_notebooks_that_would_leak_answers():
    leaky = nbformat.v4.new_notebook(cells=[_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])
    with pytest.raises(ReleaseError, match="not marked as a solution"):
        release_notebook(leaky, "leaky")
    hidden = nbformat.v4.new_notebook(cells=[_cell("### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS",
                                                   grade_id="a", solution=True)])
    with pytest.raises(ReleaseError, match="not a test cell"):
        release_notebook(hidden, "hidden")
    unclosed = nbformat.v4.new_notebook(cells=[_cell("### BEGIN SOLUTION\nx = 1", grade_id="a",
                                                     solution=True)])
    with pytest.raises(ReleaseError, match="never closed"):
        release_notebook(unclosed, "unclosed")
    twice = nbformat.v4.new_notebook(cells=[_cell("pass", grade_id="a", grade=True, points=1),
                                            _cell("pass", grade_id="a", grade=True, points=1)])
    with pytest.raises(ReleaseError, match="used twice"):
        release_notebook(twice, "twice")


def test_solution_cell_without_markers_is_replaced_whole():
    nb = nbformat.v4.new_notebook(cells=[_cell("x = 42", grade_id="a", solution=True)])
    assert release_notebook(nb, "n").cells[0].source == "# YOUR CODE HERE\nraise NotImplementedError()"


# --------------------------------------------------------------------------- checks

def good_dice(pred, target):
    return metrics.dice(pred, target)


def test_checks_pass_the_reference_and_print_the_points(capsys):
    checks.check_pixel_accuracy(metrics.pixel_accuracy)
    checks.check_dice(good_dice)
    checks.check_iou(lambda p, t: metrics.iou(p, t))
    checks.check_mean_iou(lambda p, t: metrics.mean_iou(p, t, num_classes=2))
    masks = np.array([[0, 1], [0, 0]])
    checks.check_baseline(0.75, 0.0, masks)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "pixel_accuracy: all 4 checks passed - 2 points"
    assert out[1] == "dice: all 4 checks passed - 3 points"
    assert out[-1] == "baseline: all 2 checks passed - 1 point"


def test_checks_accept_float32_and_torch_results():
    import torch
    checks.check_pixel_accuracy(lambda p, t: np.float32((p == t).mean()))
    checks.check_pixel_accuracy(lambda p, t: (torch.as_tensor(p) == torch.as_tensor(t)).float().mean())


@pytest.mark.parametrize("fn, expected", [
    (lambda p, t: metrics.iou(p, t), ["expected 0.666667, got 0.5", "'a 2 x 3 example'",
                                      "shape (2, 3)", "that is the IoU"]),
    (lambda p, t: metrics.dice(p, t, cls=0), ["Dice of class 0"]),
    (lambda p, t: 1.0, ["off by", "Hint: Dice = 2 TP / (2 TP + FP + FN)"]),
    (lambda p, t: metrics.dice_per_class(p, t, 2), ["returned an array of shape (2,)"]),
    (lambda p, t: None, ["returned None", "forget `return`"]),
    (lambda p, t: "0.5", ["returned str", "one number"]),
    (lambda p, t: 1 / 0, ["raised ZeroDivisionError: division by zero"]),
])
def test_check_failures_say_what_is_wrong(fn, expected):
    with pytest.raises(AssertionError) as info:
        checks.check_dice(fn)
    for text in expected:
        assert text in str(info.value)


def test_check_failures_for_common_mistakes():
    def stub(pred, target):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_iou(stub)

    def mutates(pred, target):
        pred[...] = target
        return 1.0

    with pytest.raises(AssertionError, match="changed its input"):
        checks.check_pixel_accuracy(mutates)
    with pytest.raises(AssertionError, match=r"pass your function \(or class\) itself, "
                                             r"e.g. check_dice\(dice\), not float 0.8"):
        checks.check_dice(0.8)
    with pytest.raises(AssertionError, match="per image"):
        checks.check_pixel_accuracy(lambda p, t: (p == t).reshape(len(p), -1).mean(axis=1))
    with pytest.raises(AssertionError, match="number of correct pixels"):
        checks.check_pixel_accuracy(lambda p, t: (p == t).sum())
    with pytest.raises(AssertionError, match="IoU of class 1 only"):
        checks.check_mean_iou(lambda p, t: metrics.iou(p, t))
    with pytest.raises(AssertionError, match="baseline_dice is wrong: expected 0, got 1"):
        checks.check_baseline(0.75, 1.0, np.array([[0, 1], [0, 0]]))


# --------------------------------------------------------------------------- blank release

def test_blank_release_scores_zero_on_every_question(tmp_path):
    """nbgrader's ``validate --invert``: every question of an unanswered notebook fails, and the
    grader still finishes the run."""
    from unet_teach.course.grade import grade

    report = grade([RELEASE], tmp_path / "out", source_dir=SOURCE, jobs=2, cell_timeout=20,
                   timeout=120)
    assert len(report) == len(SOURCES)
    for row in report:
        assert row["error"] is None, row
        assert row["total"] == 0 and row["max"] > 0
        for gid, q in row["questions"].items():
            assert q["points"] == 0 and q["max"] > 0, gid
            assert q["error"].startswith(("AssertionError", "NameError")), q["error"]
        # the first question fails because it is not implemented, not for another reason
        first = next(iter(row["questions"].values()))
        assert "not implemented yet" in first["error"]
