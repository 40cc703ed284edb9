"""``unet-teach train`` data-parallel under torchrun: two CPU processes (gloo) on tiny data.

Four 32 x 32 synthetic membrane images are written as PNG files, and
``python -m torch.distributed.run --standalone --nproc-per-node=2 -m unet_teach train`` runs
a narrow net (``--base-width 4``) for a few steps. The test hook ``UNET_TEACH_DDP_DEBUG_DIR``
makes every rank write the SHA-256 of its final weights and of its first batch; the model
file is compared with one from an ordinary one-process run. The file runs in under a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_teach.app.modelfile import load_model, read_model_file
from unet_teach.app.parallel import DEBUG_DIR_ENV, state_sha256
from unet_teach.cli import main
from unet_teach.data import synthetic_membranes

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--base-width", "4", "--batch-size", "2", "--crop", "32", "--lr", "0.01", "--quiet"]


def write_pairs(root: Path, n: int = 4, size: int = 32) -> tuple[Path, Path]:
    images, masks = synthetic_membranes(n, size, seed=1)
    img_dir, mask_dir = root / "images", root / "masks"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(img_dir / f"{i:02d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(mask_dir / f"{i:02d}.png")
    return img_dir, mask_dir


def torchrun(debug: Path, *args) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node=2 -m unet_teach train ARGS`` (torchrun is
    torch.distributed.run of this interpreter)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", DEBUG_DIR_ENV: str(debug)}
    env.pop("UNET_TEACH_DEVICE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "unet_teach", "train", *map(str, args)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def ranks(debug: Path) -> list[dict]:
    return [json.loads((debug / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    img_dir, mask_dir = write_pairs(root)
    model = root / "ddp.pt"
    result = torchrun(root / "debug", img_dir, mask_dir, "--out", model, "--steps", 6, *FAST)
    return root, img_dir, mask_dir, model, result


@pytest.mark.slow
def test_two_ranks_end_with_the_same_weights_and_the_file_holds_them(ddp_run):
    root, _, _, model, result = ddp_run
    r0, r1 = ranks(root / "debug")
    assert (r0["world"], r1["world"], r0["step"], r1["step"]) == (2, 2, 6, 6)
    assert r0["state_sha256"] == r1["state_sha256"]
    # each rank trained on its own shard: another stream of random crops
    assert r0["first_batch_sha256"] != r1["first_batch_sha256"]
    net, _ = load_model(model)
    assert state_sha256(net) == r0["state_sha256"]
    # one log, from rank 0
    assert result.stdout.count("wrote ") == 1 and result.stdout.count("training: ") == 1
    assert "on 2 processes (gloo, cpu): 4 crops a step" in result.stdout


@pytest.mark.slow
def test_the_loss_falls(ddp_run):
    loss = read_model_file(ddp_run[3])["train"]["loss"]
    assert len(loss) == 6 and all(np.isfinite(loss))
    assert np.mean(loss[-2:]) < np.mean(loss[:2]), loss


@pytest.mark.slow
def test_the_model_file_is_like_a_one_process_one(ddp_run, tmp_path, capsys):
    root, img_dir, mask_dir, model, _ = ddp_run
    single = tmp_path / "single.pt"
    assert main(["train", str(img_dir), str(mask_dir), "--out", str(single), "--steps", "1",
                 *FAST]) == 0
    a, b = read_model_file(model), read_model_file(single)
    assert a.keys() == b.keys() and a["train"].keys() == b["train"].keys()
    assert a["model_args"] == b["model_args"] and a["class_values"] == b["class_values"]
    assert a["train"]["settings"] == b["train"]["settings"]
    assert {k: v.shape for k, v in a["model"].items()} == {k: v.shape for k, v in b["model"].items()}
    assert not any(k.startswith("module.") for k in a["model"])
    assert a["optimizer"].keys() == b["optimizer"].keys()
    assert a["train"]["finished"] and 0 < a["threshold"] < 1
    # and it predicts like any model file
    capsys.readouterr()
    assert main(["predict", str(model), str(img_dir / "00.png"), "--out",
                 str(tmp_path / "pred"), "--quiet"]) == 0
    assert np.asarray(Image.open(tmp_path / "pred" / "00.png")).shape == (32, 32)


@pytest.mark.slow
def test_resume_under_torchrun_continues_the_same_training(ddp_run, tmp_path):
    root, img_dir, mask_dir, model, _ = ddp_run
    copy = tmp_path / "ddp.pt"
    copy.write_bytes(model.read_bytes())
    before = read_model_file(copy)["train"]["loss"]
    torchrun(tmp_path / "debug", img_dir, mask_dir, "--out", copy, "--resume", "--steps", 9)
    state = read_model_file(copy)
    assert state["train"]["step"] == 9 and state["train"]["finished"]
    assert state["train"]["loss"][:6] == before and len(state["train"]["loss"]) == 9
    r0, r1 = ranks(tmp_path / "debug")
    assert r0["state_sha256"] == r1["state_sha256"] and r0["step"] == 9
    assert not torch.equal(state["model"]["head.weight"],
                           read_model_file(model)["model"]["head.weight"])


@pytest.mark.parametrize("env, place", [
    ({}, (0, 1, 0, False, True, False)),                                   # a plain run
    ({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}, (0, 1, 0, True, True, True)),
    ({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}, (5, 8, 1, True, False, True)),
])
def test_ranks_read_torchrun_s_variables(env, place):
    """torchrun with one process still joins a process group (``launched``); only rank 0
    is the main one."""
    from unet_teach.app.parallel import Ranks

    r = Ranks.from_env(env)
    assert (r.rank, r.world, r.local, r.launched, r.main, r.parallel) == place
