"""The training loop of ``unet-teach train``: steps until the budget is spent.

:func:`train_loop` knows nothing of files or folders: the data comes from a
``next_batch()`` function, the time from a :class:`~unet_teach.app.budget.Budget`, and the
model file is written by a ``checkpoint(step)`` function it calls every few minutes. Each
step sets the learning rate from the budget's position, runs the net (in bf16 autocast
where asked), steps the optimiser and records the loss. Under ``torchrun`` every rank runs
it, and rank 0 decides when to stop (:mod:`unet_teach.app.parallel`).
"""

from __future__ import annotations

import sys
from typing import Callable

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..models import center_crop
from .budget import Budget, autocast, cosine_lr, resolve_precision
from .parallel import from_rank0, mean_over_ranks

#: Steps of a run after which its step time is trusted to estimate the end's.
WARMUP_STEPS = 3


def train_loop(model: torch.nn.Module, next_batch: Callable[[], tuple], optimizer,
               loss_fn: Callable, budget: Budget, *, lr: float, step: int = 0,
               losses: list | None = None, checkpoint: Callable[[int], None] | None = None,
               checkpoint_every_s: float = 120.0, device: torch.device | None = None,
               progress: bool = True, precision: str | None = None,
               after_warmup: Callable[[float], None] | None = None) -> tuple[int, str]:
    """Train ``model`` until ``budget`` is spent; return ``(steps done in all, why)``,
    ``why`` = ``"done"``, ``"interrupted"`` (Ctrl-C) or ``"diverged"`` (a nan loss).

    Everything about the data is in ``next_batch() -> (images, masks)`` or ``(images, masks,
    weights)``, whose weights go to ``loss_fn(scores, masks, weights)``; every step sets the
    learning rate from the budget's position (:func:`~unet_teach.app.budget.cosine_lr`),
    runs the net, crops the masks to its output (valid padding), steps the optimiser and
    appends the loss to ``losses``; ``checkpoint(step)`` is called every
    ``checkpoint_every_s`` seconds of the budget's clock, and ``after_warmup(step time)``
    once after ``WARMUP_STEPS`` steps of this run (or at its end, if it took fewer). ``precision`` (see
    :func:`~unet_teach.app.budget.resolve_precision`; default ``"auto"``): in bf16 the
    forward pass runs under autocast and the batches are laid out channels-last, the
    layout the bf16 convolution kernels of oneDNN and cuDNN are fastest in (convert the
    model to it too, as :func:`unet_teach.app.train.train` does).

    Data-parallel: every process of a launch runs this same function, with ``model``
    wrapped in ``DistributedDataParallel`` and its own ``next_batch``. Then rank 0 alone
    decides whether to take a step and where the schedule stands (the budget and clock of
    the other ranks are not used), the loss is averaged over the ranks before it is
    checked and stored, and only rank 0 shows progress (pass ``checkpoint`` on rank 0
    only). All ranks return the same step count.

    Example:
        >>> net = torch.nn.Conv2d(1, 2, kernel_size=1)
        >>> batch = lambda: (torch.rand(2, 1, 4, 4), torch.randint(0, 2, (2, 4, 4)))
        >>> losses = []
        >>> train_loop(net, batch, torch.optim.AdamW(net.parameters()),
        ...            torch.nn.functional.cross_entropy, Budget(steps=3), lr=1e-3,
        ...            losses=losses, progress=False, precision="fp32"), len(losses)
        ((3, 'done'), 3)
    """
    device = device or next(model.parameters()).device
    precision = resolve_precision(precision, device)
    layout = torch.channels_last if precision == "bf16" else torch.contiguous_format
    losses = losses if losses is not None else []
    parallel = dist.is_available() and dist.is_initialized()
    main, timed, clock = not parallel or dist.get_rank() == 0, budget.steps is None, budget.clock
    bar = tqdm(total=round(budget.seconds) if timed else budget.steps, initial=0,
               unit="s" if timed else "step", disable=not (progress and main),
               file=sys.stderr, desc="training", mininterval=1.0,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}{postfix}]"
               if timed else None)
    shown = min(budget.elapsed(), bar.total) if timed else step
    bar.update(shown)
    model.train()
    step_time, last_save, first, taken, why = 0.0, clock(), step == 0, 0, "done"
    try:
        while True:
            go, fraction = first or not budget.spent(step, step_time), budget.fraction(step)
            if parallel:
                go, fraction = from_rank0(go, fraction, device)
            if not go:
                break
            first, started = False, clock()
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(lr, fraction)
            x, y, *w = next_batch()                 # w: [] or [N x H x W pixel weights]
            x = x.to(device, non_blocking=True).contiguous(memory_format=layout)
            y = y.to(device, non_blocking=True)
            w = [v.to(device, non_blocking=True) for v in w]
            with autocast(device, precision):
                out = model(x)                                      # N x K x H' x W'
            if out.shape[-2:] != y.shape[-2:]:
                y = center_crop(y, *out.shape[-2:])
                w = [center_crop(v, *out.shape[-2:]) for v in w]
            loss = loss_fn(out.float(), y, *w)
            value = mean_over_ranks(loss) if parallel else loss.detach()
            if not torch.isfinite(value):
                why = "diverged"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()                   # DDP: the gradients are averaged over ranks here
            optimizer.step()
            step, taken = step + 1, taken + 1
            losses.append(float(value.item()))
            took = clock() - started
            step_time = took if step_time == 0 else 0.9 * step_time + 0.1 * took
            if taken == WARMUP_STEPS and after_warmup is not None:
                after_warmup(step_time)
            now = budget.elapsed() if timed else step
            bar.update(max(0, min(now, bar.total) - shown))
            shown = max(shown, min(now, bar.total))
            bar.set_postfix_str(f"step {step}, loss {losses[-1]:.4f}", refresh=False)
            if checkpoint is not None and clock() - last_save >= checkpoint_every_s:
                checkpoint(step)
                last_save = clock()
        if why == "done" and 0 < taken < WARMUP_STEPS and after_warmup is not None:
            after_warmup(step_time)           # a budget too short for the warm-up: say so
    except KeyboardInterrupt:
        why = "interrupted"
    finally:
        bar.close()
    return step, why
