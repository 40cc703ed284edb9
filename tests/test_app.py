"""``unet-teach train / predict / evaluate`` (unet_teach.app) on small generated images.

Every test writes 64 x 64 synthetic membranes (unet_teach.data) as PNG or TIFF files into
its own folder and runs the command in-process through ``main``; trainings are a few
steps of a narrow net (``--base-width 4``), so the file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unet_teach import metrics
from unet_teach.app import budget as app_budget
from unet_teach.app import train as app_train
from unet_teach.app.images import InputError, read_mask, to_channels
from unet_teach.cli import main
from unet_teach.data import synthetic_membranes
from unet_teach.models import preset

FAST = ["--base-width", "4", "--batch-size", "2", "--quiet"]


def write_pairs(root: Path, n: int = 6, size: int = 64, seed: int = 0, values=(0, 255),
                image_suffix: str = ".png", bits: int = 8, rgb: bool = False,
                three_classes: bool = False):
    """Synthetic membranes as files: images/NN<suffix>, masks/NN.png (membrane = values[1])."""
    images, masks = synthetic_membranes(n, size, seed=seed)
    if three_classes:                      # 0 interior, 1 membrane, 2 interior on the right
        masks = masks + 2 * ((masks == 0) & (np.arange(size) >= size // 2))
    img_dir, mask_dir = root / "images", root / "masks"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for i, (image, mask) in enumerate(zip(images, masks)):
        pixels = np.round(image * 255).astype(np.uint8)
        if bits == 16:
            pixels = pixels.astype(np.uint16) * 16         # 12 bits stored in 16
        if rgb:
            pixels = np.stack([pixels, pixels // 2, 255 - pixels], axis=-1)
        path = img_dir / f"{i:02d}{image_suffix}"
        if image_suffix == ".png":
            Image.fromarray(pixels).save(path)
        else:
            tifffile.imwrite(path, pixels)
        labels = mask if three_classes else np.where(mask == 1, values[1], values[0])
        Image.fromarray(labels.astype(np.uint8)).save(mask_dir / f"{i:02d}.png")
    return img_dir, mask_dir, masks


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def snapshot(root: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training on 0/255 masks, shared by the prediction and evaluation tests."""
    root = tmp_path_factory.mktemp("trained")
    img_dir, mask_dir, masks = write_pairs(root)
    model = root / "model.pt"
    assert main(["train", str(img_dir), str(mask_dir), "--out", str(model), "--steps", "15",
                 *FAST]) == 0
    return root, img_dir, mask_dir, model, masks


@pytest.fixture(scope="module")
def regions_trained(tmp_path_factory):
    """A training with --regions 0: membranes are 255 here, so the objects (cells) are the
    regions of value 0."""
    root = tmp_path_factory.mktemp("regions")
    img_dir, mask_dir, _ = write_pairs(root)
    model = root / "m.pt"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["train", str(img_dir), str(mask_dir), "--out", str(model), "--steps",
                     "6", "--regions", "0", "--loss", "weighted", *FAST]) == 0
    return root, img_dir, mask_dir, model, out.getvalue()


# ----------------------------------------------------------------------------- end to end

def test_train_predict_evaluate_with_0_255_masks(trained, tmp_path, capsys):
    root, img_dir, mask_dir, model, masks = trained
    state = load(model)
    assert state["class_values"] == [0, 255]
    assert state["train"]["step"] == 15 and state["train"]["finished"]
    assert 0 < state["threshold"] < 1
    assert state["threshold_from"].startswith("lowest pixel error")

    pred = tmp_path / "pred"
    rc, out, _ = run(capsys, "predict", model, img_dir, "--out", pred, "--quiet")
    assert rc == 0 and "wrote 6 prediction(s)" in out
    for i in range(6):
        labels = np.asarray(Image.open(pred / f"{i:02d}.png"))
        prob = tifffile.imread(pred / f"{i:02d}_prob.tif")
        assert labels.dtype == np.uint8 and labels.shape == (64, 64)
        assert set(np.unique(labels)) <= {0, 255}                 # the masks' own values
        assert prob.dtype == np.float32 and prob.shape == (64, 64)
        assert 0 <= prob.min() and prob.max() <= 1
        np.testing.assert_array_equal(labels, np.where(prob > state["threshold"], 255, 0))

    table = tmp_path / "scores.csv"
    rc, out, _ = run(capsys, "evaluate", pred, mask_dir, "--regions", 0, "--csv", table,
                     "--quiet")
    assert rc == 0 and "mean" in out
    rows = list(csv.DictReader(table.open()))
    assert [r["image"] for r in rows] == [f"{i:02d}" for i in range(6)] + ["mean"]
    expected = []
    for i in range(6):
        p = np.asarray(Image.open(pred / f"{i:02d}.png")).astype(np.int64)
        t = np.asarray(Image.open(mask_dir / f"{i:02d}.png")).astype(np.int64)
        split, merge = metrics.variation_of_information(p, t, regions=0)
        expected.append({"pixel_error": metrics.pixel_error(p, t),
                         "dice": metrics.dice(p == 255, t == 255),
                         "iou": metrics.iou(p == 255, t == 255),
                         "rand_error": metrics.rand_error(p, t, regions=0),
                         "vi_split": split, "vi_merge": merge})
    for row, want in zip(rows, expected):
        for key, value in want.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-5, abs=1e-6), (row, key)
    for key in expected[0]:
        assert float(rows[-1][key]) == pytest.approx(np.mean([e[key] for e in expected]),
                                                     rel=1e-5)


def test_0_255_masks_train_exactly_like_0_1_masks(tmp_path, capsys):
    # the class mapping makes the stored values irrelevant: same seed, same weights
    files = {}
    for values in ((0, 1), (0, 255)):
        img_dir, mask_dir, _ = write_pairs(tmp_path / str(values[1]), values=values)
        files[values] = tmp_path / f"{values[1]}.pt"
        assert run(capsys, "train", img_dir, mask_dir, "--out", files[values], "--steps", 8,
                   *FAST)[0] == 0
    a, b = load(files[(0, 1)]), load(files[(0, 255)])
    assert (a["class_values"], b["class_values"]) == ([0, 1], [0, 255])
    assert a["train"]["loss"] == b["train"]["loss"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert np.mean(b["train"]["loss"][-3:]) < np.mean(b["train"]["loss"][:3])   # it learns


def test_three_class_masks(tmp_path, capsys):
    img_dir, mask_dir, _ = write_pairs(tmp_path, three_classes=True)
    model = tmp_path / "m.pt"
    rc, out, _ = run(capsys, "train", img_dir, mask_dir, "--out", model, "--steps", 5, *FAST)
    assert rc == 0 and "2 -> class 2" in out
    state = load(model)
    assert state["class_values"] == [0, 1, 2] and "threshold" not in state
    assert state["model_args"]["out_channels"] == 3
    rc, _, _ = run(capsys, "predict", model, img_dir / "00.png", "--out", tmp_path / "p",
                   "--quiet")
    assert rc == 0
    assert set(np.unique(np.asarray(Image.open(tmp_path / "p/00.png")))) <= {0, 1, 2}
    prob = tifffile.imread(tmp_path / "p/00_prob.tif")
    assert prob.shape == (3, 64, 64)
    np.testing.assert_allclose(prob.sum(axis=0), 1, atol=1e-5)
    rc, _, err = run(capsys, "predict", model, img_dir, "--out", tmp_path / "q",
                     "--threshold", 0.3)
    assert rc == 2 and "3 classes" in err and not (tmp_path / "q").exists()


@pytest.mark.parametrize("name", ["paper", "pytorch"])
def test_other_presets_train_and_predict_whole_images(name, trained, tmp_path, capsys):
    # paper: valid padding (crops mirrored by the context, targets cropped to the output);
    # pytorch: three input channels (grey images repeated, with a note)
    _, img_dir, mask_dir, _, _ = trained
    model = tmp_path / "m.pt"
    rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", model, "--steps", 2,
                     "--preset", name, *FAST)
    assert rc == 0 and (name != "pytorch" or "repeated into 3 channels" in err)
    state = load(model)
    assert state["preset"] == name and state["model_args"]["out_channels"] == 2
    assert run(capsys, "predict", model, img_dir / "00.png", "--out", tmp_path / "p",
               "--quiet")[0] == 0
    assert np.asarray(Image.open(tmp_path / "p/00.png")).shape == (64, 64)


def test_16_bit_tiff_images_predict_like_their_8_bit_originals(tmp_path, capsys):
    img_dir, mask_dir, _ = write_pairs(tmp_path / "t16", image_suffix=".tif", bits=16)
    assert tifffile.imread(img_dir / "00.tif").dtype == np.uint16
    model = tmp_path / "m.pt"
    assert run(capsys, "train", img_dir, mask_dir, "--out", model, "--steps", 5, *FAST)[0] == 0
    img8, _, _ = write_pairs(tmp_path / "t8")
    for folder, out in ((img_dir, "p16"), (img8, "p8")):
        assert run(capsys, "predict", model, folder, "--out", tmp_path / out, "--quiet")[0] == 0
    # x16 is a linear change of scale, which the percentile normalisation undoes
    np.testing.assert_allclose(tifffile.imread(tmp_path / "p16/03_prob.tif"),
                               tifffile.imread(tmp_path / "p8/03_prob.tif"), atol=1e-5)


def test_rgb_images_become_grey_with_a_note(tmp_path, capsys):
    from skimage.color import rgb2gray
    img_dir, mask_dir, _ = write_pairs(tmp_path, rgb=True)
    rgb = np.asarray(Image.open(img_dir / "00.png"))
    grey, note = to_channels(rgb, 1, "x")
    np.testing.assert_allclose(grey[0] / 255, rgb2gray(rgb), atol=1e-5)
    assert note == "rgb->grey"
    rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", tmp_path / "m.pt",
                     "--steps", 3, *FAST)
    assert rc == 0 and "RGB images were converted to grey" in err
    rc, _, err = run(capsys, "predict", tmp_path / "m.pt", img_dir, "--out", tmp_path / "p",
                     "--quiet")
    assert rc == 0 and "converted to grey" in err


def test_tta_keeps_the_shape_and_commutes_with_flips(trained, tmp_path, capsys):
    _, img_dir, _, model, _ = trained
    image = np.asarray(Image.open(img_dir / "01.png"))
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(image).save(inputs / "plain.png")
    Image.fromarray(np.ascontiguousarray(np.rot90(image))).save(inputs / "turned.png")
    Image.fromarray(np.ascontiguousarray(image[:48, :])).save(inputs / "wide.png")
    rc, out, _ = run(capsys, "predict", model, inputs, "--out", tmp_path / "p", "--tta",
                     "--quiet")
    assert rc == 0 and "test-time augmented" in out
    plain = tifffile.imread(tmp_path / "p/plain_prob.tif")
    turned = tifffile.imread(tmp_path / "p/turned_prob.tif")
    # averaged over all 8 symmetries, the prediction of a turned image is the turned prediction
    np.testing.assert_allclose(turned, np.rot90(plain), atol=1e-5)
    assert tifffile.imread(tmp_path / "p/wide_prob.tif").shape == (48, 64)
    assert np.asarray(Image.open(tmp_path / "p/wide.png")).shape == (48, 64)
    run(capsys, "predict", model, inputs / "plain.png", "--out", tmp_path / "q", "--quiet")
    single = tifffile.imread(tmp_path / "q/plain_prob.tif")
    assert not np.allclose(single, plain, atol=1e-4)                 # TTA did something


def test_model_file_holds_only_plain_types(trained):
    state = load(trained[3])                                         # weights_only=True

    def kinds(x):
        if isinstance(x, dict):
            assert all(isinstance(k, str) for k in x)
            return set().union(*map(kinds, x.values())) if x else set()
        if isinstance(x, list):
            return set().union(*map(kinds, x)) if x else set()
        return {type(x)}

    assert kinds(state) <= {torch.Tensor, int, float, str, bool}
    for key in ("model", "model_args", "class_values", "normalization", "preset", "threshold",
                "train", "optimizer", "validation"):
        assert key in state
    assert state["normalization"] == {"method": "percentile", "low": 1.0, "high": 99.8}


def _documented_keys() -> tuple[set, set]:
    """The keys the model file's docstring lists: top level, and inside ``train``."""
    from unet_teach.app import modelfile
    block = modelfile.__doc__.split("Its keys::")[1].split("\n\n")[1]
    top = {m.group(1) for m in re.finditer(r"^    (\w+)  ", block, re.M)}
    train = {m.group(1) for m in re.finditer(r"^      (\w+) ", block, re.M)}
    return top, train


def test_the_model_file_holds_the_documented_keys(trained, regions_trained):
    top, train = _documented_keys()
    assert {"format", "version", "split", "validation", "train", "optimizer"} <= top
    assert {"settings", "budget", "loss", "threshold_info"} <= train
    plain, regions = load(trained[3]), load(regions_trained[3])
    assert set(plain) == top - {"split"}           # split: --regions only
    assert set(regions) == top
    assert set(plain["train"]) == set(regions["train"]) == train
    assert plain["version"] == regions["version"] == 2


def test_a_version_1_file_predicts_and_a_newer_one_is_refused(trained, tmp_path, capsys):
    _, img_dir, _, model, _ = trained
    state = load(model)
    old = {**state, "version": 1}                  # version 1: the same keys, no split
    torch.save(old, tmp_path / "v1.pt")
    rc, _, err = run(capsys, "predict", tmp_path / "v1.pt", img_dir / "00.png", "--out",
                     tmp_path / "p", "--quiet")
    assert rc == 0, err
    torch.save({**state, "version": 3}, tmp_path / "v3.pt")
    rc, _, err = run(capsys, "predict", tmp_path / "v3.pt", img_dir, "--out", tmp_path / "q")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "model file version 3" in err and "upgrade unet-teach" in err


def test_predict_tiles_a_large_image_seamlessly(trained, tmp_path, capsys):
    # an image larger than a tile (infer.TILE = 512 px) is predicted in overlapping tiles;
    # with a net whose receptive field (depth 1: 18 px) fits in the half overlap each tile
    # drops (32 px), the tiles add no seam: away from the image's border (where the tiles
    # mirror the image and a whole pass pads with zeros) the result is the whole-image pass
    from unet_teach.app.images import load_image
    from unet_teach.infer import OVERLAP, TILE
    from unet_teach.models import UNet
    _, _, _, model, _ = trained
    state = load(model)
    args = dict(in_channels=1, out_channels=2, depth=1, base_width=4, padding="same",
                norm="batch")
    torch.manual_seed(0)
    net = UNet(**args).eval()
    torch.save({**state, "model_args": args, "model": net.state_dict(), "threshold": 0.5},
               tmp_path / "tiny.pt")
    images, _ = synthetic_membranes(1, 640, seed=3)
    picture = np.round(images[0, :600] * 255).astype(np.uint8)       # 600 x 640 > TILE
    assert min(picture.shape) > TILE
    Image.fromarray(picture).save(tmp_path / "big.png")
    rc, _, err = run(capsys, "predict", tmp_path / "tiny.pt", tmp_path / "big.png", "--out",
                     tmp_path / "p", "--quiet")
    assert rc == 0, err
    labels = np.asarray(Image.open(tmp_path / "p" / "big.png"))
    prob = tifffile.imread(tmp_path / "p" / "big_prob.tif")
    assert labels.shape == prob.shape == picture.shape
    image, _ = load_image(tmp_path / "big.png", 1, state["normalization"])
    with torch.no_grad():
        whole = torch.softmax(net(torch.from_numpy(image)[None]), 1)[0, 1].numpy()
    inner = (slice(OVERLAP, -OVERLAP),) * 2
    np.testing.assert_allclose(prob[inner], whole[inner], atol=1e-5)
    sure = np.abs(whole - 0.5) > 1e-4                                 # no float ties
    np.testing.assert_array_equal(labels[inner][sure[inner]],
                                  np.where(whole > 0.5, 255, 0)[inner][sure[inner]])


def test_resume_adds_steps(trained, tmp_path, capsys):
    _, img_dir, mask_dir, _, _ = trained
    model = tmp_path / "m.pt"
    assert run(capsys, "train", img_dir, mask_dir, "--out", model, "--steps", 4, *FAST)[0] == 0
    first = load(model)["train"]["loss"]
    rc, out, _ = run(capsys, "train", img_dir, mask_dir, "--out", model, "--resume",
                     "--steps", 9, "--quiet")
    assert rc == 0 and out.startswith("resuming")
    state = load(model)["train"]
    assert state["step"] == 9 and len(state["loss"]) == 9 and state["loss"][:4] == first
    rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", model, "--resume")
    assert rc == 2 and "already trained for 9 steps" in err
    rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", model, "--resume",
                     "--steps", 12, "--preset", "keras")
    assert rc == 2 and "--preset default" in err and len(err.strip().splitlines()) == 1


def test_bf16_training_saves_the_standard_layout_and_resumes_in_fp32(trained, tmp_path,
                                                                      capsys):
    # --precision is a compute choice: a bf16 (channels-last) training writes the same
    # file as an fp32 one, and resuming it in another precision continues it
    _, img_dir, mask_dir, _, _ = trained
    model = tmp_path / "m.pt"
    rc, out, _ = run(capsys, "train", img_dir, mask_dir, "--out", model, "--steps", 4,
                     "--precision", "bf16", *FAST)
    assert rc == 0 and "bf16 autocast" in out
    state = load(model)
    assert all(v.is_contiguous() for v in state["model"].values())
    assert all(np.isfinite(state["train"]["loss"]))
    rc, out, _ = run(capsys, "train", img_dir, mask_dir, "--out", model, "--resume",
                     "--steps", 7, "--precision", "fp32", "--quiet")
    assert rc == 0 and ", fp32" in out and load(model)["train"]["step"] == 7
    assert app_budget.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(InputError, match="choose one of auto, fp32, bf16"):
        app_budget.resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize("units, expected", [("AMX", "bf16"), ("AVX-512 BF16", "bf16"),
                                             ("none", "fp32")])
def test_auto_precision_is_bf16_on_cpus_that_multiply_it(units, expected, monkeypatch):
    # an AMD EPYC with AVX-512 BF16 and no AMX: a default training step measured 977 ms in
    # fp32, 383 ms in bf16 + channels-last; without bf16 instructions bf16 is emulated
    monkeypatch.setattr(app_budget, "cpu_bf16_support", lambda: units)
    cpu = torch.device("cpu")
    assert app_budget.resolve_precision("auto", cpu) == expected
    assert app_budget.resolve_precision(None, cpu) == expected
    assert app_budget.resolve_precision("fp32", cpu) == "fp32"
    reason = app_budget.precision_reason("auto", cpu)
    assert (units in reason) == (expected == "bf16") and reason.startswith("auto: ")


def test_the_run_says_which_precision_and_why(tmp_path, capsys):
    img_dir, mask_dir, _ = write_pairs(tmp_path, n=4, size=48)
    rc, out, _ = run(capsys, "train", img_dir, mask_dir, "--out", tmp_path / "m.pt",
                     "--steps", 1, *FAST)
    line = out.splitlines()[1]                     # the model line, second of the run
    expected = app_budget.resolve_precision("auto", torch.device("cpu"))
    assert rc == 0 and line.startswith("model: ") and f", {expected}" in line
    assert app_budget.precision_reason("auto", torch.device("cpu")) in line


@pytest.mark.slow
def test_bf16_training_reaches_the_accuracy_of_fp32(tmp_path, capsys):
    # the check behind "auto" choosing bf16: the same short training (same seed, images,
    # crops and steps) in fp32 and in bf16 autocast + channels-last ends at the same
    # validation pixel error, within 0.02 (fixed before the first run; the two runs'
    # roundings differ from the first step on, so their paths part like two seeds'). A
    # CPU without bf16 instructions emulates the same arithmetic, so this runs anywhere.
    img_dir, mask_dir, masks = write_pairs(tmp_path, n=8, size=64)
    errors = {}
    for precision in ("fp32", "bf16"):
        model = tmp_path / f"{precision}.pt"
        rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", model, "--steps", 60,
                         "--precision", precision, "--base-width", "8", "--batch-size", "4",
                         "--quiet")
        assert rc == 0, err
        errors[precision] = load(model)["validation"]["pixel_error"]
    share = float(np.mean(masks))                  # membrane: the rarer class here
    lazy = min(share, 1 - share)                   # the error of one class everywhere
    assert max(errors.values()) < 0.6 * lazy, f"not both learned: {errors}"
    assert abs(errors["bf16"] - errors["fp32"]) <= 0.02, errors


def test_interrupted_training_resumes_from_its_checkpoint(trained, tmp_path, capsys,
                                                          monkeypatch):
    _, img_dir, mask_dir, _, _ = trained
    calls = []

    def interrupted_on_the_fourth_step(scores, target):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return torch.nn.functional.cross_entropy(scores, target)

    model = tmp_path / "m.pt"
    with monkeypatch.context() as m:
        m.setitem(app_train.LOSSES, "ce", interrupted_on_the_fourth_step)
        rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", model, "--steps", 8,
                         *FAST)
    assert rc == 130 and "--resume continues" in err
    state = load(model)["train"]
    assert state["step"] == 3 and not state["finished"]
    rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", model, "--steps", 8)
    assert rc == 2 and "unfinished training" in err
    assert run(capsys, "train", img_dir, mask_dir, "--out", model, "--resume", "--quiet")[0] == 0
    state = load(model)["train"]
    assert state["step"] == 8 and len(state["loss"]) == 8 and state["finished"]


def test_a_minutes_budget_trains_and_records_its_time(trained, tmp_path, capsys):
    # the budget's arithmetic is tested on a fake clock (test_app_budget.py); a real run
    # checks only what a busy machine cannot change: it ends, and records its own time
    _, img_dir, mask_dir, _, _ = trained
    start = time.monotonic()
    rc, out, _ = run(capsys, "train", img_dir, mask_dir, "--out", tmp_path / "m.pt",
                     "--minutes", 0.05, *FAST)                       # 3 seconds
    took = time.monotonic() - start
    assert rc == 0 and "ends at about" in out
    state = load(tmp_path / "m.pt")["train"]
    assert state["budget"] == {"minutes": 0.05} and state["finished"]
    assert state["step"] >= 1 and len(state["loss"]) == state["step"]
    assert 0 < state["elapsed_s"] <= took


def test_a_run_whose_end_takes_most_of_its_budget_says_what_to_do(trained, tmp_path, capsys,
                                                                 monkeypatch):
    # as if scoring the validation part took 10 minutes: the whole budget goes to the end
    _, img_dir, mask_dir, _, _ = trained
    monkeypatch.setattr(app_train, "scoring_seconds", lambda pixels, regions: 600.0)
    rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", tmp_path / "m.pt",
                     "--minutes", 1, *FAST)
    assert rc == 0 and load(tmp_path / "m.pt")["train"]["step"] == 1     # the first step only
    assert "more than a quarter" in err and "--val-fraction" in err


def test_report_names_each_image(trained, tmp_path, capsys):
    _, img_dir, mask_dir, model, _ = trained
    run(capsys, "predict", model, img_dir, "--out", tmp_path / "p", "--quiet")
    rc, out, _ = run(capsys, "evaluate", tmp_path / "p", mask_dir, "--report", tmp_path / "qc",
                     "--images", img_dir, "--quiet")
    assert rc == 0
    page = (tmp_path / "qc" / "report.html").read_text()
    assert all(f"id='{i:02d}'" in page for i in range(6))
    assert page.count("data:image/png;base64,") == 6
    assert "pixel_error" in page and "mean" in page


def test_python_dash_m_runs_the_command():
    result = subprocess.run([sys.executable, "-m", "unet_teach", "predict", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--tta" in result.stdout


# ----------------------------------------------------------------------------- bad input

def _jpeg_mask(path: Path) -> None:
    from io import BytesIO
    mask = np.asarray(Image.open(path))
    buffer = BytesIO()
    Image.fromarray(mask).save(buffer, format="JPEG", quality=75)
    Image.open(buffer).save(path)                     # a PNG, but with JPEG's grey values


def _blurred_edges(path: Path) -> None:
    from scipy import ndimage
    membrane = np.asarray(Image.open(path)) == 255
    ring = ndimage.binary_dilation(membrane) & ~membrane            # the edge, one pixel
    Image.fromarray(np.where(membrane, 255, np.where(ring, 128, 0)).astype(np.uint8)).save(path)


def _resized_mask(path: Path) -> None:
    mask = Image.open(path)
    mask.resize((32, 32), Image.BILINEAR).resize((64, 64), Image.NEAREST).save(path)


TRAIN_CASES = {
    # name: (how to break the folders, the file the message must name)
    "image without mask": (lambda i, m: (m / "02.png").unlink(), "02.png"),
    "mask without image": (lambda i, m: (i / "02.png").unlink(), "02.png"),
    "sizes differ": (lambda i, m: Image.open(i / "03.png").crop((0, 0, 48, 64))
                     .save(i / "03.png"), "03.png"),
    "JPEG-compressed mask": (lambda i, m: _jpeg_mask(m / "01.png"), "01.png"),
    "JPEG mask file": (lambda i, m: (m / "01.png").rename(m / "01.jpg"), "01.jpg"),
    "interpolated mask": (lambda i, m: _resized_mask(m / "04.png"), "04.png"),
    "blurred mask edges": (lambda i, m: _blurred_edges(m / "04.png"), "04.png"),
    "empty folder": (lambda i, m: [p.unlink() for p in i.iterdir()], "images"),
    "corrupt image": (lambda i, m: (i / "05.png").write_bytes(b"\x89PNG garbage"), "05.png"),
    "truncated image": (lambda i, m: (i / "05.png").write_bytes(
        (i / "05.png").read_bytes()[:200]), "05.png"),
    "non-image file": (lambda i, m: (i / "notes.txt").write_text("hello"), "notes.txt"),
    "mask all background": (lambda i, m: [Image.fromarray(np.zeros((64, 64), np.uint8))
                                          .save(p) for p in m.iterdir()], "masks"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_bad_training_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    img_dir, mask_dir, _ = write_pairs(tmp_path)
    breaks, named = TRAIN_CASES[case]
    breaks(img_dir, mask_dir)
    before = snapshot(tmp_path)
    rc, out, err = run(capsys, "train", img_dir, mask_dir, "--out", tmp_path / "out/m.pt",
                       "--steps", 2, *FAST)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert snapshot(tmp_path) == before                                    # nothing written


def test_existing_model_is_not_overwritten(trained, capsys):
    root, img_dir, mask_dir, model, _ = trained
    before = snapshot(root)
    rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", model, "--steps", 2)
    assert rc == 2 and str(model) in err and "--force" in err
    assert len(err.strip().splitlines()) == 1 and snapshot(root) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unusable_device_is_one_line(trained, tmp_path, capsys):
    _, img_dir, mask_dir, model, _ = trained
    for argv in (["train", img_dir, mask_dir, "--out", tmp_path / "m.pt"],
                 ["predict", model, img_dir, "--out", tmp_path / "p"]):
        rc, _, err = run(capsys, *argv, "--device", "cuda")
        assert rc == 2 and err.startswith("error: --device cuda") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def _truncated(model: Path, bad: Path) -> None:
    bad.write_bytes(model.read_bytes()[:5000])


def _other_preset(model: Path, bad: Path) -> None:
    state = load(model)
    state["model"] = preset("keras", base_width=4, out_channels=2).state_dict()
    torch.save(state, bad)


def _plain_checkpoint(model: Path, bad: Path) -> None:
    from unet_teach.train import save_checkpoint
    save_checkpoint(bad, preset("keras", base_width=4))


@pytest.mark.parametrize("make_bad", [_truncated, _other_preset, _plain_checkpoint],
                         ids=["truncated", "another preset", "plain checkpoint"])
def test_bad_model_file(make_bad, trained, tmp_path, capsys):
    _, img_dir, _, model, _ = trained
    bad = tmp_path / "bad.pt"
    make_bad(model, bad)
    before = snapshot(tmp_path)
    rc, _, err = run(capsys, "predict", bad, img_dir, "--out", tmp_path / "p")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "bad.pt" in lines[0], err
    assert snapshot(tmp_path) == before


def test_predict_checks_inputs_and_outputs_before_writing(trained, tmp_path, capsys):
    _, img_dir, _, model, _ = trained
    inputs = tmp_path / "in"
    shutil.copytree(img_dir, inputs)
    (inputs / "04.png").write_bytes(b"not an image")
    rc, _, err = run(capsys, "predict", model, inputs, "--out", tmp_path / "p")
    assert rc == 2 and "04.png" in err and not (tmp_path / "p").exists()
    (inputs / "04.png").unlink()
    assert run(capsys, "predict", model, inputs, "--out", tmp_path / "p", "--quiet")[0] == 0
    before = snapshot(tmp_path)
    rc, _, err = run(capsys, "predict", model, inputs, "--out", tmp_path / "p")
    assert rc == 2 and "00.png: exists" in err and "--force" in err
    assert snapshot(tmp_path) == before
    assert run(capsys, "predict", model, inputs, "--out", tmp_path / "p", "--force",
               "--quiet")[0] == 0


def test_bad_evaluation_input(trained, tmp_path, capsys):
    _, img_dir, mask_dir, model, _ = trained
    pred = tmp_path / "p"
    run(capsys, "predict", model, img_dir, "--out", pred, "--quiet")
    truth = tmp_path / "t"
    shutil.copytree(mask_dir, truth)
    (truth / "03.png").unlink()
    rc, _, err = run(capsys, "evaluate", pred, truth)
    assert rc == 2 and "03.png" in err and "no mask" in err
    Image.open(mask_dir / "03.png").crop((0, 0, 64, 32)).save(truth / "03.png")
    rc, _, err = run(capsys, "evaluate", pred, truth)
    assert rc == 2 and "03.png" in err and "64 x 32" in err
    shutil.copy(mask_dir / "03.png", truth / "03.png")
    rc, _, err = run(capsys, "evaluate", pred, truth, "--regions", 7)
    assert rc == 2 and "no pixel of value 7" in err
    (tmp_path / "s.csv").write_text("keep")
    rc, _, err = run(capsys, "evaluate", pred, truth, "--csv", tmp_path / "s.csv")
    assert rc == 2 and "s.csv: exists" in err and (tmp_path / "s.csv").read_text() == "keep"


def test_read_mask_accepts_a_thin_middle_class_of_0_to_k(tmp_path):
    # 0 background, 1 a one-pixel boundary, 2 inside: a real class, not interpolation
    mask = np.zeros((9, 9), np.uint8)
    mask[2:7, 2:7] = 1
    mask[3:6, 3:6] = 2
    Image.fromarray(mask).save(tmp_path / "thin.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "thin.png"), mask)


def test_regions_choose_the_threshold_by_rand_error_and_weight_the_loss(regions_trained,
                                                                       tmp_path, capsys):
    # which threshold the rule picks is tested on a hand-made map (test_app_validate.py);
    # here, that a --regions training stores what predict then writes, and scores it
    _, img_dir, mask_dir, model, out = regions_trained
    assert "Rand error" in out.splitlines()[-1]            # the last line says it
    state = load(model)
    assert state["threshold_from"] == ("lowest Rand error on the validation part, regions "
                                       "cut at weak spots, pixel error within 2% of its "
                                       "lowest")
    assert state["validation"]["threshold_metric"] == "rand_error"
    assert state["train"]["settings"]["loss"] == "weighted"
    from unet_teach.threshold import SPLIT_LEVEL
    assert state["split"] == {"region_class": 0, "seed_level": SPLIT_LEVEL}
    # the stored scores are those of the labels predict writes for the validation images
    stems = state["train"]["validation_split"]["images"]
    truths = [np.asarray(Image.open(mask_dir / f"{s}.png")) for s in stems]
    for option, key in (([], "rand_error"), (["--no-split"], "rand_error_unsplit")):
        out = tmp_path / key
        assert run(capsys, "predict", model, img_dir, "--out", out, "--quiet", *option)[0] == 0
        labels = [np.asarray(Image.open(out / f"{s}.png")) for s in stems]
        assert state["validation"][key] == pytest.approx(np.mean(
            [metrics.rand_error(a, t, regions=0) for a, t in zip(labels, truths)]), abs=1e-6)
        if key == "rand_error":
            assert state["validation"]["pixel_error"] == pytest.approx(
                np.mean(np.concatenate([(a != t).ravel() for a, t in zip(labels, truths)])))
    # --no-split is the plain threshold of the probabilities predict writes
    for s in stems:
        prob = tifffile.imread(tmp_path / "rand_error" / f"{s}_prob.tif")      # P(255)
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "rand_error_unsplit" / f"{s}.png")),
            np.where(prob > state["threshold"], 255, 0))


def test_split_regions_cuts_a_gap_and_keeps_the_rest():
    from scipy import ndimage
    from unet_teach.infer import split_regions
    prob = np.full((9, 20), 0.95)
    prob[:, 9:11] = 0.05                          # a 2 px membrane between two cells ...
    prob[4, 9:11] = 0.6                           # ... with a gap the threshold lets through
    prob[:, 18:] = 0.55                           # a faint region with no confident core
    prob[:, 17] = 0.05
    plain = prob > 0.5
    assert ndimage.label(plain)[1] == 2           # the two cells merged, the faint one apart
    cut = split_regions(prob, 0.5, 0.9)
    assert ndimage.label(cut)[1] == 3             # the merge undone
    assert (plain & ~cut).sum() <= 2              # by a line through the gap only
    assert not (cut & ~plain).any()               # never a pixel added
    np.testing.assert_array_equal(cut[:, 18:], plain[:, 18:])      # no core: unchanged
    one = np.full((6, 6), 0.95)
    np.testing.assert_array_equal(split_regions(one, 0.5, 0.9), one > 0.5)
    with pytest.raises(ValueError, match="at least the threshold"):
        split_regions(prob, 0.5, 0.4)
    with pytest.raises(ValueError, match="H x W"):
        split_regions(prob[None], 0.5, 0.9)


@pytest.mark.parametrize("options, named", [
    (["--loss", "weighted"], "needs --regions"),
    (["--regions", 7], "--regions 7"),
])
def test_bad_regions_options_are_one_line(options, named, tmp_path, capsys):
    img_dir, mask_dir, _ = write_pairs(tmp_path)
    before = snapshot(tmp_path)
    rc, _, err = run(capsys, "train", img_dir, mask_dir, "--out", tmp_path / "m.pt",
                     "--steps", 2, *options, *FAST)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and named in err, err
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(not (os.environ.get("UNET_TEACH_DATA")
                         and Path(os.environ["UNET_TEACH_DATA"], "isbi2012").is_dir()),
                    reason="needs the ISBI slices ($UNET_TEACH_DATA)")
@pytest.mark.slow
def test_benchmark_script_passes_options_after_the_double_dash(tmp_path):
    # a token run of scripts/benchmark_isbi.sh: options after -- reach `unet-teach train`
    # (getopts swallows the --, which once made the script read them as folders)
    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_isbi.sh"
    env = {**os.environ, "UNET_TEACH_CMD": f"{sys.executable} -m unet_teach",
           "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(script), "-s", "2", "-t", "00-01", "-e", "20-20",
                           "--", "--base-width", "4", "--crop", "64", "--batch-size", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "64 px crops x 2" in done.stdout and "budget --steps 2" in done.stdout
    assert "regions cut apart at weak spots" in done.stdout    # --regions 255 (ISBI labels)
    assert "predict options: --tta" in done.stdout
    assert re.search(r"mean: pixel error [0-9.]+, .*rand error [0-9.]+", done.stdout)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_precomputed_weights_move_exactly_with_the_mask(padding):
    # a weight map equal to the mask (as floats) must come out of every crop, flip and turn
    # equal to the mask crop: the weights are cut from the output window, not the input's
    from unet_teach.app.train import crop_sizes
    from unet_teach.augment import AUGMENTS, RandomCrops
    from unet_teach.models import UNet
    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 2, (70, 90)), rng.integers(0, 2, (64, 64))]
    images = [rng.random((1, *m.shape), dtype=np.float32) for m in masks]
    size, out = crop_sizes(UNet(1, 2, depth=2, base_width=2, padding=padding), 40)
    crops = RandomCrops(images, masks, size, out, AUGMENTS["flip"],
                        weights=[m.astype(np.float32) * 7 + 1 for m in masks])
    x, y, w = crops.batch(np.random.default_rng(1), 16)
    assert x.shape == (16, 1, size, size) and y.shape == w.shape == (16, out, out)
    np.testing.assert_array_equal(w.numpy(), y.numpy() * 7 + 1)
    with pytest.raises(ValueError, match="per crop"):
        RandomCrops(images, masks, size, out, AUGMENTS["elastic"], weights=masks)
