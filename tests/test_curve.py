"""unet_teach.curve (chapter 9's experiment) and scripts/learning_curve.py: what makes the
comparisons paired holds, scoring along the way leaves training alone, the results file
records what the chapter reads."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_teach import curve

ROOT = Path(__file__).resolve().parents[1]
TINY = curve.Config(size=32, window=24, crop=16, copies=4, steps=6, test=32,
                    net=dict(in_channels=1, out_channels=2, depth=1, base_width=2,
                             padding="same", norm="instance"))


@pytest.fixture(scope="module")
def slices():
    # every pixel value unique (float64), so a region can be traced back to its slice
    rng = np.random.default_rng(0)
    images = rng.permutation(25 * 64 * 64).reshape(25, 64, 64) / (25 * 64 * 64)
    masks = (rng.random((25, 64, 64)) < 0.3).astype(np.int64)
    return images, masks


def test_a_seeds_image_sets_are_nested_and_its_own(slices):
    eight = curve.training_images(*slices, seed=3, n=8, size=32)
    two = curve.training_images(*slices, seed=3, n=2, size=32)
    assert eight[0].shape == (8, 32, 32) and eight[1].dtype == np.int64
    np.testing.assert_array_equal(eight[0][:2], two[0])          # the 2 are in the 8
    other = curve.training_images(*slices, seed=4, n=2, size=32)
    assert not np.array_equal(other[0], two[0])
    # only training slices: no pixel of a test slice (20-24) ever enters (the pixels are
    # random floats, so a shared value would mean a shared region)
    assert not set(eight[0].ravel()) & set(slices[0][20:].ravel())


def test_scoring_along_the_way_leaves_training_alone(slices):
    plain = curve.run(*slices, seed=0, n=2, setting="flips + elastic", config=TINY)
    scored = curve.run(*slices, seed=0, n=2, setting="flips + elastic",
                       config=dataclasses.replace(TINY, history=3))
    assert plain["test error"] == scored["test error"]
    assert [h["step"] for h in scored["history"]] == [2, 4, 6]
    assert plain["history"][-1]["step"] == 6


def test_a_run_is_a_function_of_its_seed_and_setting(slices):
    # Pairing by seed needs each run to be repeatable: the same (seed, n, setting) gives
    # the same net, and only the augmentation differs between settings.
    runs = {s: curve.run(*slices, seed=1, n=1, setting=s, config=TINY, keep_net=True)
            for s in curve.SETTINGS}
    assert set(runs["none"]) >= {"seed", "n", "setting", "test error", "train error", "dice",
                                 "rand", "seconds", "history", "net"}
    again = curve.run(*slices, seed=1, n=1, setting="flips", config=TINY, keep_net=True)
    assert all(torch.equal(a, b) for a, b in zip(again["net"].parameters(),
                                                 runs["flips"]["net"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(runs["none"]["net"].parameters(),
                                                     runs["flips"]["net"].parameters()))


def test_duel_scores_both_nets_on_the_same_pixels(slices):
    unet = curve.run(*slices, seed=0, n=1, setting="none", config=TINY, keep_net=True)
    match = curve.duel(*slices, seed=0, n=1, seconds=0.5, unet=unet["net"], config=TINY,
                       preset="w17", times=(1, 2), per_slice=20, margin=8)
    assert [p["times"] for p in match["patch"]] == [1, 2]
    steps = [p["step"] for p in match["patch"]]
    assert steps[1] >= steps[0] >= 1
    assert 0 <= match["unet_error"] <= 1 and match["window"] == 17


@pytest.mark.slow
def test_the_script_writes_what_the_chapter_reads(tmp_path):
    data = Path(os.environ.get("UNET_TEACH_DATA", ""))
    if not (data / "isbi2012").is_dir():
        pytest.skip("needs the ISBI slices (UNET_TEACH_DATA)")
    out = tmp_path / "lc"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "learning_curve.py"),
                           "--seeds", "0", "1", "--n", "1", "--steps", "2", "--history", "2",
                           "--duel-n", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "learning_curve.json").read_text())
    assert record["command"].startswith("python ") and "--steps 2" in record["command"]
    assert record["device"]["cpu"] and record["device"]["torch"] == torch.__version__
    assert record["date"][:4].isdigit() and record["duel"] == []
    assert len(record["runs"]) == 2 * len(curve.SETTINGS)
    assert curve.Config(**{k: v for k, v in record["config"].items()
                           if k != "history"}).steps == 2
