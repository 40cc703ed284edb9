"""The exercise notebooks: source notebooks are commit-ready and score full automatic marks when
graded, release notebooks are up to date and hold no answers, the checks give informative
feedback and give nothing for an answer that calls the library's reference, and a blank
release scores 0."""

from __future__ import annotations

import functools
import json
import importlib
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from grading_mode import SANDBOX
from unet_teach import checks, metrics
from unet_teach.course import cli
from unet_teach.course.release import (HIDDEN_BEGIN, SOLUTION_BEGIN, ReleaseError, is_manual,
                                       is_solution, is_test, release, release_notebook, stale)

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
    result = subprocess.run(cmd + ["release", "--check"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
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
        if is_solution(src) and src.cell_type == "markdown":     # a written answer
            assert rel.source == "YOUR ANSWER HERE"
            assert is_manual(src) and rel.metadata.get("editable", True) is True
        elif is_solution(src):
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

def my_dice(pred, target, cls=1):
    p, t = pred == cls, target == cls
    total = p.sum() + t.sum()
    return float(2 * (p & t).sum() / total) if total else float("nan")


def my_iou(pred, target, cls=1):
    p, t = pred == cls, target == cls
    union = (p | t).sum()
    return float((p & t).sum() / union) if union else float("nan")


def test_checks_pass_hand_written_answers_and_print_the_points(capsys):
    checks.check_pixel_accuracy(lambda p, t: float((p == t).mean()))
    checks.check_dice(my_dice)
    checks.check_iou(my_iou)
    checks.check_mean_iou(lambda p, t: float(np.nanmean([my_iou(p, t, c) for c in (0, 1)])))
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
    (my_iou, ["expected 0.666667, got 0.5", "'a 2 x 3 example'", "shape (2, 3)",
              "that is the IoU"]),
    (lambda p, t: my_dice(p, t, cls=0), ["Dice of class 0"]),
    (lambda p, t: 1.0, ["off by", "Hint: Dice = 2 TP / (2 TP + FP + FN)"]),
    (lambda p, t: np.array([my_dice(p, t, 0), my_dice(p, t, 1)]),
     ["returned an array of shape (2,)"]),
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
        checks.check_mean_iou(my_iou)
    with pytest.raises(AssertionError, match="baseline_dice is wrong: expected 0, got 1"):
        checks.check_baseline(0.75, 1.0, np.array([[0, 1], [0, 0]]))


# --------------------------------------------------------------------------- blank release

def test_blank_release_scores_zero_on_every_question(graded):
    """nbgrader's ``validate --invert``: every question of an unanswered notebook fails, and the
    grader still finishes the run (the blank release notebooks are graded in the batch of
    the ``graded`` fixture, below)."""
    rows = [row for (student, _), row in graded["rows"].items() if student == "blank"]
    assert len(rows) == len(SOURCES)
    for row in rows:
        assert row["error"] is None, row
        assert row["total"] == 0 and row["max"] > 0
        for gid, q in row["questions"].items():
            if q["manual"]:                    # a written answer: a person grades it
                assert q["points"] is None and q["max"] > 0 and q["error"] is None, gid
                continue
            assert q["points"] == 0 and q["max"] > 0, gid
            assert q["error"].startswith(("CheckFailed", "AssertionError", "NameError")), \
                q["error"]
        # the first question fails because it is not implemented, not for another reason
        first = next(iter(row["questions"].values()))
        assert first["error"].startswith("CheckFailed: The answer is not implemented yet")


# --------------------------------------------------------------------------- exercises 4 and 5

def my_dice_loss(scores, target, smooth=1e-5, background=False, per_image=False):
    """An independent soft Dice loss (the sums written out per class); the options make the
    usual mistakes."""
    import torch

    p = torch.sigmoid(scores) if scores.shape[1] == 1 else scores.softmax(1)
    if scores.shape[1] == 1:
        p = torch.cat([1 - p, p], 1)
    values = []
    for c in range(0 if background else 1, p.shape[1]):
        g = (target == c).to(p.dtype)
        dims = (1, 2) if per_image else (0, 1, 2)
        pc = p[:, c]
        values.append((2 * (pc * g).sum(dims) + smooth) / (pc.sum(dims) + g.sum(dims) + smooth))
    return 1 - torch.stack(values).mean()


def my_weighted_cross_entropy(scores, target, weight, by_weight_sum=False, naive=False):
    import torch
    import torch.nn.functional as F

    if scores.shape[1] == 1:
        s, t = scores[:, 0], target.to(scores.dtype)
        nll = (-(t * torch.log(torch.sigmoid(s)) + (1 - t) * torch.log(1 - torch.sigmoid(s)))
               if naive else F.binary_cross_entropy_with_logits(s, t, reduction="none"))
    else:
        logp = torch.log(scores.softmax(1)) if naive else F.log_softmax(scores, 1)
        nll = -logp.gather(1, target[:, None].long())[:, 0]
    return (weight * nll).sum() / (weight.sum() if by_weight_sum else nll.numel())


def my_weight_map(instances, w0=10.0, sigma=5.0, on_cells=False, consecutive=False):
    from scipy import ndimage

    cell = instances > 0
    n_cell = int(cell.sum())
    w = np.where(cell, cell.size / (2 * max(n_cell, 1)), cell.size / (2 * max(cell.size - n_cell, 1)))
    labels = range(1, instances.max() + 1) if consecutive else np.unique(instances[cell])
    if len(labels) >= 2:
        d = np.sort([ndimage.distance_transform_edt(instances != i) for i in labels], axis=0)
        border = w0 * np.exp(-(d[0] + d[1]) ** 2 / (2 * sigma ** 2))
        w = w + (border if on_cells else np.where(cell, 0, border))
    return w


def my_warp(image, mask, field, mode="mirror", sign=1, dtype=None):
    from scipy import ndimage

    rows, cols = np.indices(image.shape)
    coords = np.stack([rows + sign * field[0], cols + sign * field[1]])
    out = ndimage.map_coordinates(image, coords, order=1, mode=mode)
    return out.astype(dtype or image.dtype), ndimage.map_coordinates(mask, coords, order=0,
                                                                      mode=mode)


def my_field(shape, sigma, grid, rng, order=3, swap=False):
    from scipy import ndimage

    vectors = rng.normal(0, sigma, size=(2, grid, grid))
    coords = np.meshgrid(np.linspace(0, grid - 1, shape[0]), np.linspace(0, grid - 1, shape[1]),
                         indexing="ij")
    field = np.stack([ndimage.map_coordinates(v, coords, order=order, mode="mirror")
                      for v in vectors])
    return field[::-1] if swap else field


def test_exercise_4_and_5_checks_pass_hand_written_answers(capsys):
    from unet_teach.checks import augmentation, losses

    losses.check_dice_loss(my_dice_loss)
    losses.check_weighted_cross_entropy(my_weighted_cross_entropy)
    losses.check_weight_map(my_weight_map)
    augmentation.check_warp(my_warp)
    augmentation.check_field(my_field)
    assert capsys.readouterr().out.splitlines() == [
        "dice_loss: all 7 checks passed - 3 points",
        "weighted_cross_entropy: all 5 checks passed - 2 points",
        "weight_map: all 6 checks passed - 3 points",
        "warp: all 5 checks passed - 3 points",
        "field: all 6 checks passed - 2 points"]


def _peek_then_own(scores, target, smooth=1e-5):
    """Calls the reference, throws its answer away and returns its own: still not allowed."""
    from unet_teach import losses

    try:
        losses.dice_loss(scores, target, smooth)
    except Exception:
        pass
    return my_dice_loss(scores, target, smooth)


def _field_in_a_thread(shape, sigma, grid, rng):
    from concurrent.futures import ThreadPoolExecutor

    from unet_teach import augment

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(augment.interpolate_lattice,
                           augment.lattice_displacements(grid, sigma, rng), shape).result()


def _field_through_the_pipeline(shape, sigma, grid, rng):
    """The field read off the Augment pipeline by deforming the pixel coordinates."""
    from unet_teach import augment

    coords = np.indices(shape).astype(np.float64)
    spacing = (min(shape) - 1) / (grid - 1)
    out = np.stack([augment.Augment(flip_rotate=False, intensity=False, sigma=sigma,
                                    spacing=spacing)(c, None, rng)[0] for c in coords])
    return out - coords


def _library_answers():
    import torch

    from unet_teach import augment, cost, fcn, infer, losses, models, patches
    from unet_teach.checks import augmentation as aug
    from unet_teach.checks import losses as loss
    from unet_teach.checks import patches as pc
    from unet_teach.checks import unet as un

    def net(layers):
        return pc.to_module(layers)

    def cm_dice(p, t):
        cm = metrics.confusion_matrix(p, t, 2)
        return 2 * cm[1, 1] / (2 * cm[1, 1] + cm[0, 1] + cm[1, 0])

    class UpBlock(models.Up):
        def __init__(self, in_ch, out_ch):
            super().__init__(in_ch, out_ch, out_ch, out_ch, padding="valid")

    return [
        # exercise 1
        ("pixel_accuracy imported", checks.check_pixel_accuracy, metrics.pixel_accuracy,
         "metrics.pixel_accuracy"),
        ("1 - pixel_error", checks.check_pixel_accuracy,
         lambda p, t: 1 - metrics.pixel_error(p, t), "metrics.pixel_error"),
        ("dice imported", checks.check_dice, metrics.dice, "metrics.dice"),
        ("dice from the confusion matrix", checks.check_dice, cm_dice, "metrics.confusion_matrix"),
        ("dice from segmentation_report", checks.check_dice,
         lambda p, t: metrics.segmentation_report(p, t)["dice"], "metrics.segmentation_report"),
        ("iou_per_class", checks.check_iou, lambda p, t: metrics.iou_per_class(p, t, 2)[1],
         "metrics.iou_per_class"),
        ("mean_iou imported", checks.check_mean_iou,
         functools.partial(metrics.mean_iou, num_classes=2), "metrics.mean_iou"),
        ("nanmean of iou_per_class", checks.check_mean_iou,
         lambda p, t: np.nanmean(metrics.iou_per_class(p, t, 2)), "metrics.iou_per_class"),
        # exercise 2
        ("extract_patch imported", pc.check_extract_patch, patches.extract_patch,
         "patches.extract_patch"),
        ("extract_patches of one pixel", pc.check_extract_patch,
         lambda image, row, col, window: patches.extract_patches(image, window, [row], [col])[0],
         "patches.extract_patches"),
        ("extract_patches of every pixel", pc.check_sliding_window_segment,
         lambda classify, image, window: classify(patches.extract_patches(image, window))
         .reshape(image.shape), "patches.extract_patches"),
        ("count_macs", pc.check_stack_macs,
         lambda layers, size: cost.count_macs(net(layers), (1, layers[0][1], size, size)),
         "cost.count_macs"),
        ("per_position_macs", pc.check_redundancy,
         lambda layers, w: cost.count_macs(net(layers), (1, layers[0][1], w, w))
         / cost.per_position_macs(net(layers)), "cost.per_position_macs"),
        ("receptive_field", pc.check_receptive_field,
         lambda layers: cost.receptive_field(net(layers)), "cost.receptive_field"),
        # exercise 3
        ("to_fully_convolutional", un.check_fully_convolutional,
         functools.partial(fcn.to_fully_convolutional, dense=False), "fcn.to_fully_convolutional"),
        ("DoubleConv", lambda answer: un.check_double_conv_down(answer, lambda: torch.nn.MaxPool2d(2)),
         lambda i, o: models.DoubleConv(i, o, padding="valid"), "models.DoubleConv.__init__"),
        ("center_crop", un.check_crop_and_concat,
         lambda skip, x: torch.cat([models.center_crop(skip, *x.shape[-2:]), x], 1),
         "models.center_crop"),
        ("a subclass of Up", un.check_up_block, UpBlock, "models.Up.__init__"),
        ("UNet with functools.partial", un.check_unet,
         functools.partial(models.UNet, padding="valid"), "models.UNet.__init__"),
        ("valid_sizes imported", un.check_valid_sizes, models.valid_sizes, "models.valid_sizes"),
        ("tile_layout", un.check_overlap_tile,
         lambda net, image, tile: infer.tile_layout(net, tile) and None, "infer.tile_layout"),
        # exercises 4 and 5
        ("the function itself", loss.check_dice_loss, losses.dice_loss, "losses.dice_loss"),
        ("functools.partial", loss.check_dice_loss, functools.partial(losses.dice_loss, smooth=1e-5),
         "losses.dice_loss"),
        ("through dice_ce_loss", loss.check_dice_loss,
         lambda s, t, smooth=1e-5: losses.dice_ce_loss(s, t) - losses.cross_entropy(s, t),
         "losses.dice_ce_loss"),
        ("called, then discarded", loss.check_dice_loss, _peek_then_own, "losses.dice_loss"),
        ("default_loss", loss.check_weighted_cross_entropy,
         lambda s, t, w: losses.default_loss(s, t, w), "losses.default_loss"),
        ("weight_map imported", loss.check_weight_map, losses.weight_map, "losses.weight_map"),
        ("elastic with a field", aug.check_warp,
         lambda image, mask, field: augment.elastic(image, mask, field=field), "augment.elastic"),
        ("the Augment pipeline", aug.check_field, _field_through_the_pipeline,
         "augment.Augment.__call__"),
        ("displacement_field", aug.check_field,
         lambda shape, sigma, grid, rng: augment.displacement_field(
             shape, rng=rng, strain=sigma / ((min(shape) - 1) / (grid - 1))),
         "augment.displacement_field"),
        ("in another thread", aug.check_field, _field_in_a_thread, "augment.interpolate_lattice"),
    ]


@pytest.mark.parametrize("case", range(len(_library_answers())),
                         ids=[a[0] for a in _library_answers()])
def test_an_answer_that_calls_the_library_reference_scores_nothing(case):
    _, check, answer, reference = _library_answers()[case]
    with pytest.raises(AssertionError) as info:
        check(answer)
    first = str(info.value).splitlines()[0]
    assert "called the library's reference implementation" in first
    assert f"unet_teach.{reference}" in first
    assert first.endswith("earns no points for this question.")


def test_a_question_may_use_what_an_earlier_one_asks_for_even_the_librarys(capsys):
    """Only the function a question asks for is guarded, not the earlier answers or helpers
    it hands out, although those call a guarded function inside the library."""
    import torch

    from unet_teach import cost, models, patches
    from unet_teach.checks import patches as pc
    from unet_teach.checks import unet as un

    checks.check_mean_iou(lambda p, t: float(np.nanmean([metrics.iou(p, t, c) for c in (0, 1)])))
    pc.check_extract_patch(lambda image, row, col, window:
                           patches.mirror_pad(image, window // 2)[row:row + window, col:col + window])
    pc.check_sliding_window_segment(lambda classify, image, window: np.asarray(classify(np.stack(
        [patches.extract_patch(image, i, j, window) for i in range(image.shape[0])
         for j in range(image.shape[1])]))).reshape(image.shape))
    pc.check_redundancy(lambda layers, w: cost.count_macs(pc.to_module(layers), (1, layers[0][1], w, w))
                        / sum(l[1] * l[2] * l[3] ** 2 for l in layers if l[0] == "conv"))

    class UpBlock(torch.nn.Module):
        def __init__(self, in_ch, out_ch):
            super().__init__()
            self.up = torch.nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
            self.conv = models.DoubleConv(2 * out_ch, out_ch, padding="valid")

        def forward(self, x, skip):
            x = self.up(x)
            return self.conv(torch.cat([models.center_crop(skip, *x.shape[-2:]), x], 1))

    un.check_up_block(UpBlock)
    assert capsys.readouterr().out.splitlines() == [
        "mean_iou: all 4 checks passed - 2 points",
        "extract_patch: all 5 checks passed - 3 points",
        "sliding_window_segment: all 2 checks passed - 2 points",
        "redundancy: all 4 checks passed - 2 points",
        "up_block: all 3 checks passed - 2 points"]


def _mistakes():
    import torch

    from unet_teach.checks import augmentation as aug
    from unet_teach.checks import losses as loss

    return [
        (loss.check_dice_loss, functools.partial(my_dice_loss, background=True),
         "you counted class 0 (the background)"),
        (loss.check_dice_loss, functools.partial(my_dice_loss, per_image=True), "not per image"),
        (loss.check_dice_loss, lambda s, t, smooth=1e-5: my_dice_loss(s, t, smooth).item(),
         "return a torch tensor"),
        (loss.check_dice_loss, lambda s, t, smooth=1e-5: my_dice_loss(s.detach(), t, smooth),
         "not connected to the scores"),
        (loss.check_dice_loss, lambda s, t, smooth=1e-5: torch.zeros(2), "shape (2,)"),
        (loss.check_weighted_cross_entropy,
         functools.partial(my_weighted_cross_entropy, by_weight_sum=True),
         "not by the weights' sum"),
        (loss.check_weighted_cross_entropy, functools.partial(my_weighted_cross_entropy, naive=True),
         "underflows to log(0)"),
        (loss.check_weight_map, functools.partial(my_weight_map, on_cells=True),
         "background pixels only"),
        (loss.check_weight_map, functools.partial(my_weight_map, consecutive=True),
         "labels need not be consecutive"),
        (aug.check_warp, functools.partial(my_warp, mode="reflect"),
         "scipy's 'reflect' repeats the edge pixel"),
        (aug.check_warp, functools.partial(my_warp, mode="constant"), "fills with 0"),
        (aug.check_warp, functools.partial(my_warp, sign=-1), "read backwards"),
        (aug.check_warp, functools.partial(my_warp, dtype=np.float64), "changed the image's dtype"),
        (aug.check_warp, lambda image, mask, field: image, "return the pair (image, mask)"),
        (aug.check_field, functools.partial(my_field, order=1), "that is bilinear"),
        (aug.check_field, functools.partial(my_field, swap=True), "field[0] is dy"),
        (aug.check_field, lambda shape, sigma, grid, rng: my_field(
            shape, sigma, grid, np.random.default_rng(0)), "the same field for two generators"),
        (aug.check_field, lambda shape, sigma, grid, rng: my_field(shape, sigma, grid, rng)[0],
         "expected the field 2 x H x W"),
        (aug.check_field, lambda shape, sigma, grid, rng: rng.normal(0, sigma, (2, *shape)),
         "wrong field"),
    ]


@pytest.mark.parametrize("case", range(len(_mistakes())), ids=lambda i: _mistakes()[i][2])
def test_exercise_4_and_5_checks_name_the_usual_mistakes(case):
    check, answer, expected = _mistakes()[case]
    with pytest.raises(AssertionError) as info:
        check(answer)
    assert expected in str(info.value)


@pytest.mark.parametrize("result, expected", [
    ([0.8, 0.7], "not a dict"),
    ({"seeds": [0, 1], "flips": [0.8, 0.7]}, "lacks ['flips_elastic', 'seconds']"),
    ({"seeds": [0], "flips": [0.8], "flips_elastic": [0.7], "seconds": 3.0}, "at least two"),
    ({"seeds": [1, 1], "flips": [0.8, 0.7], "flips_elastic": [0.7, 0.6], "seconds": 3.0},
     "at least two different seeds"),
    ({"seeds": [0, -1], "flips": [0.8, 0.7], "flips_elastic": [0.7, 0.6], "seconds": 3.0},
     "ints >= 0"),
    ({"seeds": [0, 1], "flips": [0.8], "flips_elastic": [0.7, 0.6], "seconds": 3.0},
     "one Dice per seed"),
    ({"seeds": [0, 1], "flips": [80.0, 70.0], "flips_elastic": [0.7, 0.6], "seconds": 3.0},
     "not a Dice in [0, 1]"),
    ({"seeds": [0, 1], "flips": [0.8, float("nan")], "flips_elastic": [0.7, 0.6], "seconds": 3.0},
     "not a number"),
    ({"seeds": [0, 1], "flips": [0.8, 0.7], "flips_elastic": [0.7, 0.6], "seconds": 0},
     "training time in seconds"),
])
def test_experiment_check_says_what_the_record_lacks(result, expected):
    from unet_teach.checks import augmentation

    with pytest.raises(AssertionError, match=re.escape(expected)):
        augmentation.check_experiment(result)


def _reference_record(seeds=(0, 1)):
    from unet_teach.checks import augmentation

    return {"seeds": list(seeds), "seconds": 9.0,
            **{d: [augmentation.reference_run(d, s) for s in seeds]
               for d in augmentation.DESIGNS}}


@pytest.mark.slow
def test_experiment_check_passes_a_record_that_its_runs_reproduce(capsys):
    from unet_teach.checks import augmentation

    record = _reference_record()
    record["flips"] = [np.float32(v) for v in record["flips"]]         # numpy scalars are fine
    augmentation.check_experiment(record)
    calls = []

    def run(augment, seed):
        calls.append((augment, seed))
        return augmentation.reference_run(
            next(d for d, a in augmentation.DESIGNS.items() if a == augment), seed)

    augmentation.check_experiment(record, run, rng=0)
    assert len(calls) == 1 and calls[0][1] in (0, 1)
    assert capsys.readouterr().out.splitlines() == [
        "experiment: all 5 checks passed - 2 points",
        "experiment: all 6 checks passed - 2 points"]


def test_experiment_check_refuses_a_record_no_run_produced():
    from unet_teach.checks import augmentation

    record = _reference_record()
    record["flips_elastic"][1] = min(1.0, record["flips_elastic"][1] + 0.01)   # one pair forged
    with pytest.raises(AssertionError, match=r"result\['flips_elastic'\] records Dice .* for "
                       r"seed 1, but training that run again"):
        augmentation.check_experiment(record)
    # a run that returns the record's numbers without training them still fails: the
    # recorded numbers are trained again from the exercise's own settings
    made_up = {"seeds": [0, 1], "flips": [0.9, 0.9], "flips_elastic": [0.9, 0.9], "seconds": 2.0}
    with pytest.raises(AssertionError, match="training that run again"):
        augmentation.check_experiment(made_up, lambda augment, seed: 0.9)


def test_experiment_check_refuses_a_run_that_does_not_give_the_record():
    from unet_teach.checks import augmentation

    record = _reference_record()
    with pytest.raises(AssertionError, match="gives Dice 0.5000 now"):
        augmentation.check_experiment(record, lambda augment, seed: 0.5, rng=1)


def test_exercise_5_has_a_written_answer_graded_by_hand():
    nb = nbformat.read(SOURCE / "05_augmentation.ipynb", as_version=4)
    written = [c for c in nb.cells if is_manual(c)]
    assert [(c.cell_type, c.metadata.nbgrader.points, c.metadata.nbgrader.locked)
            for c in written] == [("markdown", 2, False)]
    assert "Explain what your run shows" in nb.cells[nb.cells.index(written[0]) - 1].source


# --------------------------------------------------------------------------- graded sources

def _filled(name, answers):
    """The release notebook of ``name`` with the source's answers, some replaced by
    ``answers`` (cell id -> code)."""
    source = {c.id: c for c in nbformat.read(SOURCE / f"{name}.ipynb", as_version=4).cells}
    nb = nbformat.read(RELEASE / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = answers.get(cell.id, source[cell.id].source)
    return nb


COPYCAT = {
    "01_pixel_metrics": {
        "q1-answer": "from unet_teach.metrics import pixel_accuracy",
        "q2-answer": "from unet_teach import metrics\n\n"
                     "def dice(pred, target):\n"
                     "    return metrics.dice(pred, target)",
        "q3-answer": "from unet_teach.metrics import iou",
        # q4 (mean_iou, from "your iou") and q5 (the baseline, from "your functions") keep the
        # source's answers: they use the library's iou and pixel_accuracy as the earlier answers
    },
    "02_patches": {
        "q1-answer": "from unet_teach.patches import extract_patch",
        "q2-answer": "from unet_teach import patches\n\n"
                     "def sliding_window_segment(classify, image, window):\n"
                     "    return classify(patches.extract_patches(image, window)).reshape(image.shape)",
        "q3a-answer": "from unet_teach import cost\n\n"
                      "def stack_macs(layers, size):\n"
                      "    return cost.count_macs(checks.to_module(layers), "
                      "(1, layers[0][1], size, size))",
        "q3b-answer": "def redundancy(layers, window):\n"
                      "    return stack_macs(layers, window) / "
                      "cost.per_position_macs(checks.to_module(layers))",
        "q4-answer": "def receptive_field(layers):\n"
                     "    return cost.receptive_field(checks.to_module(layers))",
    },
    "03_fcn_unet": {
        "q1-answer": "from unet_teach.fcn import to_fully_convolutional\n\n"
                     "def fully_convolutional(net):\n"
                     "    return to_fully_convolutional(net, dense=False)",
        "q2a-answer": "def double_conv(in_ch, out_ch):\n"
                      "    return models.DoubleConv(in_ch, out_ch, padding='valid')\n\n"
                      "def down():\n    return nn.MaxPool2d(2)",
        "q2b-answer": "def crop_and_concat(skip, x):\n"
                      "    return torch.cat([models.center_crop(skip, *x.shape[-2:]), x], 1)",
        "q2c-answer": "class UpBlock(models.Up):\n"
                      "    def __init__(self, in_ch, out_ch):\n"
                      "        super().__init__(in_ch, out_ch, out_ch, out_ch, padding='valid')",
        "q3-answer": "import functools\n\nUNet = functools.partial(models.UNet, padding='valid')",
        "q4-answer": "valid_sizes = models.valid_sizes",
        "q5-answer": "from unet_teach.infer import predict_tiled\n\n"
                     "def overlap_tile(net, image, tile):\n"
                     "    return torch.as_tensor(predict_tiled(net, image, tile)[1]).log()",
    },
    "04_losses": {
        "q1-answer": "from unet_teach.losses import dice_loss as reference\n\n"
                     "def dice_loss(scores, target, smooth=1e-5):\n"
                     "    return reference(scores, target, smooth)",
        "q2-answer": "from unet_teach import losses\n\n"
                     "def weighted_cross_entropy(scores, target, weight):\n"
                     "    return losses.cross_entropy(scores, target, weight)",
        "q3-answer": "from unet_teach.losses import weight_map",
    },
    "05_augmentation": {
        "q1-answer": "from unet_teach import augment\n\ndef warp(image, mask, field):\n"
                     "    return augment.elastic(image, mask, field=field)",
        "q2-answer": "def smooth_field(shape, sigma, grid, rng):\n"
                     "    return augment.interpolate_lattice(\n"
                     "        augment.lattice_displacements(grid, sigma, rng), shape)",
        # a made-up record has the right form, but no run gives its numbers
        "q3-answer": 'result = {"seeds": [0, 1], "flips": [0.5, 0.5], "flips_elastic": [0.5, 0.5],'
                     ' "seconds": 1.0}',
    },
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The library-calling answers (copycat) and the blank release notebooks (blank), graded
    in one batch. The grader first runs every source notebook itself, with the instructor's
    answers, and stops if one of its test cells fails: ``reference.json`` says what each
    test cell of each source reported."""
    from unet_teach.course.grade import grade

    root = tmp_path_factory.mktemp("graded")
    (root / "subs" / "copycat").mkdir(parents=True)
    for name, answers in COPYCAT.items():
        nbformat.write(_filled(name, answers), root / "subs" / "copycat" / f"{name}.ipynb")
    (root / "subs" / "blank").mkdir()
    for path in sorted(RELEASE.glob("*.ipynb")):
        (root / "subs" / "blank" / path.name).write_bytes(path.read_bytes())
    report = grade([root / "subs"], root / "out", source_dir=SOURCE, jobs=2, cell_timeout=120,
                   timeout=600, sandbox=SANDBOX)
    return {"out": root / "out",
            "rows": {(row["student"], row["assignment"]): row for row in report}}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_source_notebooks_pass_every_test_cell_with_their_own_answers(graded, path):
    """The grader ran the source, graded like a submission, before anyone else: each of its
    test cells ran clean and reported results (else grading stops, naming the cell)."""
    reference = json.loads((graded["out"] / "reference.json").read_text())[path.stem]
    nb = nbformat.read(path, as_version=4)
    tests = [c.metadata.nbgrader.grade_id for c in nb.cells if is_test(c)]
    assert list(reference) == tests
    for gid, names in reference.items():
        assert names and len(set(names)) == len(names), gid   # results, each named once


def test_answers_that_call_the_library_score_nothing_and_say_why(graded):
    """The report and the feedback give the check's fixed text (``common.library_reference``),
    never the kernel's message; which reference each answer reached is what the notebook
    shows (``test_an_answer_that_calls_the_library_reference_scores_nothing``)."""
    from unet_teach.course.checks import all_messages
    from unet_teach.course.grade.score import short_error

    said = short_error("CheckFailed", all_messages()["common.library_reference"])
    rows = graded["rows"]
    report = {(r["student"], r["assignment"]): r
              for r in json.loads((graded["out"] / "report.json").read_text())}
    for name, gids in (("01_pixel_metrics", ("q1_pixel_accuracy", "q2_dice", "q3_iou")),
                       ("02_patches", ("q1_extract_patch", "q2_sliding_window_segment",
                                       "q3a_stack_macs", "q3b_redundancy", "q4_receptive_field")),
                       ("03_fcn_unet", ("q1_fully_convolutional", "q2_double_conv_down",
                                        "q2_crop_and_concat", "q2_up_block", "q3_unet",
                                        "q4_valid_sizes", "q5_overlap_tile")),
                       ("04_losses", ("q1_dice_loss", "q2_weighted_cross_entropy",
                                      "q3_weight_map")),
                       ("05_augmentation", ("q1_warp", "q2_field"))):
        row = rows[("copycat", name)]
        for gid in gids:
            for q in (row["questions"][gid], report[("copycat", name)]["questions"][gid]):
                assert q["points"] == 0, gid
                assert q["error"] == said, q["error"]
                assert "called the library's reference implementation" in q["error"], q["error"]
        feedback = (graded["out"] / "feedback" / f"copycat__{name}.md").read_text()
        assert "called the library's reference implementation" in feedback
    # an earlier answer (even the library's) may be used where the question hands it out
    row = rows[("copycat", "01_pixel_metrics")]
    assert row["questions"]["q4_mean_iou"] == {"points": 2.0, "max": 2.0, "manual": False,
                                               "error": None, "judged": "outside"}
    assert (row["total"], row["max"]) == (3.0, 10.0)
    for name in ("02_patches", "03_fcn_unet"):
        assert rows[("copycat", name)]["total"] == 0, name
    row = rows[("copycat", "05_augmentation")]
    q3 = row["questions"]["q3_experiment"]
    assert q3["points"] == 0 and q3["error"].startswith(
        "CheckFailed: Training one of your recorded runs again"), q3
    assert row["questions"]["q4_explain"] == {"points": None, "max": 2.0, "manual": True,
                                              "error": None}
    assert (row["total"], row["max"], row["manual_max"]) == (0.0, 9.0, 2.0)


def test_unet_check_accepts_a_correct_net_built_in_another_order(capsys):
    """The U-Net check matches layers by the order the forward pass calls them, so a net
    whose decoder and head are created before its encoder still passes."""
    import torch
    from torch import nn
    from unet_teach.models import center_crop
    from unet_teach.course.checks import unet as unet_checks

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.Conv2d(cout, cout, 3),
                             nn.ReLU())

    class Backwards(nn.Module):
        def __init__(self, cin, cout, depth, width):
            super().__init__()
            w = [width * 2 ** i for i in range(depth + 1)]
            self.head = nn.Conv2d(w[0], cout, 1)                       # created first
            self.up_convs = nn.ModuleList(block(2 * w[i], w[i]) for i in range(depth))
            self.ups = nn.ModuleList(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2)
                                     for i in range(depth))
            self.bottom = block(w[depth - 1], w[depth])
            self.down_convs = nn.ModuleList(block(cin if i == 0 else w[i - 1], w[i])
                                            for i in range(depth))       # created last

        def forward(self, x):
            skips = []
            for conv in self.down_convs:
                x = conv(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = self.bottom(x)
            for i in reversed(range(len(self.ups))):
                x = self.ups[i](x)
                x = self.up_convs[i](torch.cat([center_crop(skips[i], *x.shape[-2:]), x], 1))
            return self.head(x)

    unet_checks.check_unet(Backwards)
    assert "unet: all 6 checks passed" in capsys.readouterr().out
