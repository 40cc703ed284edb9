"""How fast U-Net trains and predicts on this machine, one change at a time: the speed ladder.

The network is the paper's width with same padding, ``UNet(1, 2, depth=4, base_width=64,
padding="same")``, trained on 512 x 512 crops in batches of 16 (on a GPU; ``unet-teach
bench --size --batch --width`` makes a small version a CPU can run). Each rung keeps what
the rung above it did and adds one thing:

1. ``fp32``      - 32-bit floats everywhere, TF32 off: what the maths literally asks for.
2. ``tf32``      - convolutions and matrix products on TF32 tensor cores (Ampere and newer:
   fp32 range, a 10-bit mantissa), by ``torch.backends.cuda.matmul.allow_tf32`` and
   ``torch.backends.cudnn.allow_tf32`` (see :func:`unet_teach.timing.backend_flags`); the
   weights stay fp32.
3. ``bf16``      - ``torch.autocast(dtype=torch.bfloat16)``: the convolutions run in bf16
   (the fp32 exponent, so no loss scaling), the weights and the optimiser stay fp32.
4. ``bf16+channels_last`` - the tensors laid out N x H x W x C, the layout tensor-core
   convolutions read, so cuDNN skips the transposes it otherwise makes.
5. ``bf16+channels_last+compile`` - ``torch.compile`` fuses the element-wise work (ReLU,
   bias, the concatenations) into fewer kernels, and AdamW's ``fused=True`` updates all
   weights in one kernel. (CUDA graphs, ``mode="reduce-overhead"``, would also remove the
   launch overhead; at 16 x 512 x 512 a step is long enough that it hardly matters.)

The **common recipe** is timed in the same run as the baseline the best rung is compared
with: fp16 autocast + ``GradScaler`` + channels_last, what popular U-Net repositories do
(milesial/Pytorch-UNet's ``train.py --amp``).

How it is measured, and why:

* one step = forward, cross-entropy, backward, AdamW step, on a fixed synthetic batch
  already on the device (data loading is not timed: it is another question);
* ``warmup`` untimed steps first (cuDNN tries its algorithms, ``torch.compile`` compiles,
  the allocator fills its cache; ``first_step_s`` keeps how long the first one took), then
  ``steps`` steps timed one by one, each between two ``torch.cuda.synchronize()`` calls
  (CUDA runs asynchronously: without them the clock measures the launches), and the median
  is kept (robust to a stray slow step) - :func:`unet_teach.timing.time_steps`;
* ``cudnn.benchmark`` is on for every rung and the recipe alike;
* images/s = batch / median step time;
* training FLOPs = **6 x the forward MACs** of :func:`unet_teach.cost.count_macs` per image
  x batch: 2 FLOPs per multiply-accumulate, times 3 because the backward pass costs about
  twice the forward (the gradient with respect to the inputs and with respect to the
  weights). It counts the model's useful work only (what checkpointing recomputes is not
  counted) and slightly over-counts the first layer, whose input needs no gradient;
* achieved TFLOP/s is divided by the GPU's **dense peak** for the rung's number format
  (``PEAKS``, from the vendors' datasheets; ``None`` for a GPU not in the table);
* peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps (after the
  warm-up, whose cuDNN trials borrow scratch memory).

Also measured: overlap-tile **inference** (:func:`unet_teach.infer.predict_tiled` on an
image 4 x 4 crops large, in tiles per second, fp32 and bf16), and **memory** against the
batch and the crop size, with and without gradient checkpointing (``UNet(checkpointing=True)``)
and what it costs in time. On a CPU the rungs that need CUDA are reported as skipped, with
the reason. A rung that fails (a compiler error, say) is recorded with its error and the
run goes on. :func:`bench` returns everything as one dict, which ``unet-teach bench --out``
writes as JSON.

For chapter 11, which runs on a CPU: :func:`saved_activation_bytes` counts the bytes autograd
keeps for the backward pass (on the CPU or the ``meta`` device, where the CUDA memory
counters do not exist), :func:`unet_teach.timing.time_interleaved` times several set-ups
by turns (fair on a shared machine), :func:`unet_teach.profile.cpu_bf16_support` says what
bf16 can gain on this CPU, and :func:`newest_results` reads the newest committed results
file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .cost import count_macs
from .files import write_atomic
from .infer import predict_tiled, tile_layout
from .models import UNet, output_size
from .profile import default_device, pick_device
from .timing import backend_flags, sync, time_steps

SCHEMA = "unet-teach bench 1"
#: The paper's U-Net with same padding; ``base_width`` is the one thing ``--width`` changes.
PAPER = dict(in_channels=1, out_channels=2, depth=4, base_width=64, padding="same")
#: The measured configuration on a GPU, and the small one a CPU runs by default.
GPU_CONFIG = dict(size=512, batch=16, width=64, steps=20, warmup=5)
CPU_CONFIG = dict(size=128, batch=2, width=16, steps=3, warmup=1)
#: Training FLOPs per forward multiply-accumulate: 2 FLOPs a MAC, x 3 for forward + backward.
FLOPS_PER_MAC = 6

# Dense peak throughput in TFLOP/s by number format, from the vendors' datasheets. Tensor-core
# figures quoted "with sparsity" are halved here (the U-Net's weights are dense); fp16 and bf16
# are with fp32 accumulation, which autocast uses. None: the GPU has no such tensor-core mode.
# First match wins, so the more specific names come first.
#   NVIDIA H100 Tensor Core GPU datasheet (SXM, PCIe, NVL); NVIDIA H200 datasheet (SXM, NVL;
#   GH200 carries an H100-class GPU); NVIDIA A100 datasheet; NVIDIA A10, L4, L40S and T4
#   datasheets; NVIDIA V100 datasheet (SXM2, PCIe); NVIDIA Ada Lovelace GPU architecture
#   whitepaper, appendix A (GeForce RTX 4090); NVIDIA Ampere GA102 GPU architecture
#   whitepaper, appendix A (GeForce RTX 3090).
PEAKS = (
    # pattern on torch.cuda.get_device_name(), label, fp32, tf32, bf16, fp16
    (r"H100.*NVL", "H100 NVL", 60.0, 417.5, 835.5, 835.5),
    (r"H100.*PCIe", "H100 PCIe", 51.0, 378.0, 756.0, 756.0),
    (r"H100", "H100 SXM", 67.0, 494.7, 989.4, 989.4),
    (r"GH200", "GH200", 67.0, 494.7, 989.4, 989.4),
    (r"H200.*NVL", "H200 NVL", 60.0, 417.5, 835.5, 835.5),
    (r"H200", "H200 SXM", 67.0, 494.7, 989.4, 989.4),
    (r"A100", "A100", 19.5, 156.0, 312.0, 312.0),
    (r"\bA10\b", "A10", 31.2, 62.5, 125.0, 125.0),
    (r"L40S", "L40S", 91.6, 183.0, 366.5, 366.5),
    (r"\bL4\b", "L4", 30.3, 60.0, 121.0, 121.0),
    (r"\bT4\b", "T4", 8.1, None, None, 65.0),
    (r"V100.*PCIE", "V100 PCIe", 14.0, None, None, 112.0),
    (r"V100", "V100 SXM2", 15.7, None, None, 125.0),
    (r"RTX 4090", "GeForce RTX 4090", 82.6, 82.6, 165.2, 165.2),
    (r"RTX 3090", "GeForce RTX 3090", 35.6, 35.6, 71.0, 71.0),
)


def peak_tflops(device_name: str) -> dict | None:
    """The dense peaks of a GPU from its ``torch.cuda.get_device_name()``, or ``None``.

    Example:
        >>> peak_tflops("NVIDIA H100 80GB HBM3")["bf16"]
        989.4
        >>> peak_tflops("NVIDIA L40S")["label"], peak_tflops("NVIDIA L4")["label"]
        ('L40S', 'L4')
        >>> peak_tflops("Tesla T4")["tf32"] is None, peak_tflops("cpu")
        (True, None)
    """
    for pattern, label, *values in PEAKS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return {"label": label, **dict(zip(("fp32", "tf32", "bf16", "fp16"), values))}
    return None


# --------------------------------------------------------------------------- the rungs

@dataclass(frozen=True)
class Rung:
    """One way of running the same training step.

    ``precision`` is the number format the convolutions run in (which peak the rung is
    held against); ``tf32`` sets both TF32 switches; ``amp`` is the autocast dtype.
    """

    name: str
    precision: str
    tf32: bool = False
    amp: str | None = None
    channels_last: bool = False
    compile: bool = False
    fused_adamw: bool = False
    grad_scaler: bool = False


LADDER = (
    Rung("fp32", "fp32"),
    Rung("tf32", "tf32", tf32=True),
    Rung("bf16", "bf16", tf32=True, amp="bfloat16"),
    Rung("bf16+channels_last", "bf16", tf32=True, amp="bfloat16", channels_last=True),
    Rung("bf16+channels_last+compile", "bf16", tf32=True, amp="bfloat16",
         channels_last=True, compile=True, fused_adamw=True),
)
RECIPE = Rung("common recipe: fp16+GradScaler+channels_last", "fp16", tf32=True,
              amp="float16", channels_last=True, grad_scaler=True)


def skip_reason(rung: Rung, device: torch.device, compile: bool = True) -> str | None:
    """Why ``rung`` cannot be timed on ``device``; ``None`` if it can.

    Example:
        >>> skip_reason(LADDER[0], torch.device("cpu")) is None
        True
        >>> skip_reason(LADDER[1], torch.device("cpu"))
        'needs a CUDA GPU: TF32 is a mode of NVIDIA tensor cores (Ampere and newer)'
    """
    if rung.compile and not compile:
        return "left out (--no-compile)"
    if device.type != "cuda":
        if rung.grad_scaler:
            return "needs a CUDA GPU: fp16 autocast with GradScaler is a GPU recipe"
        if rung.precision == "tf32":
            return "needs a CUDA GPU: TF32 is a mode of NVIDIA tensor cores (Ampere and newer)"
        if rung.amp:
            return ("needs a CUDA GPU: the ladder times tensor-core number formats; a CPU "
                    "would time its own emulation of them")
        return None
    major, minor = torch.cuda.get_device_capability(device)
    if rung.precision in ("tf32", "bf16") and major < 8:
        return (f"needs compute capability 8.0 or newer (Ampere) for {rung.precision}; this "
                f"GPU has {major}.{minor}")
    if rung.compile and importlib.util.find_spec("triton") is None:
        return "torch.compile needs triton on a GPU, and it is not installed"
    if rung.compile and not any(shutil.which(cc) for cc in (os.environ.get("CC"), "gcc", "clang")
                                if cc):
        return ("torch.compile's triton kernels need a C compiler (gcc, clang or $CC) to "
                "build their launchers, and none is installed")
    return None


@dataclass(frozen=True)
class Config:
    """What is timed: crop ``size``, ``batch``, the U-Net's ``width``, timed ``steps``
    after ``warmup`` steps."""

    size: int
    batch: int
    width: int
    steps: int
    warmup: int

    def model_args(self) -> dict:
        return {**PAPER, "base_width": self.width}


def training_step(rung: Rung, config: Config, device: torch.device, batch: int | None = None,
                  size: int | None = None, checkpointing: bool = False) -> Callable[[], None]:
    """A fresh model, AdamW and synthetic batch set up as ``rung`` says; returns ``step()``."""
    batch, size = batch or config.batch, size or config.size
    torch.manual_seed(0)
    model = UNet(**config.model_args(), checkpointing=checkpointing).to(device)
    x = torch.randn(batch, 1, size, size, device=device)              # N x 1 x S x S
    y = torch.randint(0, 2, (batch, size, size), device=device)       # N x S x S
    if rung.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                  **({"fused": True} if rung.fused_adamw else {}))
    net = torch.compile(model) if rung.compile else model
    scaler = torch.amp.GradScaler(device.type) if rung.grad_scaler else None
    dtype = getattr(torch, rung.amp) if rung.amp else None

    def step():
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            scores = net(x)                                           # N x 2 x S x S
        loss = F.cross_entropy(scores.float(), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:                     # fp16 needs its loss scaled so small gradients survive
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return step


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"failed: {type(err).__name__}: {text[0][:200] if text else ''}"


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_rung(rung: Rung, config: Config, device: torch.device, flops_per_step: float,
              peaks: dict | None, compile: bool = True) -> dict:
    """One row of the ladder: images/s, TFLOP/s, fraction of peak, peak memory; or why not."""
    row = {"name": rung.name, "precision": rung.precision, "settings": asdict(rung),
           "skipped": skip_reason(rung, device, compile)}
    if row["skipped"]:
        return row
    try:
        with backend_flags(rung.tf32):
            step = training_step(rung, config, device)
            reset = ((lambda: torch.cuda.reset_peak_memory_stats(device))
                     if device.type == "cuda" else None)
            t = time_steps(step, device, config.steps, config.warmup, before_timing=reset)
            memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
            del step
    except torch.cuda.OutOfMemoryError:
        row["skipped"] = (f"out of memory at batch {config.batch} x {config.size} px; try "
                          "a smaller --batch")
    except Exception as err:        # e.g. a compiler error: recorded, and the next rung runs
        row["skipped"] = row["error"] = _first_line(err)
    finally:
        if rung.compile:
            torch._dynamo.reset()
        _free(device)
    if row["skipped"]:
        return row
    tflops = flops_per_step / t["median_s"] / 1e12
    peak = (peaks or {}).get(rung.precision)
    row.update(images_per_s=config.batch / t["median_s"], step_ms=1e3 * t["median_s"],
               best_step_ms=1e3 * t["best_s"], first_step_s=t["first_step_s"],
               tflops=tflops, peak_tflops=peak,
               fraction_of_peak=tflops / peak if peak else None,
               peak_memory_bytes=memory, timed_steps=len(t["times"]))
    return row


# --------------------------------------------------------------------------- inference, memory

def time_inference(config: Config, device: torch.device, overlap: int = 32) -> list[dict]:
    """Overlap-tile prediction of an image 4 x 4 crops large, tiles of the crop size:
    tiles per second in fp32 and (on a bf16 GPU) bf16 autocast. The time includes what
    :func:`~unet_teach.infer.predict_tiled` does on the CPU (mirror padding, stitching,
    the softmax), as a real prediction would."""
    torch.manual_seed(0)
    model = UNet(**config.model_args()).to(device).eval()
    side = 4 * config.size
    image = np.random.default_rng(0).random((side, side), dtype=np.float32)
    overlap = min(overlap, config.size // 2 // 16 * 16)
    lay = tile_layout(model, config.size, overlap, image_shape=(side, side))
    tiles = lay["rows"] * lay["cols"]
    rows = []
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        row = {"precision": name, "image_px": side, "tile_px": config.size,
               "overlap_px": overlap, "tiles": tiles, "batch": config.batch, "skipped": None}
        if dtype is not None:
            row["skipped"] = skip_reason(LADDER[2], device)
        if not row["skipped"]:
            context = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()

            def predict():
                with context:
                    predict_tiled(model, image, tile=config.size, overlap=overlap,
                                  batch_size=config.batch, device=device)

            try:
                with backend_flags(tf32=False):
                    t = time_steps(predict, device, steps=min(config.steps, 5), warmup=1)
                row.update(tiles_per_s=tiles / t["median_s"],
                           megapixels_per_s=side * side / t["median_s"] / 1e6,
                           seconds_per_image=t["median_s"])
            except Exception as err:        # recorded; the rest still runs
                row["skipped"] = row["error"] = _first_line(err)
        rows.append(row)
    _free(device)
    return rows


def measure_memory(config: Config, device: torch.device) -> dict:
    """Peak training memory against batch and crop size, with and without gradient
    checkpointing, in the fastest eager set-up this GPU has (bf16 + channels_last, else
    fp32). ``activation_bytes`` = the peak minus what stays between steps (weights,
    gradients, AdamW's moments). ``cudnn.benchmark`` is off here: its trial runs would
    add their scratch memory to the peaks."""
    if device.type != "cuda":
        return {"skipped": "torch.cuda.max_memory_allocated counts CUDA memory only",
                "rows": []}
    rung = LADDER[3] if skip_reason(LADDER[3], device) is None else LADDER[0]
    shapes = [(b, config.size) for b in sorted({1, max(1, config.batch // 4), config.batch})]
    shapes += [(config.batch, s) for s in (config.size // 4, config.size // 2)
               if s and output_size(s, PAPER["depth"], "same")]
    rows = []
    for batch, size in shapes:
        for checkpointing in (False, True):
            row = {"batch": batch, "size": size, "checkpointing": checkpointing}
            try:
                with backend_flags(rung.tf32, benchmark=False):
                    step = training_step(rung, config, device, batch, size, checkpointing)
                    step()                                    # optimiser state exists now
                    sync(device)
                    static = torch.cuda.memory_allocated(device)
                    torch.cuda.reset_peak_memory_stats(device)
                    t = time_steps(step, device, steps=2, warmup=0)
                    peak = torch.cuda.max_memory_allocated(device)
                    del step
                row.update(peak_bytes=peak, activation_bytes=peak - static,
                           step_ms=1e3 * t["median_s"])
            except torch.cuda.OutOfMemoryError:
                row["skipped"] = "out of memory"
            except Exception as err:        # recorded; the rest still runs
                row["skipped"] = row["error"] = _first_line(err)
            _free(device)
            rows.append(row)
    for plain, ckpt in zip(rows[::2], rows[1::2]):
        if "step_ms" in plain and "step_ms" in ckpt:
            ckpt["time_vs_plain"] = ckpt["step_ms"] / plain["step_ms"]
            ckpt["activation_vs_plain"] = ckpt["activation_bytes"] / plain["activation_bytes"]
    return {"set_up": rung.name, "skipped": None, "rows": rows}


# --------------------------------------------------------------------------- for the chapter
#
# What the book's chapter 11 measures live on a CPU, where the CUDA counters above do not
# exist: the bytes autograd keeps (counted, also on the meta device, so the paper's size
# costs nothing to count) and the newest results (steps timed by turns: unet_teach.timing).

def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor,
                           y: torch.Tensor | None = None, amp: str | None = None) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training step.

    Runs ``model(x)`` in training mode (under ``torch.autocast`` with dtype ``amp``, e.g.
    ``"bfloat16"``, when given), then the cross-entropy against ``y`` (``y=None``: the sum
    of the scores, a loss that keeps nothing), and counts every tensor that autograd saves
    for the backward pass, through ``torch.autograd.graph.saved_tensors_hooks``. Each
    storage is counted once (a ReLU's output saved by the ReLU and by the next convolution
    is one tensor in memory); the model's parameters are left out (they stay whatever the
    batch), autocast's low-precision copies of them are counted. With
    ``UNet(checkpointing=True)`` the count is what checkpointing keeps: each block's input,
    not its inner activations. Nothing is run backward.

    This is the activation memory at the end of the forward pass, the part of a training
    step's memory that grows with the batch and the crop. It needs no allocator, so it works
    on a CPU and on the ``meta`` device (shapes without data: the paper's 16 x 512 x 512 is
    counted in a fraction of a second; autocast needs a real device).

    Args:
        model: the network, e.g. a ``UNet``.
        x: its input, ``N x C x H x W``.
        y: target labels, ``N x H_out x W_out`` (int64), or ``None``.
        amp: autocast dtype name, or ``None`` for the model's own precision.

    Returns:
        Bytes, an ``int``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
        >>> x = torch.zeros(2, 1, 8, 8)          # N x 1 x 8 x 8: 512 bytes
        >>> saved_activation_bytes(net, x)       # x for the conv + the ReLU's 2 x 4 x 8 x 8
        2560
    """
    if amp and x.device.type == "meta":
        raise ValueError("autocast needs a real device: count an amp step on the CPU (the "
                         "bytes grow linearly with the batch, so a small batch will do)")
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in params:           # the StorageImpl: views share it
            kept[storage._cdata] = storage.nbytes()
        return tensor

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            with torch.autocast(x.device.type, dtype=getattr(torch, amp)) if amp \
                    else nullcontext():
                scores = model(x)
            loss = (F.cross_entropy(scores.float(), y) if y is not None
                    else scores.float().sum())
        del loss, scores                           # the graph (and what it kept) goes now
    finally:
        model.train(was_training)
    return sum(kept.values())


def newest_results(folder) -> tuple[Path, dict]:
    """The newest ``bench-*.json`` in ``folder`` by the ``date`` it records (not by its
    name or file time, which a copy changes), and its contents.

    Raises:
        FileNotFoundError: when ``folder`` holds no results file.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name, date in [("b", "2026-01-02T00:00:00+00:00"),
        ...                    ("a", "2026-03-01T00:00:00+00:00")]:
        ...     _ = write_json(folder / f"bench-{name}.json", {"date": date})
        >>> newest_results(folder)[0].name
        'bench-a.json'
    """
    found = []
    for path in sorted(Path(folder).glob("bench-*.json")):
        data = json.loads(path.read_text())
        date = datetime.fromisoformat(data["date"])
        found.append((date if date.tzinfo else date.replace(tzinfo=timezone.utc), path, data))
    if not found:
        raise FileNotFoundError(f"no bench-*.json in {folder}; write one on a GPU with "
                                f"`unet-teach bench --out {folder}/`")
    _, path, data = max(found, key=lambda item: item[0])
    return path, data


# --------------------------------------------------------------------------- the whole run

def device_facts(device: torch.device) -> dict:
    """Name, versions and the peak table's entry (host-independent: no host name)."""
    facts = {"type": device.type, "name": f"CPU {platform.machine()}",
             "torch": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
             else None, "python": platform.python_version(), "peak_tflops": None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(name=torch.cuda.get_device_name(device),
                     capability=list(torch.cuda.get_device_capability(device)),
                     memory_bytes=props.total_memory,
                     peak_tflops=peak_tflops(torch.cuda.get_device_name(device)))
    else:
        facts["threads"] = torch.get_num_threads()
    return facts


def device_slug(name: str) -> str:
    """A file-name form of a device name.

    Example:
        >>> device_slug("NVIDIA H100 80GB HBM3")
        'nvidia-h100-80gb-hbm3'
    """
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def write_json(path, data: dict) -> Path:
    """Write ``data`` as JSON (creating the folder), atomically: a run cut short leaves the
    previous results whole (:func:`unet_teach.files.write_atomic`).

    Example:
        >>> import tempfile
        >>> p = write_json(Path(tempfile.mkdtemp()) / "out" / "bench.json", {"best": None})
        >>> json.loads(p.read_text()), p.read_text().endswith("\\n")
        ({'best': None}, True)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1) + "\n"       # fails on bad data before any file exists
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def bench(size: int | None = None, batch: int | None = None, width: int | None = None,
          steps: int | None = None, warmup: int | None = None, device=None,
          compile: bool = True, inference: bool = True, memory: bool = True,
          out=None, log: Callable[[str], None] = print) -> dict:
    """Time the ladder, the common recipe, inference and memory; return (and, with ``out``,
    write as JSON after every part, so a run cut short still leaves its results) a dict.

    Options left ``None`` take ``GPU_CONFIG`` on a GPU and ``CPU_CONFIG`` on a CPU.
    ``device`` defaults to the package's (:func:`unet_teach.profile.default_device`).
    """
    device = torch.device(device) if device is not None else default_device()
    defaults = GPU_CONFIG if device.type == "cuda" else CPU_CONFIG
    given = dict(size=size, batch=batch, width=width, steps=steps, warmup=warmup)
    config = Config(**{k: defaults[k] if v is None else int(v) for k, v in given.items()})
    if output_size(config.size, PAPER["depth"], "same") is None:
        raise ValueError(f"size={config.size}: a depth-4 U-Net takes multiples of 16, e.g. "
                         f"{max(16, config.size // 16 * 16)}")
    facts = device_facts(device)
    peaks = facts["peak_tflops"]
    macs = count_macs(UNet(**config.model_args()).to(device), (1, 1, config.size, config.size))
    flops = FLOPS_PER_MAC * macs * config.batch
    result = {
        "schema": SCHEMA, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": facts, "torch": torch.__version__, "cuda": torch.version.cuda,
        "config": {**asdict(config), "model": config.model_args(),
                   "cudnn_benchmark": True, "optimizer": "AdamW(lr=1e-4)",
                   "loss": "cross-entropy"},
        "flops": {"forward_macs_per_image": macs, "training_flops_per_step": flops,
                  "rule": "training FLOPs = 6 x forward MACs (count_macs) x batch: 2 FLOPs "
                          "per MAC, x 3 for forward + backward"},
        "rungs": [{"name": r.name, "precision": r.precision,
                   "skipped": "not run (the run stopped before it)"} for r in LADDER],
        "recipe": {"name": RECIPE.name, "skipped": "not run (the run stopped before it)"},
        "best": None, "inference": [], "memory": {"skipped": "not run", "rows": []},
        "errors": [],
    }

    def save():
        result["best"] = _best(result)
        if out is not None:
            write_json(out, result)

    log(f"bench on {facts['name']} ({device}); torch {torch.__version__}; {config.batch} x "
        f"{config.size} px, base width {config.width}; {flops / 1e12:.3g} TFLOP a step")
    # the compile rung last: if the run is cut short, the compiler's minute is what is lost
    order = [r for r in LADDER if not r.compile] + [RECIPE] + [r for r in LADDER if r.compile]
    for rung in order:
        row = time_rung(rung, config, device, flops, peaks, compile)
        if rung is RECIPE:
            result["recipe"] = row
        else:
            result["rungs"][LADDER.index(rung)] = row
        log(format_row(row))
        save()
    if inference:
        result["inference"] = time_inference(config, device)
        for row in result["inference"]:
            log(f"inference {row['precision']}: " + (
                f"{row['tiles_per_s']:.1f} tiles/s ({row['tiles']} tiles of {row['tile_px']} px)"
                if not row["skipped"] else f"skipped: {row['skipped']}"))
        save()
    if memory:
        result["memory"] = measure_memory(config, device)
        for row in result["memory"]["rows"]:
            log(f"memory batch {row['batch']} x {row['size']} px, checkpointing "
                f"{row['checkpointing']}: " + (f"peak {row['peak_bytes'] / 2**30:.2f} GiB, "
                                               f"{row['step_ms']:.1f} ms a step"
                                               if "peak_bytes" in row else row["skipped"]))
        save()
    else:
        result["memory"] = {"skipped": "left out (--no-memory)", "rows": []}
        save()
    result["errors"] = (
        [f"{row['name']}: {row['error']}" for row in result["rungs"] + [result["recipe"]]
         if row.get("error")]
        + [f"inference {row['precision']}: {row['error']}" for row in result["inference"]
           if row.get("error")]
        + [f"memory {row['batch']} x {row['size']} px: {row['error']}"
           for row in result["memory"]["rows"] if row.get("error")])
    save()
    if result["best"]:
        best = result["best"]
        log(f"best: {best['name']}, {best['images_per_s']:.1f} images/s"
            + (f", {best['speedup_vs_recipe']:.2f}x the common recipe"
               if best.get("speedup_vs_recipe") else ""))
    return result


def _best(result: dict) -> dict | None:
    timed = [r for r in result["rungs"] if r.get("images_per_s")]
    if not timed:
        return None
    best = max(timed, key=lambda r: r["images_per_s"])
    recipe = result["recipe"].get("images_per_s")
    return {"name": best["name"], "images_per_s": best["images_per_s"],
            "speedup_vs_fp32": best["images_per_s"] / timed[0]["images_per_s"]
            if timed[0]["name"] == "fp32" else None,
            "speedup_vs_recipe": best["images_per_s"] / recipe if recipe else None}


def format_row(row: dict) -> str:
    """One line of the ladder for a log."""
    if row.get("skipped"):
        return f"{row['name']:<46} skipped: {row['skipped']}"
    peak = (f", {100 * row['fraction_of_peak']:.1f}% of {row['precision']} peak"
            if row.get("fraction_of_peak") else "")
    memory = (f", peak memory {row['peak_memory_bytes'] / 2**30:.2f} GiB"
              if row.get("peak_memory_bytes") else "")
    return (f"{row['name']:<46} {row['images_per_s']:9.2f} images/s  {row['step_ms']:8.1f} "
            f"ms/step  {row['tflops']:7.2f} TFLOP/s{peak}{memory}")


def default_out(folder, device_name: str, date: str | None = None) -> Path:
    """``folder/bench-<device>-<YYYY-MM-DD>.json``.

    Example:
        >>> default_out("results", "NVIDIA H100 80GB HBM3", "2026-05-01").as_posix()
        'results/bench-nvidia-h100-80gb-hbm3-2026-05-01.json'
    """
    date = date or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return Path(folder) / f"bench-{device_slug(device_name)}-{date}.json"


# ------------------------------------------------------------------------ the command

def cmd_bench(args: argparse.Namespace) -> int:
    """Time the speed ladder (``unet_teach.bench``); with --out, write the results as JSON."""
    try:
        device = pick_device(args.device)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out
    if out is not None and (Path(out).is_dir() or out.endswith(("/", "\\"))):
        out = default_out(out, device_facts(device)["name"])
    try:
        result = bench(size=args.size, batch=args.batch, width=args.width, steps=args.steps,
                       warmup=args.warmup, device=device, compile=not args.no_compile,
                       inference=not args.no_inference, memory=not args.no_memory, out=out,
                       log=lambda line: print(line, flush=True))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if out is not None:
        print(f"wrote {out}")
    for line in result["errors"]:
        print(f"error: {line}", file=sys.stderr)
    return 1 if result["errors"] else 0


def register(sub) -> None:
    """Add ``unet-teach bench`` to the subcommands ``sub`` (argparse's subparsers)."""
    be = sub.add_parser("bench", help="time a U-Net training step rung by rung",
                        description="Time one training step of the paper-width padded U-Net "
                        "(on a GPU: 512 x 512, batch 16, base width 64) in fp32, TF32, bf16, "
                        "+ channels_last and + torch.compile, and the common recipe (fp16 + "
                        "GradScaler + channels_last); then overlap-tile inference and memory "
                        "against batch and size (with and without checkpointing). Rungs a "
                        "CPU cannot run are reported as skipped, with the reason.")
    be.add_argument("--size", type=int, metavar="PX", help="crop side, a multiple of 16 "
                    "(default: 512 on a GPU, 128 on a CPU)")
    be.add_argument("--batch", type=int, metavar="B", help="crops a step (default: 16 on a "
                    "GPU, 2 on a CPU)")
    be.add_argument("--width", type=int, metavar="W", help="the U-Net's base width (default: "
                    "64, the paper's, on a GPU; 16 on a CPU)")
    be.add_argument("--steps", type=int, metavar="N", help="timed steps a rung; the median "
                    "is kept (default: 20 on a GPU, 3 on a CPU)")
    be.add_argument("--warmup", type=int, metavar="N", help="untimed steps first (default: 5 "
                    "on a GPU, 1 on a CPU)")
    be.add_argument("--out", metavar="FILE.json", help="write the results as JSON (rewritten "
                    "after every part); a folder: FOLDER/bench-<device>-<date>.json")
    be.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: $UNET_TEACH_DEVICE, "
                    "else CUDA when present)")
    be.add_argument("--no-compile", action="store_true", help="leave out the torch.compile "
                    "rung (its compilation takes a minute)")
    be.add_argument("--no-inference", action="store_true", help="leave out inference")
    be.add_argument("--no-memory", action="store_true", help="leave out the memory sweep")
    be.set_defaults(func=cmd_bench)
