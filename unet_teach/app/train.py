"""``unet-teach train``: a U-Net on your own images and masks, in a wall time you choose.

:func:`train` takes the options of :mod:`unet_teach.app.settings` and goes in six steps:

1. **Check the options and the state to resume** (:mod:`unet_teach.app.inputs`): nothing
   is written if anything is wrong.
2. **Load and check the data** (:mod:`unet_teach.app.inputs`): every pair. The sorted
   values over all masks are the classes, so 0/255 masks are two classes, 0 and 255, and
   so are 0/1 masks - there is no conversion to forget, which is how 0/255 masks
   otherwise train nothing; ``predict`` writes the values back. A validation part is
   held out: whole images when there are at least 4, else the bottom rows of every image.
3. **Build the model, the crops and the optimiser**: random square crops (``crop`` px,
   mirrored up to that size for smaller images) with the augmentation ``none``, ``flip``
   (the 8 flips and quarter turns; the default: exact, free, and enough for a short
   training) or ``elastic`` (flips, the paper's elastic deformation and intensity
   changes; better for longer trainings on few images). Loss: per-pixel cross-entropy
   (``ce``, the default without ``regions``), Dice + cross-entropy (``dice_ce``, for small
   objects) or the paper's weighted cross-entropy (``weighted``, the default with
   ``regions``: :func:`unet_teach.losses.weight_map`, heaviest on the thin background
   between two objects). AdamW.
4. **Train** (:func:`unet_teach.app.loop.train_loop`) until the budget
   (:class:`unet_teach.app.budget.Budget`) is spent: ``minutes`` of wall time from the
   command's start, loading and the final validation included (the loop stops early by
   the time those will take), or ``steps``. The learning rate decays by a cosine over
   the whole budget. The forward pass runs in bf16 autocast, channels-last, where the
   hardware multiplies bf16 natively, else in fp32; the run's second line says which and
   why. The model file is written every ``checkpoint_minutes`` and holds the elapsed time
   and step, so ``resume`` continues for the time that remains.
5. **Validate** (:func:`unet_teach.app.validate.validate`): the scores, on at most
   ``MAX_VAL_PIXELS`` pixels, and for 2 classes the threshold: the lowest pixel error, or
   with ``regions`` (the mask value whose connected regions are the objects, e.g. 255 for
   the ISBI cells) the lowest Rand error among the thresholds within ``PIXEL_SLACK`` of
   the lowest pixel error, scored on what ``predict`` writes (regions cut apart at weak
   spots). A note says when this end will take more than a quarter of the budget.
6. **Write** the model file (:func:`unet_teach.app.modelfile.contents`) and say how it went.

**Past one machine: data-parallel training.** The same command runs in several processes
when ``torchrun`` starts it, one process a GPU (or, without GPUs, a few CPU processes)::

    # 4 GPUs of this machine
    torchrun --standalone --nproc-per-node=4 -m unet_teach train IMAGES MASKS --out m.pt
    # the same, through the installed command
    torchrun --standalone --nproc-per-node=4 --no-python unet-teach train IMAGES MASKS --out m.pt
    # 2 machines of 4 GPUs: run this on both (HOST is the first machine's address)
    torchrun --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29500 -m unet_teach train IMAGES MASKS --out m.pt

Every process (a *rank*, :mod:`unet_teach.app.parallel`) holds the whole model and trains
on its own stream of random crops, seeded by ``(seed, step, rank)``. ``--batch-size`` is
per rank, so N ranks train on N times as many crops a step; the learning rate is not
changed. Rank 0 keeps the clock, so all ranks stop at the same step. The losses stored
are the means over all ranks' crops; batch norm's running averages are rank 0's. Only
rank 0 prints, writes the model file (the same format as a one-process run) and
validates, while the others wait. ``--resume`` works the same way. The folders and
``--out`` must be at the same paths on every machine (a shared file system).
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from scipy import ndimage
from torch.nn.parallel import DistributedDataParallel

from ..augment import AUGMENTS, RandomCrops
from ..infer import input_for
from ..losses import cross_entropy, dice_ce_loss, weight_map
from ..threshold import PIXEL_SLACK
from ..train import seed_everything
from .budget import Budget, precision_reason, resolve_precision
from .images import COLOR_NOTES
from .inputs import Data, Request, check_request, load_data
from .loop import train_loop
from .modelfile import build_model, contents, load_optimizer_state, model_args, save_model
from .parallel import Ranks, copy_buffers_from_rank0, debug_dump, join, rank_device
from .predict import pick_device
from .settings import stored
from .validate import scoring_seconds, slow_end_note, validate

#: ``--loss``: the loss of each name (``weighted`` is cross-entropy given pixel weights).
LOSSES = {"ce": cross_entropy, "dice_ce": dice_ce_loss, "weighted": cross_entropy}


def _say(text: str) -> None:
    print(text, flush=True)


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


def crop_sizes(model, crop: int) -> tuple[int, int]:
    """``(input, output)`` side of a training crop whose output is at least ``crop`` px
    (rounded up to a size the net takes; see :func:`unet_teach.infer.input_for`).

    Example:
        >>> from unet_teach.models import UNet
        >>> crop_sizes(UNet(1, 2, depth=4, base_width=4, padding="valid"), 192)
        (380, 196)
    """
    return input_for(model, crop)


# ------------------------------------------------------------------------ 3. ready to run

@dataclass
class Job:
    """A training ready to run: the request and data, this rank, where and how it
    computes, the model (``net`` is what trains: ``model`` itself, or its
    ``DistributedDataParallel`` wrapper), the optimiser, the batches, the budget, and
    what the model file keeps of the run (``losses``, the latest ``validation``)."""

    request: Request
    data: Data
    ranks: Ranks
    device: torch.device
    precision: str
    model: torch.nn.Module
    net: torch.nn.Module
    args: dict
    optimizer: torch.optim.Optimizer
    crop: int
    next_batch: Callable[[], tuple]
    budget: Budget
    step: int = 0
    losses: list = field(default_factory=list)
    validation: dict = field(default_factory=dict)
    first_batch: list = field(default_factory=list)

    def say(self, text: str) -> None:
        """Print ``text`` on rank 0."""
        if self.ranks.main:
            _say(text)

    def warn(self, text: str) -> None:
        """Print ``note: text`` on stderr, on rank 0."""
        if self.ranks.main:
            _note(text)

    def save(self, step: int, finished: bool) -> None:
        """Write the model file (:func:`unet_teach.app.modelfile.contents`)."""
        data, request = self.data, self.request
        train = {"settings": stored(request.settings), "budget": request.budget,
                 "step": step, "elapsed_s": self.budget.elapsed(), "finished": finished,
                 "schedule_position": self.budget.fraction(step),
                 "images": [s for s in data.images if not data.held_out(s)],
                 "validation_split": data.val, "loss": list(self.losses)}
        save_model(request.out, contents(
            self.model, self.optimizer, model_args=self.args, class_values=data.values,
            train=train, validation=self.validation, region_class=data.region_class))


def _batches(request: Request, data: Data, model, ranks: Ranks, step: int,
             first_batch: list) -> tuple[Callable[[], tuple], int]:
    """``(next_batch, crop side)``: random crops of the training part, with the pixel
    weights of ``--loss weighted``; new crops after a resume, another stream on each rank."""
    settings = request.settings
    # no larger than the images (smaller ones are mirrored up to it), on the net's size grid
    side = max(min(m.shape) for m in data.train_masks)
    size, out_size = crop_sizes(model, min(settings.crop, side))
    augment = AUGMENTS[settings.augment]
    # the paper's weights: computed once per training image, as the paper did, when the
    # crops are only cut, flipped and turned (which move weights exactly with the mask);
    # per crop from the deformed mask under elastic augmentation (below)
    weighted, objects = settings.loss == "weighted", data.region_class
    whole = weighted and not augment.elastic
    crops = RandomCrops(data.train_images, data.train_masks, size, out_size, augment,
                        margin=16 if augment.elastic else 0,
                        weights=[weight_map(ndimage.label(m == objects)[0])
                                 for m in data.train_masks] if whole else None)
    rng = np.random.default_rng([settings.seed, step] if not ranks.parallel
                                else [settings.seed, step, ranks.rank])

    def next_batch():
        x, y, *w = crops.batch(rng, settings.batch_size)
        if not first_batch:                # for the test hook: which crops this rank saw
            first_batch.append(hashlib.sha256(x.numpy().tobytes()).hexdigest())
        if not weighted or w:
            return (x, y, *w)
        # elastic: the weights from each crop's own deformed mask (the objects are the
        # connected regions of the --regions class)
        w = np.stack([weight_map(ndimage.label(m == objects)[0]) for m in y.numpy()])
        return x, y, torch.from_numpy(w)

    return next_batch, size


def _build(request: Request, data: Data, ranks: Ranks, device: torch.device,
           precision: str, clock_start: float) -> Job:
    """Step 3: the model (the stored one when resuming), its wrapper under torchrun, the
    optimiser, the batches and the budget, whose reserve is the time the end will take."""
    settings, old = request.settings, request.old
    seed_everything(settings.seed)
    if request.stored:
        model, args = request.model, request.stored["model_args"]
    else:
        args = model_args(settings.preset, len(data.values), settings.base_width)
        model = build_model(args)
    model.to(device)
    if precision == "bf16":               # the layout bf16 convolutions are fastest in
        model.to(memory_format=torch.channels_last)
    # what trains is `net`; what is saved is `model`, the module inside the wrapper, so the
    # file has the same keys as a one-process run (no "module." prefix; see weights())
    net = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None) if ranks.parallel else model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    if request.stored:
        load_optimizer_state(optimizer, request.stored["optimizer"])
    step = int(old["step"]) if old else 0
    first_batch: list = []
    next_batch, size = _batches(request, data, model, ranks, step, first_batch)
    val_pixels = sum(t.size for _, t, _ in data.parts)             # predicted whole
    n_params = sum(p.numel() for p in model.parameters())
    spec = request.budget
    budget = Budget(steps=spec.get("steps"),
                    seconds=spec["minutes"] * 60 if "minutes" in spec else None,
                    clock_start=clock_start,
                    elapsed_before=float(old["elapsed_s"]) if old else 0.0,
                    # writing the file (about 100 MB/s, three times the weights: AdamW),
                    # and scoring the validation part
                    reserve_s=0.25 + 3 * 4 * n_params / 100e6
                    + scoring_seconds(val_pixels, data.region_class is not None),
                    # a forward pass is about a third of a training step; predicting the
                    # validation images whole costs about 2 / 3 of a step per crop's pixels
                    reserve_steps=0.7 * val_pixels / (settings.batch_size * size * size))
    return Job(request, data, ranks, device, precision, model, net, args, optimizer, size,
               next_batch, budget, step=step, losses=list(old["loss"]) if old else [],
               validation=dict(old.get("threshold_info", {})) if old else {},
               first_batch=first_batch)


def _announce(job: Job) -> None:
    """The run's first lines: the data, the model and how it computes, the budget."""
    data, settings, request = job.data, job.request.settings, job.request
    for kind in sorted(n for n in data.notes if n):
        job.warn(COLOR_NOTES[kind])
    total = sum(t.size for t in data.targets.values())
    shares = ", ".join(f"{v} -> class {i} "
                       f"({sum((t == i).sum() for t in data.targets.values()) / total:.0%})"
                       for i, v in enumerate(data.values))
    what = {"images": f"{len(data.val.get('images', []))} image(s) held out for validation",
            "rows": f"the bottom {data.val.get('fraction', 0):.0%} of rows held out for "
                    "validation",
            "none": "no validation (threshold 0.5)"}[data.val["mode"]]
    job.say(f"{'resuming' if request.stored else 'training'}: {len(data.images)} image "
            f"pair(s), {what}; mask values {shares}")
    n_params = sum(p.numel() for p in job.model.parameters())
    where = (f"on {job.ranks.world} process{'es' if job.ranks.world > 1 else ''} "
             f"({dist.get_backend()}, {job.device.type}): "
             f"{job.ranks.world * settings.batch_size} crops a step" if job.ranks.parallel
             else f"on {job.device}")
    job.say(f"model: preset {settings.preset} ({n_params / 1e6:.2f} M parameters), "
            f"{job.crop} px crops x {settings.batch_size}, augment {settings.augment}, loss "
            f"{settings.loss}, {where}, {job.precision}"
            + (" autocast" if job.precision == "bf16" else "")
            + f" ({precision_reason(request.run.precision, job.device)})")
    budget, every = job.budget, request.run.checkpoint_minutes
    if budget.seconds is not None:
        left = budget.seconds - budget.elapsed()
        ends = time.strftime("%H:%M:%S", time.localtime(time.time() + left))
        left_text = f"{left / 60:.1f} min" if left >= 60 else f"{max(left, 0):.0f} s"
        job.say(f"budget: {budget.describe()} in all, {left_text} left: ends at about "
                f"{ends}; the model file {request.out} is written every {every:g} min and at "
                "the end")
    else:
        job.say(f"budget: {budget.describe()} ({job.step} done); {request.out} is written "
                f"every {every:g} min and at the end")


# ------------------------------------------------------------------------ 4. the loop

def _run_loop(job: Job) -> str:
    """Step 4: train until the budget is spent (:func:`unet_teach.app.loop.train_loop`),
    writing the model file every ``checkpoint_minutes`` on rank 0; return why it stopped;
    warn once the step time shows that the end will take more than a quarter of it."""
    settings, run = job.request.settings, job.request.run

    def end_estimate(step_time: float) -> None:
        note = slow_end_note(job.budget, step_time)
        if note:
            job.warn(note)

    job.step, why = train_loop(
        job.net, job.next_batch, job.optimizer, LOSSES[settings.loss], job.budget,
        lr=settings.lr, step=job.step, losses=job.losses,
        checkpoint=(lambda s: job.save(s, False)) if job.ranks.main else None,
        checkpoint_every_s=run.checkpoint_minutes * 60, device=job.device,
        progress=run.progress, precision=job.precision, after_warmup=end_estimate)
    return why


# ------------------------------------------------------------------------ 5, 6. the end

def _stopped(job: Job, why: str) -> int:
    """A loop that did not finish: a nan loss (exit 1, nothing more written) or Ctrl-C
    (exit 130, after writing a checkpoint that ``--resume`` continues)."""
    out, step = job.request.out, job.step
    if why == "diverged":
        if job.ranks.main:
            print(f"error: the loss became nan at step {step + 1} (nothing more written to "
                  f"{out}); start over with a lower --lr (now {job.request.settings.lr:g})",
                  file=sys.stderr)
        return 1
    if job.ranks.main:
        job.save(step, False)
        print(f"interrupted at step {step} ({job.budget.elapsed() / 60:.1f} min); wrote "
              f"{out}; the same command with --resume continues it", file=sys.stderr)
    return 130


def _finish(job: Job) -> int:
    """Steps 5 and 6: on rank 0, validate (:func:`unet_teach.app.validate.validate`),
    write the model file and say how it went; the other ranks wait."""
    if job.ranks.parallel:
        copy_buffers_from_rank0(job.model)
    debug_dump(job.model, job.ranks, job.step, job.first_batch[0] if job.first_batch else None)
    if not job.ranks.main:
        dist.barrier()                     # while rank 0 validates and writes the file
        return 0
    validation = {}
    if job.data.parts:
        validation = validate(job.model, job.data.parts, len(job.data.values), job.device,
                              job.request.settings.seed, regions=job.data.region_class)
        job.validation = validation              # else the resumed training's, if any
    job.save(job.step, True)
    if job.ranks.parallel:
        dist.barrier()
    line = (f"wrote {job.request.out}: {job.step} steps, {job.budget.elapsed() / 60:.1f} min "
            "in all")
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
    job.say(line)
    if validation.get("single_class"):
        job.warn("the model predicts one class everywhere on the validation part; train "
                 "longer (--minutes), or try --loss dice_ce if the objects are small")
    return 0


# ------------------------------------------------------------------------ the command

def train(images, masks, out, *, clock_start: float | None = None, **options) -> int:
    """Train a model on the pairs in ``images`` and ``masks``, write it to ``out``; return the
    exit status (0; 130 when interrupted, after writing a checkpoint; 1 if the loss diverged).

    ``options``: the fields of :class:`~unet_teach.app.settings.Settings` (``preset``,
    ``crop``, ``lr``, ...) and :class:`~unet_teach.app.settings.RunOptions` (``minutes``,
    ``steps``, ``resume``, ``force``, ``device``, ``precision``, ``progress``, ...), by
    keyword. Those left ``None`` take the defaults or, with ``resume``, the stored
    training's settings (giving a different one is an error; ``minutes``/``steps`` set a
    new total budget). ``clock_start`` is the command's start (``time.monotonic()``), from
    which ``minutes`` counts. Bad input raises
    :class:`~unet_teach.app.images.InputError` before anything is written.

    Started by ``torchrun``, every process calls this, and they train data-parallel (see
    the module's docstring); the process group this function starts, it also ends, after
    an error too.

    Example:
        >>> train("images", "masks", "m.pt", minutes=1, steps=5)
        Traceback (most recent call last):
        ...
        unet_teach.app.images.InputError: --minutes and --steps: give one budget, not both
    """
    clock_start = time.monotonic() if clock_start is None else clock_start
    started_here = not (dist.is_available() and dist.is_initialized())
    try:
        request = check_request(out, options)
        data = load_data(images, masks, request)
        ranks = Ranks.from_env()
        device = rank_device(pick_device(request.run.device), ranks)
        precision = resolve_precision(request.run.precision, device)
        # nothing was wrong: from here on, files are written. Under torchrun, every rank
        # has checked the same things; none writes before all have joined the group here.
        join(ranks, device)
        job = _build(request, data, ranks, device, precision, clock_start)
        _announce(job)
        request.out.parent.mkdir(parents=True, exist_ok=True)
        why = _run_loop(job)
        return _finish(job) if why == "done" else _stopped(job, why)
    finally:
        if started_here and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
