"""The check ids and their fixed messages: every failing check raises ``CheckFailed`` with an
id that ``all_messages()`` knows, every message says what is wrong and then where to look
("Hint:") without a line of the solution, and the mistakes that used to pass (or got a
misleading hint) are named.

The grader copies ``all_messages()[id]`` into a feedback file instead of the text raised in
the student's kernel (see :mod:`unet_teach.course.grade.messages`), so an id without an entry
would leave the student with a generic line, and an entry that quotes the solution would hand
it out.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

import test_exercises as ex
from unet_teach import checks, metrics, models
from unet_teach.course.checks import _common, all_messages
from unet_teach.course.checks import augmentation as aug
from unet_teach.course.checks import losses as loss
from unet_teach.course.checks import patches as pc
from unet_teach.course.checks import unet as un
from unet_teach.course.checks._common import CheckFailed, call_own, check_id

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "unet_teach" / "course" / "checks"
SOURCE = ROOT / "exercises" / "source"
RELEASE = ROOT / "exercises" / "release"
PREFIX = {"_common": "common", "pixel_metrics": "pixel_metrics", "patches": "patches",
          "unet": "unet", "losses": "losses", "augmentation": "augmentation"}
ID = re.compile(r"^(%s)\.[a-z0-9_]+(\.[a-z0-9_]+)*$" % "|".join(PREFIX.values()))
MESSAGES = all_messages()


def _failure(run) -> CheckFailed:
    """The CheckFailed that ``run()`` raises; its id must have a message."""
    with pytest.raises(CheckFailed) as info:
        run()
    err = info.value
    assert check_id(str(err)) == err.check_id, str(err)
    assert err.check_id in MESSAGES, f"no MESSAGES entry for {err.check_id!r}"
    return err


# --------------------------------------------------------------------------- the ids

def test_all_messages_holds_every_module_and_the_shared_helpers():
    from unet_teach.course.checks import pixel_metrics

    modules = {"_common": _common, "pixel_metrics": pixel_metrics, "patches": pc, "unet": un,
               "losses": loss, "augmentation": aug}
    total = 0
    for name, module in modules.items():
        assert module.MESSAGES, f"{name} has no MESSAGES"
        for key in module.MESSAGES:
            assert key.startswith(PREFIX[name] + "."), (name, key)
            assert ID.match(key), key
        total += len(module.MESSAGES)
    assert len(MESSAGES) == total          # all merged, none defined twice
    for key in ("common.not_implemented", "common.library_reference", "common.raised",
                "common.not_callable", "common.profiler_changed"):
        assert key in MESSAGES


def _module_strings(path: Path) -> tuple[list[str], list[ast.Call]]:
    """Every string constant of a check module outside its MESSAGES dict, and its calls of
    ``fail`` / ``CheckFailed``."""
    tree = ast.parse(path.read_text())
    messages = next((node.value for node in tree.body
                     if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MESSAGES"),
                    None)
    inside = {id(n) for n in ast.walk(messages)} if messages is not None else set()
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str) and id(n) not in inside]
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) in ("fail", "CheckFailed")]
    return strings, calls


@pytest.mark.parametrize("module", sorted(PREFIX), ids=str)
def test_every_id_in_the_source_has_a_message_and_every_message_is_used(module):
    """A static scan: ids are written out as string literals (never built from pieces), so
    every one the module can raise is among its string constants; each must have an entry,
    and each entry of the module's MESSAGES must be raised somewhere."""
    strings, calls = _module_strings(CHECKS / f"{module}.py")
    ids = {s for s in strings if ID.match(s)}
    assert ids, module
    for key in ids:
        assert key in MESSAGES, f"{module}.py raises {key!r}, which has no MESSAGES entry"
    for call in calls:
        first = call.args[0] if call.args else None
        assert isinstance(first, (ast.Constant, ast.Name, ast.Subscript)), \
            f"{module}.py line {call.lineno}: the check id must be a literal (or a variable " \
            "holding one), not built from pieces"
        if isinstance(first, ast.Constant):
            assert first.value in MESSAGES, (module, call.lineno, first.value)
    # no id fragments to concatenate: a literal that starts like an id must be a whole one
    fragments = [s for s in strings if re.match(r"^(%s)\.[a-z0-9_.]*$" % PREFIX[module], s)
                 and not ID.match(s)]
    assert fragments == [], fragments
    own = {k for k in MESSAGES if k.startswith(PREFIX[module] + ".")}
    assert own - ids == set(), f"{module}: MESSAGES entries no check raises: {own - ids}"


def test_every_message_says_what_is_wrong_then_where_to_look():
    for key, text in MESSAGES.items():
        what, sep, hint = text.partition("\nHint: ")
        assert sep, f"{key}: no 'Hint:' line"
        assert len(what.strip()) > 20 and len(hint.strip()) > 20, key
        assert "Hint:" not in hint, key
        assert "{" not in text and "}" not in text, f"{key}: a placeholder left in {text!r}"
        assert len(text) < 600, f"{key}: keep it short ({len(text)} characters)"


def _solution_lines() -> dict[str, set[str]]:
    """Per notebook, every line of its solution regions longer than 15 characters, whole and
    without a trailing comment, quotes made single."""
    found: dict[str, set[str]] = {}
    for path in sorted(SOURCE.glob("*.ipynb")):
        lines = found.setdefault(path.stem, set())
        for cell in nbformat.read(path, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                if "### BEGIN SOLUTION" in line:
                    inside = True
                elif "### END SOLUTION" in line:
                    inside = False
                elif inside:
                    for text in (line.strip(), line.split("  #")[0].strip()):
                        if len(text) > 15:
                            lines.add(_norm(text))
    return found


def _norm(text: str) -> str:
    return " ".join(text.replace('"', "'").split())


def test_no_message_contains_a_line_of_the_solution():
    texts = {key: _norm(text) for key, text in MESSAGES.items()}
    solutions = _solution_lines()
    assert sum(map(len, solutions.values())) > 100          # the scan found the answers
    for notebook, lines in solutions.items():
        for line in lines:
            for key, text in texts.items():
                assert line not in text, f"{key} quotes {notebook}'s solution: {line!r}"


def test_the_checks_hints_quote_no_solution_line_the_question_does_not_give():
    """The texts a check shows in the notebook (its string constants, docstrings aside) hold
    no line of a solution, unless the released question states that line itself."""
    given = " ".join(_norm(c.source) for p in RELEASE.glob("*.ipynb")
                     for c in nbformat.read(p, as_version=4).cells)
    lines = {line for found in _solution_lines().values() for line in found if line not in given}
    for path in sorted(CHECKS.glob("*.py")):
        tree = ast.parse(path.read_text())
        docs = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        texts = [_norm(n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant)
                 and isinstance(n.value, str) and id(n) not in docs]
        for line in lines:
            for text in texts:
                assert line not in text, f"{path.name} shows a solution line: {line!r} in {text!r}"


# --------------------------------------------------------------------------- every check, wrong

def my_dice(pred, target, cls=1):
    return ex.my_dice(pred, target, cls)


def _stub(*args):
    raise NotImplementedError()


def _mutates(pred, target):
    pred[...] = target
    return 1.0


def _leaves_the_profiler(pred, target):
    sys.setprofile(None)
    return my_dice(pred, target)


MASKS = np.array([[0, 1], [0, 0]])

WRONG_1_2 = [
    # exercise 1
    (lambda: checks.check_dice(ex.my_iou), "pixel_metrics.dice.iou"),
    (lambda: checks.check_dice(lambda p, t: my_dice(p, t, cls=0)), "pixel_metrics.dice.class0"),
    (lambda: checks.check_dice(lambda p, t: 1.0), "pixel_metrics.dice.value"),
    (lambda: checks.check_dice(lambda p, t: float(np.sum((p == 1) & (t == 1)) / max(np.sum(p == 1), 1))),
     "pixel_metrics.dice.precision"),
    (lambda: checks.check_dice(lambda p, t: float((p == t).mean())), "pixel_metrics.dice.accuracy"),
    (lambda: checks.check_dice(lambda p, t: np.array([my_dice(p, t, 0), my_dice(p, t, 1)])),
     "pixel_metrics.not_one_number"),
    (lambda: checks.check_dice(lambda p, t: None), "pixel_metrics.returned_none"),
    (lambda: checks.check_dice(lambda p, t: "0.5"), "pixel_metrics.not_a_number"),
    (lambda: checks.check_dice(lambda p, t: 1 / 0), "common.raised"),
    (lambda: checks.check_dice(0.8), "common.not_callable"),
    (lambda: checks.check_dice(_leaves_the_profiler), "common.profiler_changed"),
    (lambda: checks.check_iou(_stub), "common.not_implemented"),
    (lambda: checks.check_iou(lambda p, t: my_dice(p, t)), "pixel_metrics.iou.dice"),
    (lambda: checks.check_iou(lambda p, t: ex.my_iou(p, t, 0)), "pixel_metrics.iou.class0"),
    (lambda: checks.check_pixel_accuracy(_mutates), "pixel_metrics.changed_input"),
    (lambda: checks.check_pixel_accuracy(lambda p, t: (p == t).sum()),
     "pixel_metrics.pixel_accuracy.count"),
    (lambda: checks.check_pixel_accuracy(lambda p, t: float((p != t).mean())),
     "pixel_metrics.pixel_accuracy.error"),
    (lambda: checks.check_pixel_accuracy(lambda p, t: (p == t).reshape(len(p), -1).mean(axis=1)),
     "pixel_metrics.not_one_number"),
    (lambda: checks.check_mean_iou(ex.my_iou), "pixel_metrics.mean_iou.class1_only"),
    (lambda: checks.check_mean_iou(lambda p, t: 0.5), "pixel_metrics.mean_iou.value"),
    (lambda: checks.check_baseline(0.75, 1.0, MASKS), "pixel_metrics.baseline_dice.one"),
    (lambda: checks.check_baseline(0.25, 0.0, MASKS), "pixel_metrics.baseline_accuracy.membrane_fraction"),
    (lambda: checks.check_baseline(0.5, 0.0, MASKS), "pixel_metrics.baseline_accuracy.value"),
    (lambda: checks.check_baseline(None, 0.0, MASKS), "pixel_metrics.returned_none"),
    # exercise 2
    (lambda: pc.check_extract_patch(lambda image, row, col, window: image[:window, :window]),
     "patches.extract_patch.values"),
    (lambda: pc.check_extract_patch(lambda image, row, col, window: np.pad(
        image, window // 2, mode="symmetric")[row:row + window, col:col + window]),
     "patches.extract_patch.symmetric"),
    (lambda: pc.check_extract_patch(lambda image, row, col, window: image[:2, :2]),
     "patches.extract_patch.shape"),
    (lambda: pc.check_extract_patch(lambda image, row, col, window: None), "patches.returned_none"),
    (lambda: pc.check_sliding_window_segment(lambda classify, image, window: np.zeros(image.shape)),
     "patches.sliding_window_segment.values"),
    (lambda: pc.check_sliding_window_segment(lambda classify, image, window: np.zeros(3)),
     "patches.sliding_window_segment.shape"),
    (lambda: pc.check_stack_macs(lambda layers, size: 0), "patches.stack_macs.value"),
    (lambda: pc.check_stack_macs(lambda layers, size: [1, 2]), "patches.not_a_number"),
    (lambda: pc.check_stack_macs(lambda layers, size: None), "patches.returned_none"),
    (lambda: pc.check_redundancy(lambda layers, window: 1.0), "patches.redundancy.value"),
    (lambda: pc.check_receptive_field(lambda layers: (3, 1)), "patches.receptive_field.value"),
    (lambda: pc.check_receptive_field(lambda layers: 5), "patches.receptive_field.not_a_pair"),
    (lambda: pc.check_receptive_field(lambda layers: (1, 2, 3)), "patches.receptive_field.not_a_pair"),
]


@pytest.mark.parametrize("case", range(len(WRONG_1_2)), ids=[w[1] for w in WRONG_1_2])
def test_exercises_1_and_2_fail_with_the_mistakes_id(case):
    run, expected = WRONG_1_2[case]
    assert _failure(run).check_id == expected


@pytest.mark.parametrize("case", range(len(ex._mistakes())), ids=lambda i: ex._mistakes()[i][2])
def test_the_usual_mistakes_of_exercises_4_and_5_have_ids_with_messages(case):
    check, answer, _ = ex._mistakes()[case]
    err = _failure(lambda: check(answer))
    assert err.check_id.startswith(("losses.", "augmentation."))


@pytest.mark.parametrize("case", range(len(ex._library_answers())),
                         ids=[a[0] for a in ex._library_answers()])
def test_library_answers_fail_as_library_reference(case):
    _, check, answer, _ = ex._library_answers()[case]
    assert _failure(lambda: check(answer)).check_id == "common.library_reference"


WRONG_4_5 = [
    (lambda: loss.check_dice_loss(functools.partial(ex.my_dice_loss, background=True)),
     "losses.dice_loss.background"),
    (lambda: loss.check_dice_loss(functools.partial(ex.my_dice_loss, per_image=True)),
     "losses.dice_loss.per_image"),
    (lambda: loss.check_dice_loss(ex.my_dice_loss), None),        # the control: it passes
    (lambda: loss.check_dice_loss(lambda s, t, smooth=1e-5: 1 - ex.my_dice_loss(s, t, smooth)),
     "losses.dice_loss.not_loss"),
    (lambda: loss.check_dice_loss(lambda s, t, smooth=1e-5: ex.my_dice_loss(s, t, smooth).item()),
     "losses.not_a_tensor"),
    (lambda: loss.check_dice_loss(lambda s, t, smooth=1e-5: ex.my_dice_loss(s.detach(), t, smooth)),
     "losses.not_connected"),
    (lambda: loss.check_dice_loss(lambda s, t, smooth=1e-5: torch.zeros(2)), "losses.not_one_number"),
    (lambda: loss.check_dice_loss(lambda s, t, smooth=1e-5: None), "losses.returned_none"),
    (lambda: loss.check_dice_loss(lambda s, t, smooth=1e-5: ex.my_dice_loss(s, t, 0.0) / 0.0),
     "losses.dice_loss.not_finite"),
    (lambda: loss.check_weighted_cross_entropy(lambda s, t, w: ex.my_weighted_cross_entropy(
        s, t, torch.ones_like(w))), "losses.weighted_cross_entropy.unweighted"),
    (lambda: loss.check_weighted_cross_entropy(functools.partial(ex.my_weighted_cross_entropy,
                                                                 naive=True)),
     "losses.weighted_cross_entropy.not_finite"),
    (lambda: loss.check_weight_map(lambda inst, w0=10, sigma=5: loss._weight_variant(
        inst, w0, sigma, balance=False)), "losses.weight_map.no_balance"),
    (lambda: loss.check_weight_map(lambda inst, w0=10, sigma=5: loss._weight_variant(
        inst, w0, sigma, twice_nearest=True)), "losses.weight_map.twice_nearest"),
    (lambda: loss.check_weight_map(lambda inst, w0=10, sigma=5: np.ones(inst.shape)),
     "losses.weight_map.value"),
    (lambda: loss.check_weight_map(lambda inst, w0=10, sigma=5: np.ones(3)), "losses.weight_map.shape"),
    (lambda: aug.check_warp(lambda image, mask, field: None), "augmentation.returned_none"),
    (lambda: aug.check_warp(lambda image, mask, field: (image, mask)), "augmentation.warp.image"),
    (lambda: aug.check_warp(lambda image, mask, field: (ex.my_warp(image, mask, field)[0], mask)),
     "augmentation.warp.mask"),
    (lambda: aug.check_field(lambda shape, sigma, grid, rng: np.ones((2, *shape))),
     "augmentation.field.sigma_zero"),
    (lambda: aug.check_experiment({"seeds": [0, 1], "flips": [0.8, 0.7], "flips_elastic": [0.7, 0.6],
                                   "seconds": 0}), "augmentation.experiment.seconds"),
]


@pytest.mark.parametrize("case", range(len(WRONG_4_5)), ids=[str(w[1]) for w in WRONG_4_5])
def test_exercises_4_and_5_fail_with_the_mistakes_id(case, capsys):
    run, expected = WRONG_4_5[case]
    if expected is None:
        run()
        assert "checks passed" in capsys.readouterr().out
    else:
        assert _failure(run).check_id == expected


@pytest.mark.parametrize("result, expected", [
    ([0.8, 0.7], "augmentation.experiment.not_a_dict"),
    ({"seeds": [0, 1], "flips": [0.8, 0.7]}, "augmentation.experiment.missing_keys"),
    ({"seeds": [0], "flips": [0.8], "flips_elastic": [0.7], "seconds": 3.0},
     "augmentation.experiment.seeds"),
    ({"seeds": [0, -1], "flips": [0.8, 0.7], "flips_elastic": [0.7, 0.6], "seconds": 3.0},
     "augmentation.experiment.seeds"),
    ({"seeds": [0, 1], "flips": [0.8], "flips_elastic": [0.7, 0.6], "seconds": 3.0},
     "augmentation.experiment.one_per_seed"),
    ({"seeds": [0, 1], "flips": [80.0, 70.0], "flips_elastic": [0.7, 0.6], "seconds": 3.0},
     "augmentation.experiment.not_a_fraction"),
    ({"seeds": [0, 1], "flips": [0.8, float("nan")], "flips_elastic": [0.7, 0.6], "seconds": 3.0},
     "augmentation.experiment.not_a_number"),
])
def test_the_experiment_record_fails_with_the_mistakes_id(result, expected):
    assert _failure(lambda: aug.check_experiment(result)).check_id == expected


# --------------------------------------------------------------------------- exercise 3

def _answers(*cells: str, **replace) -> dict:
    """The namespace after running the given answer cells of the exercise 3 source notebook
    (the instructor's answers), then replacing names by ``replace`` (a wrong helper that the
    later answers then call)."""
    nb = {c.id: c.source for c in nbformat.read(SOURCE / "03_fcn_unet.ipynb", as_version=4).cells}
    namespace = {"np": np, "torch": torch, "nn": nn, "models": models}
    for cell in cells:
        exec(compile(nb[cell], f"<03_fcn_unet {cell}>", "exec"), namespace)
    namespace.update(replace)
    return namespace


def _swapped_crop(skip, x):
    """Crop and concatenate with the up-sampled map first."""
    h, w = x.shape[-2:]
    top, left = (skip.shape[-2] - h) // 2, (skip.shape[-1] - w) // 2
    return torch.cat([x, skip[..., top:top + h, left:left + w]], dim=1)


def _rounded_up(skip, x):
    h, w = x.shape[-2:]
    top, left = (skip.shape[-2] - h + 1) // 2, (skip.shape[-1] - w + 1) // 2
    return torch.cat([skip[..., top:top + h, left:left + w], x], dim=1)


class _Sliding(nn.Module):
    """The patch classifier slid over the image, one window per output position: the same
    numbers as the conversion, without converting anything."""

    def __init__(self, net):
        super().__init__()
        self.net, self.step = net, 2 ** net.pools

    def forward(self, x):
        win = self.net.window
        rows = range(0, x.shape[-2] - win + 1, self.step)
        cols = range(0, x.shape[-1] - win + 1, self.step)
        return torch.stack([torch.stack([self.net(x[..., i:i + win, j:j + win])[:, :, 0, 0]
                                         for j in cols], -1) for i in rows], -2)


class _InterpolatingUp(nn.Module):
    """An up block that doubles the size with F.interpolate and a 1x1 convolution."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.up = nn.Conv2d(in_ch, out_ch, 1)
        self.conv = models.DoubleConv(2 * out_ch, out_ch, padding="valid")

    def forward(self, x, skip):
        x = self.up(nn.functional.interpolate(x, scale_factor=2))
        return self.conv(torch.cat([models.center_crop(skip, *x.shape[-2:]), x], 1))


def _upsampling_unet():
    """The instructor's U-Net with every ConvTranspose2d replaced by Upsample + 1x1 conv."""
    ns = _answers("q2a-answer", "q2b-answer", "q3-answer")

    def build(cin, cout, depth, width):
        net = ns["UNet"](cin, cout, depth, width)
        for pair in net.ups:
            t = pair[0]
            pair[0] = nn.Sequential(nn.Upsample(scale_factor=2),
                                    nn.Conv2d(t.in_channels, t.out_channels, 1))
        return net
    return build


def _pad_and_run(net, image, tile):
    """One pass over the whole padded image (no tiles): the right numbers, not the answer."""
    out = models.output_size(tile, net.depth)
    context, step = (tile - out) // 2, 2 ** net.depth
    side = tile + step * max(0, -(-(max(image.shape) - out) // step))
    padded = np.pad(image, [(context, side - n - context) for n in image.shape], mode="reflect")
    with torch.no_grad():
        return net(torch.as_tensor(padded)[None, None])[0, :, :image.shape[0], :image.shape[1]]


def test_exercise_3_answers_of_the_source_pass():
    """The controls for the detections below: the instructor's answers, run here, pass."""
    ns = _answers("q1-answer", "q2a-answer", "q2b-answer", "q2c-answer", "q3-answer",
                  "q4-answer", "q5-answer")
    un.check_fully_convolutional(ns["fully_convolutional"])
    un.check_crop_and_concat(ns["crop_and_concat"])
    un.check_up_block(ns["UpBlock"])
    un.check_unet(ns["UNet"])
    un.check_overlap_tile(ns["overlap_tile"])

    un.check_overlap_tile(_batched)


def _batched(net, image, tile):
    """Overlap-tile with every tile in one batch: the net still sees tile x tile inputs."""
    out = models.output_size(tile, net.depth)
    context, step = (tile - out) // 2, out - out % 2 ** net.depth
    (h, w), (ny, nx) = image.shape, (max(1, -(-(n - out) // step) + 1) for n in image.shape)
    padded = np.pad(image, ((context, (ny - 1) * step + tile - h - context),
                            (context, (nx - 1) * step + tile - w - context)), mode="reflect")
    places = [(i * step, j * step) for i in range(ny) for j in range(nx)]
    tiles = torch.stack([torch.as_tensor(padded[r:r + tile, c:c + tile]) for r, c in places])
    with torch.no_grad():
        scores = net(tiles[:, None])
    result = torch.zeros(scores.shape[1], (ny - 1) * step + out, (nx - 1) * step + out,
                         dtype=scores.dtype)
    for (r, c), s in zip(places, scores):
        result[:, r:r + out, c:c + out] = s
    return result[:, :h, :w]


WRONG_3 = [
    # Q1: sliding the patch classifier, or returning it, is not the conversion
    (lambda: un.check_fully_convolutional(_Sliding), "unet.fully_convolutional.linear_layers"),
    (lambda: un.check_fully_convolutional(lambda net: net), "unet.fully_convolutional.linear_layers"),
    (lambda: un.check_fully_convolutional(lambda net: [net]), "unet.not_a_module"),
    (lambda: un.check_fully_convolutional(lambda net: nn.Sequential(net.features)),
     "unet.fully_convolutional.patch_shape"),
    # Q2
    (lambda: un.check_double_conv_down(lambda i, o: nn.Sequential(
        nn.Conv2d(i, o, 3, padding=1), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1), nn.ReLU()),
        lambda: nn.MaxPool2d(2)), "unet.double_conv.shape"),
    (lambda: un.check_double_conv_down(lambda i, o: nn.Sequential(
        nn.Conv2d(i, o, 3), nn.Conv2d(o, o, 3), nn.ReLU()), lambda: nn.MaxPool2d(2)),
     "unet.double_conv.values"),
    (lambda: un.check_double_conv_down(lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3)),
                                       lambda: nn.MaxPool2d(2)), "unet.double_conv.parameters"),
    (lambda: un.check_double_conv_down(_answers("q2a-answer")["double_conv"], lambda: nn.AvgPool2d(2)),
     "unet.down.values"),
    (lambda: un.check_crop_and_concat(_swapped_crop), "unet.crop_and_concat.swapped"),
    (lambda: un.check_crop_and_concat(_rounded_up), "unet.crop_and_concat.off_by_one"),
    (lambda: un.check_crop_and_concat(lambda skip, x: torch.cat([skip[..., :x.shape[-2], :x.shape[-1]], x], 1)),
     "unet.crop_and_concat.values"),
    (lambda: un.check_crop_and_concat(lambda skip, x: x), "unet.crop_and_concat.shape"),
    (lambda: un.check_crop_and_concat(lambda skip, x: None), "unet.returned_none"),
    # Q2c: the skip features first; a transposed convolution
    (lambda: un.check_up_block(_answers("q2a-answer", "q2c-answer",
                                        crop_and_concat=_swapped_crop)["UpBlock"]),
     "unet.up_block.swapped"),
    (lambda: un.check_up_block(_InterpolatingUp), "unet.up_block.no_transposed_conv"),
    # Q3
    (lambda: un.check_unet(_answers("q2a-answer", "q3-answer", crop_and_concat=_swapped_crop)["UNet"]),
     "unet.unet.swapped"),
    (lambda: un.check_unet(_upsampling_unet()), "unet.unet.no_transposed_conv"),
    (lambda: un.check_unet(lambda cin, cout, depth, width: _answers(
        "q2a-answer", "q2b-answer", "q3-answer")["UNet"](cin, cout, depth, width + 1)),
     "unet.unet.param_count"),
    # Q4
    (lambda: un.check_valid_sizes(lambda lo, hi, depth: None), "unet.returned_none"),
    (lambda: un.check_valid_sizes(lambda lo, hi, depth: 5), "unet.valid_sizes.not_a_list"),
    (lambda: un.check_valid_sizes(lambda lo, hi, depth: list(range(lo, hi + 1))),
     "unet.valid_sizes.value"),
    # Q5: tile by tile, and a tensor
    (lambda: un.check_overlap_tile(_pad_and_run), "unet.overlap_tile.not_tiled"),
    (lambda: un.check_overlap_tile(lambda net, image, tile: _answers("q5-answer")["overlap_tile"](
        net, image, tile).numpy()), "unet.overlap_tile.not_a_tensor"),
    (lambda: un.check_overlap_tile(lambda net, image, tile: _answers("q5-answer")["overlap_tile"](
        net, image, tile)[:, 1:]), "unet.overlap_tile.shape"),
    (lambda: un.check_overlap_tile(lambda net, image, tile: _answers("q5-answer")["overlap_tile"](
        net, image, tile) + 1), "unet.overlap_tile.values"),
]


@pytest.mark.parametrize("case", range(len(WRONG_3)), ids=[w[1] for w in WRONG_3])
def test_exercise_3_fails_with_the_mistakes_id(case):
    run, expected = WRONG_3[case]
    assert _failure(run).check_id == expected


def test_a_unet_with_the_skip_last_is_told_so_not_about_its_size():
    err = _failure(lambda: un.check_unet(
        _answers("q2a-answer", "q3-answer", crop_and_concat=_swapped_crop)["UNet"]))
    assert "the skip features must come first in the concatenation" in str(err)
    assert "output side" not in str(err)
    err = _failure(lambda: un.check_up_block(
        _answers("q2a-answer", "q2c-answer", crop_and_concat=_swapped_crop)["UpBlock"]))
    assert "the skip features must come first in the concatenation" in str(err)


def test_an_interpolating_up_block_is_told_to_use_a_transposed_convolution():
    err = str(_failure(lambda: un.check_up_block(_InterpolatingUp)))
    assert "no nn.ConvTranspose2d" in err and "transposed convolution" in err


def test_the_off_by_one_crop_is_named_without_the_answer():
    err = str(_failure(lambda: un.check_crop_and_concat(_rounded_up)))
    assert "the crop is off by one pixel" in err and "odd" in err
    for answer in ("(H - h) // 2", "(skip.shape[-2] - h) // 2", "top:top + h", "torch.cat(["):
        assert answer not in err, answer


def test_overlap_tile_must_run_tile_by_tile_and_return_a_tensor():
    err = str(_failure(lambda: un.check_overlap_tile(_pad_and_run)))
    assert "overlap_tile must run the net tile by tile, on inputs of the tile's size" in err
    err = str(_failure(lambda: un.check_overlap_tile(
        lambda net, image, tile: _answers("q5-answer")["overlap_tile"](net, image, tile).numpy())))
    assert "must return a torch tensor" in err
    # the question asks for a tensor, in so many words
    q5 = next(c.source for c in nbformat.read(SOURCE / "03_fcn_unet.ipynb", as_version=4).cells
              if c.id == "q5-md")
    assert "(a torch tensor)" in q5


def test_a_fully_convolutional_net_that_runs_linear_layers_is_refused():
    err = str(_failure(lambda: un.check_fully_convolutional(_Sliding)))
    assert "the converted net must be all convolutions: turn each Linear into a Conv2d" in err


def test_valid_sizes_keeps_its_hint_and_stays_short():
    err = str(_failure(lambda: un.check_valid_sizes(lambda lo, hi, depth: list(range(lo, hi + 1)))))
    assert err.splitlines()[-2].startswith("Hint: follow one side through the net")
    assert err.splitlines()[-2].endswith("every size must stay >= 1")
    assert len(err) < 700, len(err)
    assert "(61 sizes)" in err                        # the long list is abbreviated


# --------------------------------------------------------------------------- exercise 4

def _ignores_smooth(scores, target, smooth=1e-5):
    return ex.my_dice_loss(scores, target)            # always the default smooth


def test_a_dice_loss_that_ignores_smooth_is_told_so():
    err = _failure(lambda: loss.check_dice_loss(_ignores_smooth))
    assert err.check_id == "losses.dice_loss.smooth_ignored"
    assert "smooth is ignored" in str(err)


def test_the_weight_map_hints_do_not_print_the_loop():
    for variant, key in ((dict(consecutive=True), "losses.weight_map.consecutive"),
                         (dict(on_cells=True), "losses.weight_map.on_cells")):
        err = _failure(lambda: loss.check_weight_map(functools.partial(ex.my_weight_map, **variant)))
        assert err.check_id == key
        for answer in ("np.unique(instances[instances > 0])", "for i in", "distance_transform_edt("):
            assert answer not in str(err), answer
    err = _failure(lambda: loss.check_weight_map(lambda inst, w0=10, sigma=5: np.ones(inst.shape)))
    assert err.check_id == "losses.weight_map.value"
    assert "distance_transform_edt(" not in str(err) and "exp(-(d1" not in str(err)


# --------------------------------------------------------------------------- the library's source

def test_the_librarys_source_compiled_again_is_the_answer_key():
    from unet_teach import losses

    def copied(fn, prefix=""):
        namespace = dict(vars(inspect.getmodule(fn)))
        exec(prefix + inspect.getsource(fn), namespace)
        return namespace

    ns = copied(losses.cross_entropy)
    err = _failure(lambda: loss.check_weighted_cross_entropy(
        lambda s, t, w: ns["cross_entropy"](s, t, w)))
    assert err.check_id == "common.library_reference"
    assert "unet_teach.losses.cross_entropy" in str(err).splitlines()[0]
    # renamed, and compiled with another future flag: the same code
    ns = copied(losses.dice_loss, "from __future__ import annotations\n")
    renamed = ns["dice_loss"]
    renamed.__name__ = renamed.__qualname__ = "my_dice_loss"
    assert _failure(lambda: loss.check_dice_loss(renamed)).check_id == "common.library_reference"
    ns = {}
    exec(inspect.getsource(losses.weight_map).replace("def weight_map", "def mine"),
         {**vars(losses), "__builtins__": __builtins__}, ns)
    assert _failure(lambda: loss.check_weight_map(ns["mine"])).check_id == "common.library_reference"
    # a whole class: its methods are recognised
    ns = copied(models.UNet)
    err = _failure(lambda: un.check_unet(functools.partial(ns["UNet"], padding="valid")))
    assert err.check_id == "common.library_reference"
    assert "unet_teach.models.UNet.__init__" in str(err)
    ns = copied(models.valid_sizes)
    assert _failure(lambda: un.check_valid_sizes(ns["valid_sizes"])).check_id == \
        "common.library_reference"


def test_own_code_under_a_references_name_is_not_the_library():
    def cross_entropy(s, t, w):                        # the reference's name, own code
        return ex.my_weighted_cross_entropy(s, t, w)

    from unet_teach import losses
    scores, target = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
    value = call_own(cross_entropy, "weighted_cross_entropy", scores, target,
                     torch.ones(1, 2, 2), references=(losses.cross_entropy,))
    assert torch.isclose(value, torch.log(torch.tensor(2.0)))


def test_a_short_function_without_a_docstring_is_matched_by_name_only():
    namespace: dict = {}
    exec("def short(x):\n    return x + 1\n", namespace)
    reference = namespace["short"]
    exec("def retyped(x):\n    return x + 1\n", namespace)
    assert call_own(namespace["retyped"], "short", 1, references=(reference,)) == 2
    with pytest.raises(CheckFailed):
        call_own(reference, "short", 1, references=(reference,))


def test_metrics_dice_pasted_into_a_cell_is_the_answer_key():
    namespace = {"np": np}
    exec(compile(inspect.getsource(metrics.dice), "/tmp/ipykernel_1/123.py", "exec"), namespace)
    assert _failure(lambda: checks.check_dice(namespace["dice"])).check_id == \
        "common.library_reference"


def test_the_grader_shows_the_fixed_message_of_a_failed_check():
    """What reaches a feedback file: the id's fixed text, none of the student's numbers."""
    from unet_teach.course.grade.messages import feedback_message

    for run, _ in WRONG_1_2[:6] + WRONG_3[-4:]:
        err = _failure(run)
        shown = feedback_message(type(err).__name__, str(err))
        assert shown == MESSAGES[err.check_id]
        first = str(err).splitlines()[0]
        assert first not in shown


def test_the_wrong_but_passing_submission_now_fails_the_visible_checks():
    """tests/attacks/wrong_but_passing.ipynb: a patch net slid over the windows, and one
    whole-image pass returned as numpy; both used to pass the checks in the notebook."""
    cells = {c.id: c.source for c in nbformat.read(
        ROOT / "tests" / "attacks" / "wrong_but_passing.ipynb", as_version=4).cells}
    namespace = {"np": np, "torch": torch, "nn": nn, "models": models}
    exec(cells["q1-answer"], namespace)
    exec(cells["q5-answer"], namespace)
    err = _failure(lambda: un.check_fully_convolutional(namespace["fully_convolutional"]))
    assert err.check_id == "unet.fully_convolutional.linear_layers"
    err = _failure(lambda: un.check_overlap_tile(namespace["overlap_tile"]))
    assert err.check_id == "unet.overlap_tile.not_a_tensor"       # the type is named first
    as_tensor = namespace["overlap_tile"]
    err = _failure(lambda: un.check_overlap_tile(
        lambda net, image, tile: torch.as_tensor(as_tensor(net, image, tile))))
    assert err.check_id == "unet.overlap_tile.not_tiled"
