"""A small fit loop you can read in one sitting, and checkpoints that load safely.

What ``fit`` does, in order, every step: take a batch (image, mask and, if the data set
has them, per-pixel loss weights), move it to the device, run the net (under mixed precision
on CUDA), crop mask and weights to the output if the net shrinks its input (valid padding),
compute the loss, back-propagate, step the optimiser. After each epoch it measures loss,
pixel accuracy and Dice on the validation images, appends them to the history and
(optionally) writes a checkpoint. Scores become losses and labels in
:mod:`unet_teach.losses`, nowhere else.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from .data import check_stack
from .files import write_atomic
from .losses import default_loss, to_labels
from .metrics import dice, pixel_accuracy
from .models import center_crop
from .profile import default_device


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch for the rest of the process (a command that trains, then
    exits); return a torch generator for data shuffling. :func:`fit` seeds inside
    :func:`seeded` instead, which puts the generators back.

    Example:
        >>> a = torch.rand(1, generator=seed_everything(0))
        >>> b = torch.rand(1, generator=seed_everything(0))
        >>> bool(a == b)
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def seeded(seed: int, device: str | torch.device = "cpu"):
    """Seed Python's ``random``, numpy's global generator and torch's (the CPU's and
    ``device``'s) for the block, then put back the states they had before it.

    What the block draws is the same on every run; what is drawn after it is what would
    have been drawn had the block not run. :func:`fit` trains inside one, so that dropout
    repeats from run to run while the caller's own random numbers stay as they were.

    Example:
        >>> _ = torch.manual_seed(1)
        >>> with seeded(0):
        ...     inside = torch.rand(1)
        >>> after = torch.rand(1)
        >>> _ = torch.manual_seed(1)
        >>> bool(after == torch.rand(1))         # as if the block had not run
        True
        >>> with seeded(0):
        ...     bool(inside == torch.rand(1))    # and the block repeats
        True
    """
    device = torch.device(device)
    accelerator = [] if device.type == "cpu" else [
        device.index if device.index is not None
        else torch.cuda.current_device() if device.type == "cuda" else 0]
    python, numpy = random.getstate(), np.random.get_state()
    # Only the generators in use are seeded (torch.manual_seed would also seed every GPU,
    # and queue the seed for a CUDA that is not started yet, beyond fork_rng's reach).
    with torch.random.fork_rng(devices=accelerator,
                               device_type=device.type if accelerator else None):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.default_generators[accelerator[0]].manual_seed(seed)
        elif accelerator:                           # e.g. mps: one device
            torch.get_device_module(device.type).manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def as_dataset(data) -> Dataset:
    """Turn ``(images, masks)`` or ``(images, masks, weights)`` into a torch ``Dataset``
    of ``(C x H x W float, H x W long[, H x W float])``.

    ``images`` may be ``N x H x W`` (one channel is added) or ``N x C x H x W``; ``masks`` is
    ``N x H x W`` of class indices; ``weights`` (optional) ``N x H x W`` per-pixel loss
    weights (see :func:`unet_teach.losses.weight_map`). A ``Dataset`` is returned unchanged.

    Example:
        >>> ds = as_dataset((np.zeros((3, 16, 16), np.float32), np.zeros((3, 16, 16), np.int64)))
        >>> [t.shape for t in ds[0]]
        [torch.Size([1, 16, 16]), torch.Size([16, 16])]
    """
    if isinstance(data, Dataset):
        return data
    if not (isinstance(data, (tuple, list)) and len(data) in (2, 3)):
        raise TypeError("expected (images, masks), (images, masks, weights) or a torch "
                        f"Dataset, got {type(data).__name__}")
    masks = _tensor(data[1])
    images = check_stack(_tensor(data[0]), masks)             # N x C x H x W
    if not torch.is_floating_point(images):
        raise ValueError(f"images must be floating point in [0, 1], got {images.dtype}; "
                         "divide 8-bit images by 255")
    tensors = [images.float(), masks.long()]
    if len(data) == 3:
        weights = _tensor(data[2])
        if weights.shape != masks.shape:
            raise ValueError(f"weights {tuple(weights.shape)} must have the masks' shape "
                             f"{tuple(masks.shape)}: one weight per pixel")
        tensors.append(weights.float())
    return TensorDataset(*tensors)


def check_targets(output: torch.Tensor, target: torch.Tensor) -> None:
    """Raise a ``ValueError`` that says what to do if ``target`` holds class indices the
    net's ``output`` (``N x K x H x W``) has no score map for.

    Checked once, on the first batch: a bad label otherwise surfaces as an opaque index error
    (or, on CUDA, a device-side assert).

    Example:
        >>> check_targets(torch.zeros(1, 2, 4, 4), torch.full((1, 4, 4), 255))
        Traceback (most recent call last):
        ...
        ValueError: the masks hold class index 255 but the net has 2 class map(s) (classes 0..1); masks read from 8-bit files often use 255 for the foreground: convert them with (mask > 0) or mask // 255
    """
    classes = max(output.shape[1], 2)          # a single sigmoid map means classes 0 and 1
    lo, hi = int(target.min()), int(target.max())
    if lo < 0 or hi >= classes:
        bad = hi if hi >= classes else lo
        raise ValueError(f"the masks hold class index {bad} but the net has {output.shape[1]} "
                         f"class map(s) (classes 0..{classes - 1}); masks read from 8-bit files "
                         "often use 255 for the foreground: convert them with (mask > 0) or "
                         "mask // 255")


def _amp_context(device: torch.device, enabled: bool):
    if not (enabled and device.type == "cuda"):
        return nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def _unpack(batch, device: torch.device):
    """``(x, y)`` or ``(x, y, w)`` from a loader, on ``device``; ``w`` is ``None`` if absent."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError("a training sample must be (image, mask) or (image, mask, weight), "
                         f"got {type(batch).__name__} of length {len(batch)}")
    x, y, w = (*batch, None)[:3]
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return x, y, (w.to(device, non_blocking=True) if w is not None else None)


def _crop_like(out: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None):
    """Crop mask (and weights) to the output: a valid-padding net returns less than it takes."""
    y = center_crop(y, *out.shape[-2:])
    return y, (center_crop(w, *out.shape[-2:]) if w is not None else None)


def _loss(loss_fn: Callable, out: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None):
    # Weights are handed over only when the data has them, so any loss(scores, target)
    # (e.g. losses.dice_loss) works on plain (image, mask) data.
    return loss_fn(out, y) if w is None else loss_fn(out, y, w)


@torch.no_grad()
def evaluate(model: nn.Module, data, loss_fn: Callable = default_loss, batch_size: int = 4,
             device: torch.device | None = None) -> dict[str, float]:
    """Loss, pixel accuracy and Dice (class 1) of ``model`` on ``data`` (``(images, masks)``).

    A data set with weight maps passes them to ``loss_fn``, as in training.

    Example:
        >>> from unet_teach.models import UNet
        >>> net = UNet(1, 2, depth=1, base_width=4)
        >>> data = (np.zeros((2, 16, 16), np.float32), np.zeros((2, 16, 16), np.int64))
        >>> sorted(evaluate(net, data))
        ['accuracy', 'dice', 'loss']
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, n, preds, targets = 0.0, 0, [], []
    for batch in DataLoader(as_dataset(data), batch_size=batch_size):
        x, y, w = _unpack(batch, device)
        out = model(x)
        y, w = _crop_like(out, y, w)
        total += _loss(loss_fn, out.float(), y, w).item() * len(x)
        n += len(x)
        preds.append(to_labels(out).cpu())
        targets.append(y.cpu())
    model.train(was_training)
    pred, target = torch.cat(preds), torch.cat(targets)
    return {"loss": total / n, "accuracy": pixel_accuracy(pred, target), "dice": dice(pred, target)}


def fit(model: nn.Module, train, val=None, *, epochs: int = 1, max_steps: int | None = None,
        batch_size: int = 4, lr: float = 1e-3, optimizer: torch.optim.Optimizer | None = None,
        loss_fn: Callable = default_loss, device: str | torch.device | None = None,
        amp: bool = True, seed: int = 0, checkpoint: str | os.PathLike | None = None,
        progress: bool = True, schedule: str | None = None) -> dict[str, list]:
    """Train ``model`` on ``train`` and return the history.

    Args:
        model: a net mapping ``N x C x H x W`` to ``N x K x H' x W'`` scores.
        train, val: ``(images, masks)`` or ``(images, masks, weights)`` arrays (see
            :func:`as_dataset`), or torch Datasets yielding such pairs or triples.
        epochs: passes over ``train``; ``max_steps`` stops earlier after that many steps.
        batch_size, lr: for the default optimiser, Adam.
        optimizer: your own optimiser over ``model.parameters()`` (then ``lr`` is unused).
        loss_fn: ``loss_fn(scores, target)``, or ``loss_fn(scores, target, weight)`` when
            the data yields ``(image, mask, weight)``; default
            :func:`unet_teach.losses.default_loss` (cross-entropy, weighted if weights come).
        device: default CUDA when present (see :func:`unet_teach.profile.default_device`).
        amp: mixed precision on CUDA (ignored on the CPU).
        seed: seeds the order of the batches (a generator of fit's own) and, while fit
            trains, Python's ``random``, numpy's global generator and torch's (the CPU's
            and ``device``'s): dropout, and a data set that draws from them, repeat from
            run to run. Their states are put back when fit returns (see :func:`seeded`), so
            the caller's random numbers go on as if fit had not run. Not seeded: the
            model's initial weights, drawn when it was built - call
            ``torch.manual_seed(seed)`` before building it.
        checkpoint: if given, the model and optimiser are saved there after every epoch.
        progress: show a tqdm progress bar.
        schedule: ``None`` keeps the learning rate constant; ``"onecycle"`` raises it from
            ``lr / 25`` to ``lr`` over the first 30 % of the steps and lowers it to nearly 0
            by the last (torch's ``OneCycleLR``), so a short run ends on small steps.

    Returns:
        ``{"epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_dice",
        "seconds"}``: one entry per epoch (the ``val_*`` lists stay empty without ``val``),
        plus ``"step_loss"``, the loss of every step.

    Example:
        >>> from unet_teach.data import synthetic_membranes
        >>> from unet_teach.models import UNet
        >>> images, masks = synthetic_membranes(4, 32, seed=0)
        >>> net = UNet(1, 2, depth=2, base_width=4)
        >>> h = fit(net, (images, masks), epochs=2, progress=False)
        >>> len(h["train_loss"])
        2
    """
    device = torch.device(device) if device is not None else default_device()
    generator = torch.Generator().manual_seed(seed)         # the order of the batches
    model.to(device)
    dataset = as_dataset(train)
    if len(dataset) == 0:
        raise ValueError("the training data is empty: pass at least one (image, mask) pair")
    if schedule not in (None, "onecycle"):
        raise ValueError(f"schedule must be None or 'onecycle', got {schedule!r}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    autocast, scaler = _amp_context(device, amp)
    history: dict[str, list] = {k: [] for k in ("epoch", "step", "train_loss", "val_loss",
                                                "val_accuracy", "val_dice", "seconds", "step_loss")}
    total_steps = min(epochs * len(loader), max_steps or epochs * len(loader))
    scheduler = None
    if schedule == "onecycle":
        peak = [group["lr"] for group in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, peak, total_steps=total_steps)
    bar = tqdm(total=total_steps, disable=not progress, desc="training", unit="step")
    step, start = 0, time.perf_counter()
    # Dropout, and a data set that draws from np.random or random, use the global
    # generators: seeded here, so that a run repeats, and put back when training ends,
    # so that fit leaves the caller's random numbers as it found them.
    with seeded(seed, device):
        for epoch in range(1, epochs + 1):
            model.train()
            if hasattr(dataset, "set_epoch"):      # e.g. AugmentedDataset: new draws each epoch
                dataset.set_epoch(epoch)
            running, seen = 0.0, 0
            for batch in loader:
                x, y, w = _unpack(batch, device)                     # w: N x H x W or None
                with autocast:
                    out = model(x)                                   # N x K x H' x W'
                y, w = _crop_like(out, y, w)                         # valid padding: crop targets
                if step == 0:
                    check_targets(out, y)
                loss = _loss(loss_fn, out.float(), y, w)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                running += loss.item() * len(x)
                seen += len(x)
                history["step_loss"].append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
                if step >= total_steps:
                    break
            history["epoch"].append(epoch)
            history["step"].append(step)
            history["train_loss"].append(running / max(seen, 1))
            if val is not None:
                scores = evaluate(model, val, loss_fn, batch_size, device)
                history["val_loss"].append(scores["loss"])
                history["val_accuracy"].append(scores["accuracy"])
                history["val_dice"].append(scores["dice"])
            history["seconds"].append(time.perf_counter() - start)
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, epoch=epoch, step=step)
            if step >= total_steps:
                break
    bar.close()
    return history


# ----------------------------------------------------------------------------- checkpoints


class CheckpointError(ValueError):
    """A checkpoint does not fit the model it is loaded into, or is not a checkpoint."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, **extra) -> Path:
    """Save the model's weights (and the optimiser's state) to ``path``.

    Only tensors, numbers and strings are stored, so the file loads with
    ``torch.load(..., weights_only=True)``, which cannot run code hidden in a file.

    Example:
        >>> import tempfile
        >>> from unet_teach.models import UNet
        >>> p = save_checkpoint(tempfile.mkdtemp() + "/net.pt", UNet(1, 2, 1, 4), epoch=3)
        >>> p.name
        'net.pt'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "extra": dict(extra)}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    # never leave a half-written checkpoint behind: a run killed while saving keeps the last
    return write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load weights saved by :func:`save_checkpoint` into ``model`` (and ``optimizer``).

    Raises:
        CheckpointError: if the file is not a checkpoint, or its tensors do not match the
            model's; the message lists the missing, unexpected and differently shaped ones.

    Returns:
        The ``extra`` values stored with it (e.g. ``{"epoch": 3}``).

    Example:
        >>> import tempfile
        >>> from unet_teach.models import UNet
        >>> p = save_checkpoint(tempfile.mkdtemp() + "/net.pt", UNet(1, 2, 1, 4), epoch=3)
        >>> load_checkpoint(p, UNet(1, 2, 1, 4))
        {'epoch': 3}
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: "
                              f"{str(err)[:200]}); was it written by save_checkpoint?") from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} holds no 'model' weights; was it written by save_checkpoint?")
    saved, own = state["model"], model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    wrong = [f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in saved and saved[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        lines = [f"{path} does not fit this {type(model).__name__}:"]
        for title, items in (("missing in the checkpoint", missing),
                             ("not in the model", unexpected), ("shape differs", wrong)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:5])
                             + (" ..." if len(items) > 5 else ""))
        lines.append("Build the model with the same arguments (preset, depth, base_width, "
                     "channels) as the one that was saved.")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(saved)
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    return dict(state.get("extra", {}))
