"""``unet-teach train``: a U-Net on your own images and masks, in a wall time you choose.

What happens, in order:

1. **Check everything first** (:mod:`unet_teach.app.images`): the folders, the pairs, every
   file, the output; nothing is written if anything is wrong.
2. **Classes from the masks' values**: the sorted values over all masks are the classes, so
   0/255 masks are two classes, 0 and 255, and so are 0/1 masks - there is no conversion to
   forget, which is how 0/255 masks otherwise train nothing. The model file records the
   values, and ``predict`` writes them back.
3. **Hold out a validation part** (``val_fraction``): whole images when there are at least
   4, else the bottom rows of every image.
4. **Train** (:func:`train_loop`) on random square crops (``crop`` px, mirrored up to that
   size for smaller images) with the chosen augmentation: ``none`` (crops only), ``flip``
   (the 8 flips and quarter turns; the default: exact, free, and enough for a short
   training) or ``elastic`` (flips, the paper's elastic deformation and intensity changes;
   better for longer trainings on few images). Loss: per-pixel cross-entropy (the default
   without ``regions``; calibrated probabilities, and the paper's), Dice + cross-entropy
   (``dice_ce``, for small objects) or the paper's weighted cross-entropy (``weighted``,
   the default with ``regions``: :func:`unet_teach.losses.weight_map` of every training
   image, heaviest on the thin background between two objects, cut and flipped with its
   crop; the objects are the connected regions of the ``regions`` value, so it needs
   ``regions``). AdamW with a cosine learning-rate decay
   that spans the whole budget, so the rate is low when the time is up. The forward pass
   runs in bf16 autocast, channels-last, where the hardware multiplies bf16 natively
   (``precision="auto"``: GPUs that support it, CPUs with AMX units or AVX-512 BF16,
   where a step takes about half the time or less, so a budget in minutes buys twice the
   steps), else in fp32; the run's second line says which and why.
5. **The budget is wall time from the command's start** (``minutes``; loading and the final
   validation included: the loop stops early by the time those will take) or a number of
   steps. The model file is written every ``checkpoint_minutes`` and at the end, and holds
   the elapsed time and step, so ``resume`` continues for the time that remains.
6. **Choose the threshold** (2 classes) on the validation part: the probability cut with
   the lowest pixel error (:func:`unet_teach.metrics.threshold_sweep`), or with ``regions``
   (the mask value whose connected regions are the objects, e.g. 255 for the cell interiors
   of the ISBI labels) the lowest Rand error, which counts the objects merged through a gap
   and split by a spurious line; stored in the file. With ``regions``, ``predict`` also
   cuts the regions apart where they touch only through a weak spot
   (:func:`unet_teach.infer.split_regions`, a seeded watershed from the pixels the net
   gives the region more than ``SPLIT_LEVEL``), and the threshold is chosen for that
   output: the lowest validation Rand error among the thresholds whose pixel error is
   within ``PIXEL_SLACK`` (2 %) of the lowest, the low end of the pixel error's flat
   bottom. The Rand error without the cut is reported too.

**Past one machine: data-parallel training.** The same command runs in several processes
when ``torchrun`` starts it, one process a GPU (or, without GPUs, a few CPU processes)::

    # 4 GPUs of this machine
    torchrun --standalone --nproc-per-node=4 -m unet_teach train IMAGES MASKS --out m.pt
    # the same, through the installed command
    torchrun --standalone --nproc-per-node=4 --no-python unet-teach train IMAGES MASKS --out m.pt
    # 2 machines of 4 GPUs: run this on both (HOST is the first machine's address)
    torchrun --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29500 -m unet_teach train IMAGES MASKS --out m.pt

Every process (a *rank*) holds the whole model (``DistributedDataParallel``: the gradients
are averaged over the ranks after each backward pass, NCCL between GPUs, gloo between CPU
processes) and trains on its own shard of the data: its own stream of random crops, seeded
by ``(seed, step, rank)``. ``--batch-size`` is per rank, so N ranks train on N times as many
crops a step; the learning rate is not changed. Each rank uses the GPU of its
``LOCAL_RANK``. Rank 0 keeps the clock: before every step it tells the others whether to
take it and where the learning-rate schedule stands, so all ranks stop at the same step and
none waits forever in an all-reduce. The losses stored are the means over all ranks'
crops. Batch norm normalises with each rank's own batch (as ``DistributedDataParallel``
does); its running averages are rank 0's, copied to the others at every step. Only rank 0
prints, writes the model file (the same format and keys as a one-process run: the weights
of the model inside the wrapper) and validates, while the others wait. ``--resume`` works
the same way. The folders and ``--out`` must be at the same paths on every machine (a
shared file system). ``UNET_TEACH_DDP_DEBUG_DIR`` is a test hook: when set, every rank
writes ``rank<R>.json`` there at the end, with a SHA-256 of its weights and of its first
batch, so a test can check that the ranks end equal and saw different crops.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from scipy import ndimage
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import __version__
from ..augment import AUGMENTS, RandomCrops
from ..losses import cross_entropy, dice_ce_loss, weight_map
from ..metrics import rand_error, threshold_sweep
from ..models import center_crop
from ..profile import cpu_bf16_support
from ..train import seed_everything
from ..threshold import (PIXEL_SLACK, SPLIT_LEVEL, THRESHOLDS, choose_threshold,
                         threshold_curves)
from .images import (COLOR_NOTES, NORMALIZATION, InputError, check_same_size, class_values,
                     load_image, pair_files, read_mask)
from .modelfile import (build_model, load_model, load_optimizer_state, model_args,
                        optimizer_state, read_model_file, save_model, weights)
from ..infer import decide, input_for, predict_probabilities
from .predict import pick_device

LOSSES = {"ce": cross_entropy, "dice_ce": dice_ce_loss, "weighted": cross_entropy}
#: The settings a training keeps; ``--resume`` continues with the stored ones.
DEFAULTS = dict(preset="default", base_width=None, augment="flip", loss=None,
                val_fraction=0.1, seed=0, crop=192, batch_size=4, lr=1e-3, weight_decay=1e-4,
                regions=None)
DEFAULT_MINUTES = 10.0
#: Validation scores at most this many pixels (a seeded random subset beyond it).
MAX_VAL_PIXELS = 4_000_000


def _say(text: str) -> None:
    print(text, flush=True)


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ crops

def crop_sizes(model, crop: int) -> tuple[int, int]:
    """``(input, output)`` side of a training crop whose output is at least ``crop`` px
    (rounded up to a size the net takes; see ``unet_teach.app.predict.input_for``).

    Example:
        >>> from unet_teach.models import UNet
        >>> crop_sizes(UNet(1, 2, depth=4, base_width=4, padding="valid"), 192)
        (380, 196)
    """
    return input_for(model, crop)


# ------------------------------------------------------------------------ the budget

@dataclass
class Budget:
    """When training stops: after ``steps`` steps, or ``seconds`` of wall time counted from
    ``clock_start`` (this command's start, ``time.monotonic()``) plus ``elapsed_before``
    (earlier runs of a resumed training).

    With a time budget the loop stops early by the time the end will take: ``reserve_s``
    (writing the file) plus ``reserve_steps`` times the current step time (the final
    validation, measured in training steps), and it starts no step it cannot finish.

    Example:
        >>> b = Budget(steps=10)
        >>> b.fraction(5), b.spent(9), b.spent(10)
        (0.5, False, True)
    """

    steps: int | None = None
    seconds: float | None = None
    clock_start: float = 0.0
    elapsed_before: float = 0.0
    reserve_s: float = 0.0
    reserve_steps: float = 0.0

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.clock_start

    def fraction(self, step: int) -> float:
        """How much of the budget is used, 0..1 (the learning-rate schedule's position)."""
        if self.steps is not None:
            return min(1.0, step / self.steps)
        return min(1.0, self.elapsed() / self.seconds)

    def spent(self, step: int, step_time: float = 0.0) -> bool:
        if self.steps is not None:
            return step >= self.steps
        ahead = self.reserve_s + (self.reserve_steps + 1) * step_time
        return self.elapsed() + ahead >= self.seconds

    def describe(self) -> str:
        return (f"{self.steps} steps" if self.steps is not None
                else f"{self.seconds / 60:g} minutes")


def cosine_lr(lr: float, fraction: float) -> float:
    """Cosine decay from ``lr`` at the start to ``lr / 100`` at the end of the budget.

    Example:
        >>> cosine_lr(1e-3, 0.0), round(cosine_lr(1e-3, 0.5), 6), cosine_lr(1e-3, 1.0)
        (0.001, 0.000505, 1e-05)
    """
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0))))


#: ``--precision``: "auto" trains in bf16 autocast where the hardware multiplies bf16
#: natively (CUDA GPUs that support it; CPUs with AMX tile units or AVX-512 BF16
#: instructions, where it about halves a step's time, with channels-last more) and in fp32
#: elsewhere, where bf16 would be converted to fp32 to compute and be slower. The weights
#: and the optimiser stay fp32 either way.
PRECISIONS = ("auto", "fp32", "bf16")
#: What :func:`unet_teach.profile.cpu_bf16_support` says of the CPUs that "auto" uses bf16 on.
#: The accuracy is the same as fp32's (tests/test_app.py trains both ways and compares).
BF16_CPUS = ("AMX", "AVX-512 BF16")


def resolve_precision(name: str | None, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"``: what ``--precision name`` means on ``device``.

    Example:
        >>> resolve_precision("fp32", torch.device("cpu"))
        'fp32'
        >>> resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
        True
    """
    name = name or "auto"
    if name not in PRECISIONS:
        raise InputError(f"--precision {name}: choose auto, fp32 or bf16")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise InputError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not "
                         "compute in bf16; use --precision fp32")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if cuda_bf16 else "fp32"
    return "bf16" if device.type == "cpu" and cpu_bf16_support() in BF16_CPUS else "fp32"


def precision_reason(name: str | None, device: torch.device) -> str:
    """Why ``--precision name`` means what it does on ``device``, for the run's first lines.

    Example:
        >>> precision_reason("fp32", torch.device("cpu"))
        'asked for with --precision fp32'
    """
    name = name or "auto"
    if name != "auto":
        return f"asked for with --precision {name}"
    if device.type == "cuda":
        return ("auto: this GPU multiplies bf16 natively" if torch.cuda.is_bf16_supported()
                else "auto: this GPU has no bf16 arithmetic")
    if device.type != "cpu":
        return f"auto: fp32 on {device.type}"
    units = cpu_bf16_support()
    if units in BF16_CPUS:
        return f"auto: this CPU multiplies bf16 natively ({units}); --precision fp32 to turn off"
    return ("auto: this CPU has no bf16 instructions (AMX or AVX-512 BF16), so bf16 would "
            "be converted to fp32 and run slower")


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


# ------------------------------------------------------------------------ data parallel

#: The test hook of a data-parallel run: when this names a folder, every rank writes
#: ``rank<R>.json`` there at the end (hashes of its weights and of its first batch).
DEBUG_DIR_ENV = "UNET_TEACH_DDP_DEBUG_DIR"


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a ``torchrun`` launch; rank 0 of 1 without one.

    torchrun starts the processes and tells each its place: ``RANK`` (0 .. N-1 over all
    machines), ``WORLD_SIZE`` (N) and ``LOCAL_RANK`` (its index on its own machine, which
    picks its GPU). A launch of one process is data-parallel too (a world of one: the
    same code path, which is how a one-GPU machine checks it).

    Example:
        >>> Ranks.from_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
        Ranks(rank=5, world=8, local=1, launched=True)
        >>> Ranks.from_env({}).parallel
        False
    """

    rank: int = 0
    world: int = 1
    local: int = 0
    launched: bool = False

    @classmethod
    def from_env(cls, env=None) -> "Ranks":
        env = os.environ if env is None else env
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                   int(env.get("LOCAL_RANK", 0)), "WORLD_SIZE" in env)

    @property
    def main(self) -> bool:
        """Whether this is rank 0, which prints, keeps the clock, validates and writes."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        """Whether torchrun started this process (then it joins a process group)."""
        return self.launched or self.world > 1


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """This rank's device: GPU ``LOCAL_RANK`` when a torchrun launch uses CUDA.

    Example:
        >>> rank_device(torch.device("cpu"), Ranks(rank=1, world=2, local=1, launched=True))
        device(type='cpu')
    """
    if not ranks.parallel or device.type != "cuda":
        return device
    if device.index is not None:
        raise InputError(f"--device {device}: under torchrun every process takes the GPU of "
                         "its LOCAL_RANK; pass --device cuda (or no --device)")
    gpus = torch.cuda.device_count()
    if ranks.local >= gpus:
        raise InputError(f"LOCAL_RANK {ranks.local}: this machine has {gpus} GPU(s); start at "
                         f"most one process a GPU (torchrun --nproc-per-node={gpus})")
    return torch.device("cuda", ranks.local)


def join(ranks: Ranks, device: torch.device) -> None:
    """Join the launch's process group: NCCL between GPUs, gloo between CPU processes.

    The 30-minute timeout is how long a rank waits for the others at a collective: long
    enough for rank 0 to validate and write the file while the others wait at a barrier.
    """
    if not ranks.parallel or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            timeout=timedelta(minutes=30),
                            device_id=device if device.type == "cuda" else None)


def _from_rank0(go: bool, fraction: float, device: torch.device) -> tuple[bool, float]:
    """Rank 0's decision, on every rank: take another step?, and the schedule's position.
    Every rank's clock differs; if each decided alone, one could stop while another waits
    in the next step's all-reduce for ever, and their learning rates would differ."""
    flags = torch.tensor([float(go), fraction], dtype=torch.float64, device=device)
    dist.broadcast(flags, src=0)
    return bool(flags[0].item()), float(flags[1].item())


def _mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean over ranks (all ranks then agree on whether it is finite)."""
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def _copy_buffers_from_rank0(model: torch.nn.Module) -> None:
    """Batch norm's running averages: rank 0's on every rank (DistributedDataParallel
    copies them at the start of every forward pass; the last pass changed each rank's)."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def state_sha256(model: torch.nn.Module) -> str:
    """A SHA-256 of a model's state (weights and buffers, names included).

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> state_sha256(net) == state_sha256(net), len(state_sha256(net))
        (True, 64)
    """
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                      .numpy().tobytes())
    return digest.hexdigest()


def _debug_dump(model, ranks: Ranks, step: int, first_batch: str | None) -> None:
    folder = os.environ.get(DEBUG_DIR_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, f"rank{ranks.rank}.json").write_text(json.dumps(
        {"rank": ranks.rank, "world": ranks.world, "step": step,
         "state_sha256": state_sha256(model), "first_batch_sha256": first_batch}))


# ------------------------------------------------------------------------ the loop

def train_loop(model: torch.nn.Module, next_batch: Callable[[], tuple], optimizer,
               loss_fn: Callable, budget: Budget, *, lr: float, step: int = 0,
               losses: list | None = None, checkpoint: Callable[[int], None] | None = None,
               checkpoint_every_s: float = 120.0, device: torch.device | None = None,
               progress: bool = True, precision: str | None = None) -> tuple[int, str]:
    """Train ``model`` until ``budget`` is spent; return ``(steps done in all, why)``,
    ``why`` = ``"done"``, ``"interrupted"`` (Ctrl-C) or ``"diverged"`` (a nan loss).

    Everything about the data is in ``next_batch() -> (images, masks)`` or ``(images, masks,
    weights)``, whose weights go to ``loss_fn(scores, masks, weights)``; every step sets the
    learning rate from the budget's position (:func:`cosine_lr`), runs the net, crops the
    masks to its output (valid padding), steps the optimiser and appends the loss to
    ``losses``; ``checkpoint(step)`` is called every ``checkpoint_every_s`` seconds.
    ``precision`` (see :func:`resolve_precision`; default ``"auto"``): in bf16 the forward
    pass runs under autocast and the batches are laid out channels-last, the layout the
    bf16 convolution kernels of oneDNN and cuDNN are fastest in (convert the model to it
    too, as :func:`train` does).

    Data-parallel: every process of a launch runs this same function, with ``model``
    wrapped in ``DistributedDataParallel`` and its own ``next_batch``. Then rank 0 alone
    decides whether to take a step and where the schedule stands (the budget and clock of
    the other ranks are not used), the loss is averaged over the ranks before it is
    checked and stored, and only rank 0 shows progress (pass ``checkpoint`` on rank 0
    only). All ranks return the same step count.
    """
    device = device or next(model.parameters()).device
    precision = resolve_precision(precision, device)
    layout = torch.channels_last if precision == "bf16" else torch.contiguous_format
    losses = losses if losses is not None else []
    parallel = dist.is_available() and dist.is_initialized()
    main = not parallel or dist.get_rank() == 0
    timed = budget.steps is None
    bar = tqdm(total=round(budget.seconds) if timed else budget.steps, initial=0,
               unit="s" if timed else "step", disable=not (progress and main),
               file=sys.stderr, desc="training", mininterval=1.0,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}{postfix}]" if timed else None)
    shown = min(budget.elapsed(), bar.total) if timed else step
    bar.update(shown)
    model.train()
    step_time, last_save, first = 0.0, time.monotonic(), step == 0
    why = "done"
    try:
        while True:
            go, fraction = first or not budget.spent(step, step_time), budget.fraction(step)
            if parallel:
                go, fraction = _from_rank0(go, fraction, device)
            if not go:
                break
            first = False
            started = time.monotonic()
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(lr, fraction)
            x, y, *w = next_batch()                 # w: [] or [N x H x W pixel weights]
            x = x.to(device, non_blocking=True).contiguous(memory_format=layout)
            y = y.to(device, non_blocking=True)
            w = [v.to(device, non_blocking=True) for v in w]
            with _autocast(device, precision):
                out = model(x)                                      # N x K x H' x W'
            if out.shape[-2:] != y.shape[-2:]:
                y = center_crop(y, *out.shape[-2:])
                w = [center_crop(v, *out.shape[-2:]) for v in w]
            loss = loss_fn(out.float(), y, *w)
            value = _mean_over_ranks(loss) if parallel else loss.detach()
            if not torch.isfinite(value):
                why = "diverged"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()                   # DDP: the gradients are averaged over ranks here
            optimizer.step()
            step += 1
            losses.append(float(value.item()))
            took = time.monotonic() - started
            step_time = took if step_time == 0 else 0.9 * step_time + 0.1 * took
            now = budget.elapsed() if timed else step
            bar.update(max(0, min(now, bar.total) - shown))
            shown = max(shown, min(now, bar.total))
            bar.set_postfix_str(f"step {step}, loss {losses[-1]:.4f}", refresh=False)
            if checkpoint is not None and time.monotonic() - last_save >= checkpoint_every_s:
                checkpoint(step)
                last_save = time.monotonic()
    except KeyboardInterrupt:
        why = "interrupted"
    finally:
        bar.close()
    return step, why


# ------------------------------------------------------------------------ validation

def split(stems: list[str], fraction: float, seed: int) -> dict:
    """Which part validates: ``{"mode": "images", "images": [...]}`` (at least 4 images:
    ``round(fraction * n)``, at least 1, chosen at random with ``seed``), ``{"mode": "rows",
    "fraction": f}`` (fewer: the bottom rows of every image) or ``{"mode": "none"}``.

    Example:
        >>> split([f"{i:02d}" for i in range(20)], 0.1, seed=0)["images"]
        ['12', '16']
        >>> split(["a", "b"], 0.1, seed=0)
        {'mode': 'rows', 'fraction': 0.1}
    """
    if fraction <= 0:
        return {"mode": "none"}
    if len(stems) >= 4:
        n = min(len(stems) - 1, max(1, round(fraction * len(stems))))
        chosen = np.random.default_rng(seed).choice(len(stems), n, replace=False)
        return {"mode": "images", "images": sorted(stems[i] for i in chosen)}
    return {"mode": "rows", "fraction": float(fraction)}


def validate(model, parts: list[tuple], classes: int, device, seed: int = 0,
             regions: int | None = None) -> dict:
    """Scores on the validation ``parts`` (``(image, class indices, rows or None)``) and,
    for 2 classes, the threshold with the lowest pixel error, or with ``regions`` (the class
    index whose connected regions are the objects) the lowest mean Rand error.

    Returns ``pixel_error`` (at the chosen threshold), ``pixel_error_default`` (at 0.5, or
    the arg-max), ``threshold`` and ``threshold_metric`` (2 classes), ``rand_error`` (with
    ``regions``) and ``single_class`` (the prediction holds one class everywhere while the
    truth holds several: a sign that training has not worked).
    """
    model.eval()
    probs, truths = [], []
    for image, target, rows in parts:
        p = predict_probabilities(model, image, device=device)    # K x H x W
        probs.append(p[:, rows] if rows else p)
        truths.append(target[rows] if rows else target)
    model.train()
    p = np.concatenate([q.reshape(classes, -1) for q in probs], axis=1)   # K x P
    t = np.concatenate([q.ravel() for q in truths])                       # P
    if t.size > MAX_VAL_PIXELS:
        keep = np.random.default_rng(seed).choice(t.size, MAX_VAL_PIXELS, replace=False)
        p, t = p[:, keep], t[keep]
    default = decide(p[:, None], 0.5 if classes == 2 else None)[0]
    result = {"pixel_error_default": float((default != t).mean())}
    chosen = default
    if classes == 2 and regions is not None:
        # What predict writes, scored on whole validation images at every threshold: the
        # regions above it, cut apart where they touch only through a weak spot
        # (split_regions, from cores above SPLIT_LEVEL). The cut is not tuned here: a
        # merge is a rare event, and a few validation images often hold none to learn
        # from. Once gaps no longer merge cells, a lower threshold (thinner boundaries)
        # keeps lowering the Rand error while the pixel error rises, so the threshold is
        # the one with the lowest Rand error among those whose pixel error is within
        # PIXEL_SLACK of the lowest: as few merged and split cells as the pixels allow.
        pixel, rand = threshold_curves(probs, truths, regions)
        k = choose_threshold(pixel, rand)
        plain = [decide(q, THRESHOLDS[k]) for q in probs]
        result.update(threshold=float(THRESHOLDS[k]), threshold_metric="rand_error",
                      rand_error=float(rand[k]), pixel_error=float(pixel[k]),
                      split_level=SPLIT_LEVEL,
                      rand_error_unsplit=float(np.mean([rand_error(a, u, regions=regions)
                                                        for a, u in zip(plain, truths)])))
        chosen = decide(p[:, None], THRESHOLDS[k])[0]
    elif classes == 2:
        sweep = threshold_sweep(p[1][None], t[None], thresholds=THRESHOLDS,
                                metrics=("pixel_error",))
        best = sweep["best"]["pixel_error"]
        result["threshold"] = float(best)
        result["threshold_metric"] = "pixel_error"
        result["pixel_error"] = float(sweep["pixel_error"][list(THRESHOLDS).index(best)])
        chosen = decide(p[:, None], best)[0]
    else:
        result["pixel_error"] = result["pixel_error_default"]
    result["single_class"] = bool(len(np.unique(chosen)) == 1 < len(np.unique(t)))
    return result


# ------------------------------------------------------------------------ the command

def _settings(given: dict, stored: dict | None, out: Path) -> dict:
    settings = dict(DEFAULTS) if stored is None else {**DEFAULTS, **stored}
    for key, value in given.items():
        if value is None:
            continue
        if stored is not None and stored.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise InputError(f"{out}: was trained with {flag} {stored.get(key)}; --resume "
                             f"continues that training - drop {flag} {value}, or start over "
                             "with --force instead of --resume")
        settings[key] = value
    if settings["loss"] is None:
        # told what the objects are, train weights the thin background between two of them,
        # as the paper does: that is where a merge starts
        settings["loss"] = "weighted" if settings["regions"] is not None else "ce"
    return settings


def _check_options(minutes, steps, settings, checkpoint_minutes: float = 2.0) -> None:
    if minutes is not None and not minutes > 0:
        raise InputError(f"--minutes {minutes}: must be more than 0")
    if steps is not None and steps < 1:
        raise InputError(f"--steps {steps}: must be at least 1")
    if not 0 <= settings["val_fraction"] < 1:
        raise InputError(f"--val-fraction {settings['val_fraction']}: a fraction, at least 0 "
                         "(no validation) and below 1")
    if settings["augment"] not in AUGMENTS:
        raise InputError(f"--augment {settings['augment']}: choose none, flip or elastic")
    if settings["loss"] not in LOSSES:
        raise InputError(f"--loss {settings['loss']}: choose ce, dice_ce or weighted")
    if settings["loss"] == "weighted" and settings["regions"] is None:
        raise InputError("--loss weighted: weights the background between objects, so it "
                         "needs --regions VALUE, the mask value of the objects (255 for the "
                         "ISBI labels' cells)")
    for key in ("crop", "batch_size"):
        if settings[key] < 1:
            raise InputError(f"--{key.replace('_', '-')} {settings[key]}: must be at least 1")
    if not settings["lr"] > 0:
        raise InputError(f"--lr {settings['lr']}: must be more than 0")
    if not checkpoint_minutes > 0:
        raise InputError(f"--checkpoint-minutes {checkpoint_minutes}: must be more than 0")


def _budget(minutes, steps, stored: dict | None, out: Path) -> dict:
    if stored is None:
        return {"steps": steps} if steps is not None else {"minutes": minutes or DEFAULT_MINUTES}
    if minutes is None and steps is None:
        return dict(stored)
    kind, value = ("steps", steps) if steps is not None else ("minutes", minutes)
    if kind not in stored:
        old = next(iter(stored))
        raise InputError(f"{out}: was trained for a number of {old}; --resume continues with "
                         f"--{old} (the new total), not --{kind}")
    return {kind: value}


def train(images, masks, out, *, minutes: float | None = None, steps: int | None = None,
          preset: str | None = None, base_width: int | None = None, augment: str | None = None,
          loss: str | None = None, val_fraction: float | None = None, seed: int | None = None,
          crop: int | None = None, batch_size: int | None = None, lr: float | None = None,
          regions: int | None = None, resume: bool = False, force: bool = False,
          checkpoint_minutes: float = 2.0, device: str | None = None, progress: bool = True,
          clock_start: float | None = None, precision: str | None = None) -> int:
    """Train a model on the pairs in ``images`` and ``masks``, write it to ``out``; return the
    exit status (0; 130 when interrupted, after writing a checkpoint; 1 if the loss diverged).

    Options left ``None`` take the defaults (``DEFAULTS``; ``DEFAULT_MINUTES`` when neither
    ``minutes`` nor ``steps`` is given) or, with ``resume``, the stored training's settings
    (giving a different one is an error; ``minutes``/``steps`` set a new total budget).
    ``clock_start`` is the command's start (``time.monotonic()``), from which ``minutes``
    counts. ``precision``: ``"auto"`` (default), ``"fp32"`` or ``"bf16"``, see
    :func:`resolve_precision`; a compute choice, not stored (a resumed training may differ). Bad input raises :class:`~unet_teach.app.images.InputError` before anything
    is written.

    Started by ``torchrun``, every process calls this, and they train data-parallel (see
    the module's docstring); the process group this function starts, it also ends, after
    an error too.
    """
    started_here = not (dist.is_available() and dist.is_initialized())
    try:
        return _train(images, masks, out, minutes=minutes, steps=steps, preset=preset,
                      base_width=base_width, augment=augment, loss=loss,
                      val_fraction=val_fraction, seed=seed, crop=crop, batch_size=batch_size,
                      lr=lr, regions=regions, resume=resume, force=force,
                      checkpoint_minutes=checkpoint_minutes, device=device,
                      progress=progress, clock_start=clock_start, precision=precision)
    finally:
        if started_here and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _train(images, masks, out, *, minutes, steps, preset, base_width, augment, loss,
           val_fraction, seed, crop, batch_size, lr, regions, resume, force,
           checkpoint_minutes, device, progress, clock_start, precision) -> int:
    clock_start = time.monotonic() if clock_start is None else clock_start
    out = Path(out)
    if minutes is not None and steps is not None:
        raise InputError("--minutes and --steps: give one budget, not both")
    if resume and force:
        raise InputError("--resume continues the training in --out and --force starts it "
                         "over; give one of them")
    stored = None
    if resume:
        if not out.exists():
            raise InputError(f"{out}: no such file, so there is nothing to resume; drop "
                             "--resume to start a training")
        stored = read_model_file(out)
        if "train" not in stored or "optimizer" not in stored:
            raise InputError(f"{out}: holds no training state to resume; start over with "
                             "--force instead of --resume")
    elif out.exists() and not force:
        unfinished = ""
        try:
            if not read_model_file(out).get("train", {}).get("finished", True):
                unfinished = " (an unfinished training: --resume continues it)"
        except InputError:
            pass
        raise InputError(f"{out}: exists{unfinished}; pass --resume to continue it, --force "
                         "to start over, or another --out")
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --out is the model file to write, e.g. "
                         "model.pt")
    given = dict(preset=preset, base_width=base_width, augment=augment, loss=loss,
                 val_fraction=val_fraction, seed=seed, crop=crop, batch_size=batch_size, lr=lr,
                 regions=regions)
    old_train = stored["train"] if stored else None
    settings = _settings(given, old_train["settings"] if old_train else None, out)
    _check_options(minutes, steps, settings, checkpoint_minutes)
    budget_spec = _budget(minutes, steps, old_train["budget"] if old_train else None, out)
    if old_train:
        kind, total = next(iter(budget_spec.items()))
        used = old_train["step"] if kind == "steps" else old_train["elapsed_s"] / 60
        if used >= total or (old_train["finished"] and budget_spec == old_train["budget"]):
            raise InputError(f"{out}: already trained for {total:g} {kind}; to train longer, "
                             f"pass a larger total --{kind} with --resume")

    # --- the model's shape, then the data checked against it
    if stored:
        model, _ = load_model(out, stored)
        args = stored["model_args"]
    else:
        args = model_args(settings["preset"], 2, settings["base_width"])   # classes set below
    channels = int(args.get("in_channels", 1))
    pairs = pair_files(images, masks)
    files = {stem: mask_file for stem, _, mask_file in pairs}
    mask_arrays = {stem: read_mask(mask_file) for stem, _, mask_file in pairs}
    values = class_values(mask_arrays, files)
    image_arrays, notes = {}, set()
    for stem, image_file, mask_file in pairs:
        image, note = load_image(image_file, channels, NORMALIZATION)
        check_same_size(image_file, image, mask_file, mask_arrays[stem])
        image_arrays[stem], notes = image, notes | {note}
    if stored and stored["class_values"] != values:
        raise InputError(f"{masks}: the masks hold the values {values}, but {out} was trained "
                         f"on {stored['class_values']}; resume with the same masks, or start "
                         "over with --force")
    region_class = None                    # the class index of --regions, when given
    if settings["regions"] is not None:
        if len(values) != 2 or settings["regions"] not in values:
            raise InputError(f"--regions {settings['regions']}: must be one of the masks' two "
                             f"values, and they hold {values}")
        region_class = values.index(settings["regions"])
    targets = {s: np.searchsorted(values, m).astype(np.int64) for s, m in mask_arrays.items()}
    val = split([s for s, _, _ in pairs], settings["val_fraction"], settings["seed"])
    if old_train and old_train["validation_split"] != val:
        raise InputError(f"{images}: the images are not those {out} was trained on (the "
                         "validation images differ); resume with the same folders, or start "
                         "over with --force")

    ranks = Ranks.from_env()
    device = rank_device(pick_device(device), ranks)
    precision_asked, precision = precision, resolve_precision(precision, device)

    # --- nothing was wrong: from here on, files are written. Under torchrun, every rank has
    # checked the same things; none writes before all have joined the process group here.
    join(ranks, device)
    say = _say if ranks.main else (lambda text: None)
    warn = _note if ranks.main else (lambda text: None)
    seed_everything(settings["seed"])
    if not stored:
        args = model_args(settings["preset"], len(values), settings["base_width"])
        model = build_model(args)
    model.to(device)
    if precision == "bf16":               # the layout bf16 convolutions are fastest in
        model.to(memory_format=torch.channels_last)
    # what trains is `net`; what is saved is `model`, the module inside the wrapper, so the
    # file has the same keys as a one-process run (no "module." prefix; see weights())
    net = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None) if ranks.parallel else model)
    train_imgs, train_masks, parts = [], [], []
    for stem, image in image_arrays.items():
        target = targets[stem]
        if val["mode"] == "images" and stem in val["images"]:
            parts.append((image, target, None))
            continue
        if val["mode"] == "rows":
            keep = max(1, round(target.shape[0] * (1 - val["fraction"])))
            parts.append((image, target, slice(keep, None)))
            image, target = image[:, :keep], target[:keep]
        train_imgs.append(image)
        train_masks.append(target)
    # no larger than the images (smaller ones are mirrored up to it), on the net's size grid
    side = max(min(m.shape) for m in train_masks)
    size, out_size = crop_sizes(model, min(settings["crop"], side))
    augment_ = AUGMENTS[settings["augment"]]
    # the paper's weights: computed once per training image, as the paper did, when the
    # crops are only cut, flipped and turned (which move weights exactly with the mask);
    # per crop from the deformed mask under elastic augmentation (in next_batch)
    whole_image_weights = settings["loss"] == "weighted" and not augment_.elastic
    pixel_weights = ([weight_map(ndimage.label(m == region_class)[0]) for m in train_masks]
                     if whole_image_weights else None)
    crops = RandomCrops(train_imgs, train_masks, size, out_size, augment_,
                        margin=16 if augment_.elastic else 0, weights=pixel_weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"],
                                  weight_decay=settings["weight_decay"])
    if stored:
        load_optimizer_state(optimizer, stored["optimizer"])
    step = int(old_train["step"]) if old_train else 0
    losses = list(old_train["loss"]) if old_train else []
    val_pixels = sum(t.size for _, t, _ in parts)             # predicted whole
    n_params = sum(p.numel() for p in model.parameters())
    budget = Budget(steps=budget_spec.get("steps"),
                    seconds=budget_spec["minutes"] * 60 if "minutes" in budget_spec else None,
                    clock_start=clock_start,
                    elapsed_before=float(old_train["elapsed_s"]) if old_train else 0.0,
                    # writing the file: about 100 MB/s, three times the weights (AdamW)
                    reserve_s=0.25 + 3 * 4 * n_params / 100e6
                    # with --regions, a cut (watershed) and a Rand error a threshold and
                    # validation image: about 0.1 s per 512 x 512 pixels on a laptop CPU
                    + (len(THRESHOLDS) * val_pixels * 0.1 / 512**2
                       if region_class is not None else 0.0),
                    # a forward pass is about a third of a training step; predicting the
                    # validation images whole costs about 2 / 3 of a step per crop's pixels
                    reserve_steps=0.7 * val_pixels / (settings["batch_size"] * size * size))
    for kind in sorted(n for n in notes if n):
        warn(COLOR_NOTES[kind])
    total = sum(t.size for t in targets.values())
    shares = ", ".join(f"{v} -> class {i} ({sum((t == i).sum() for t in targets.values()) / total:.0%})"
                       for i, v in enumerate(values))
    what = {"images": f"{len(val.get('images', []))} image(s) held out for validation",
            "rows": f"the bottom {val.get('fraction', 0):.0%} of rows held out for validation",
            "none": "no validation (threshold 0.5)"}[val["mode"]]
    say(f"{'resuming' if stored else 'training'}: {len(pairs)} image pair(s), {what}; "
         f"mask values {shares}")
    where = (f"on {ranks.world} process{'es' if ranks.world > 1 else ''} "
             f"({dist.get_backend()}, {device.type}): "
             f"{ranks.world * settings['batch_size']} crops a step" if ranks.parallel
             else f"on {device}")
    say(f"model: preset {settings['preset']} ({n_params / 1e6:.2f} M parameters), "
        f"{size} px crops x {settings['batch_size']}, augment {settings['augment']}, loss "
        f"{settings['loss']}, {where}, {precision}"
        + (" autocast" if precision == "bf16" else "")
        + f" ({precision_reason(precision_asked, device)})")
    if budget.seconds is not None:
        left = budget.seconds - budget.elapsed()
        ends = time.strftime("%H:%M:%S", time.localtime(time.time() + left))
        left_text = f"{left / 60:.1f} min" if left >= 60 else f"{max(left, 0):.0f} s"
        say(f"budget: {budget.describe()} in all, {left_text} left: ends at about {ends}; "
            f"the model file {out} is written every {checkpoint_minutes:g} min and at the end")
    else:
        say(f"budget: {budget.describe()} ({step} done); {out} is written every "
            f"{checkpoint_minutes:g} min and at the end")

    threshold_info = dict(old_train.get("threshold_info", {})) if old_train else {}

    def contents(step_now: int, finished: bool, validation: dict | None = None) -> dict:
        info = validation or threshold_info
        file = {"unet_teach": __version__, "preset": settings["preset"], "model_args": args,
                "model": weights(model),
                "class_values": values, "normalization": dict(NORMALIZATION),
                "train": {"settings": {k: v for k, v in settings.items() if v is not None},
                          "budget": budget_spec, "step": step_now,
                          "elapsed_s": budget.elapsed(), "finished": finished,
                          "schedule_position": budget.fraction(step_now),
                          "images": [s for s in image_arrays if not (val["mode"] == "images"
                                                                     and s in val["images"])],
                          "validation_split": val, "loss": list(losses),
                          "threshold_info": dict(info)},
                "optimizer": optimizer_state(optimizer)}
        if len(values) == 2:
            file["threshold"] = float(info.get("threshold", 0.5))
            file["threshold_from"] = (
                "default (not validated)" if "threshold" not in info
                else f"lowest Rand error on the validation part, regions cut at weak "
                     f"spots, pixel error within {PIXEL_SLACK - 1:.0%} of its lowest"
                if info.get("threshold_metric") == "rand_error"
                else "lowest pixel error on the validation part")
            if info.get("split_level") is not None:
                file["split"] = {"region_class": region_class,
                                 "seed_level": float(info["split_level"])}
        if info:
            file["validation"] = {k: v for k, v in info.items() if k != "single_class"}
        return file

    out.parent.mkdir(parents=True, exist_ok=True)
    # new crops after a resume; under torchrun, another stream of crops on every rank
    rng = np.random.default_rng([settings["seed"], step] if not ranks.parallel
                                else [settings["seed"], step, ranks.rank])
    first_batch = []

    def next_batch():
        x, y, *w = crops.batch(rng, settings["batch_size"])
        if not first_batch:                # for the test hook: which crops this rank saw
            first_batch.append(hashlib.sha256(x.numpy().tobytes()).hexdigest())
        if settings["loss"] != "weighted" or w:
            return (x, y, *w)
        # elastic: the weights from each crop's own deformed mask (the objects are the
        # connected regions of the --regions class)
        w = np.stack([weight_map(ndimage.label(m == region_class)[0]) for m in y.numpy()])
        return x, y, torch.from_numpy(w)

    step, why = train_loop(
        net, next_batch, optimizer, LOSSES[settings["loss"]], budget, lr=settings["lr"],
        step=step, losses=losses,
        checkpoint=(lambda s: save_model(out, contents(s, False))) if ranks.main else None,
        checkpoint_every_s=checkpoint_minutes * 60, device=device, progress=progress,
        precision=precision)
    if why == "diverged":
        if ranks.main:
            print(f"error: the loss became nan at step {step + 1} (nothing more written to "
                  f"{out}); start over with a lower --lr (now {settings['lr']:g})",
                  file=sys.stderr)
        return 1
    if why == "interrupted":
        if ranks.main:
            save_model(out, contents(step, False))
            print(f"interrupted at step {step} ({budget.elapsed() / 60:.1f} min); wrote "
                  f"{out}; the same command with --resume continues it", file=sys.stderr)
        return 130
    if ranks.parallel:
        _copy_buffers_from_rank0(model)
    _debug_dump(model, ranks, step, first_batch[0] if first_batch else None)
    if not ranks.main:
        dist.barrier()                     # while rank 0 validates and writes the file
        return 0
    validation = {}
    if parts:
        validation = validate(model, parts, len(values), device, settings["seed"],
                              regions=region_class)
        threshold_info.update(validation)
    save_model(out, contents(step, True, validation or None))
    if ranks.parallel:
        dist.barrier()
    took = budget.elapsed()
    line = f"wrote {out}: {step} steps, {took / 60:.1f} min in all"
    if validation:
        at = (f" at threshold {validation['threshold']:g} (at 0.5: "
              f"{validation['pixel_error_default']:.4f})" if "threshold" in validation else "")
        line += f"; validation pixel error {validation['pixel_error']:.4f}{at}"
        if "rand_error" in validation:
            line += (f", Rand error {validation['rand_error']:.4f} with the regions cut apart "
                     f"at weak spots (cores above {validation['split_level']:g}), "
                     f"{validation['rand_error_unsplit']:.4f} without (predict --no-split); "
                     f"threshold: the lowest Rand error within {PIXEL_SLACK - 1:.0%} of the "
                     "lowest pixel error")
    say(line)
    if validation.get("single_class"):
        warn("the model predicts one class everywhere on the validation part; train longer "
             "(--minutes), or try --loss dice_ce if the objects are small")
    return 0
