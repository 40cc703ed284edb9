"""Chapter 9's experiment: how the error falls with the number of training images, with and
without augmentation - the learning curve - and U-Net against a patch classifier.

One function runs one net (:func:`run`): ``n`` images chosen by the seed, one of the three
``SETTINGS``, a fixed number of steps, scored on held-out slices. Everything a comparison
needs to be *paired* is a function of the seed alone: the images (the ``n``-image set of a
seed contains its smaller sets), the initial weights and the order of the crops. So for one
seed the three settings differ in the augmentation only, and the book compares them run by
run (:func:`unet_teach.stats.compare` with ``paired=True``).

``scripts/learning_curve.py`` runs the whole curve (several seeds and sizes, and the patch
classifier at the same wall-clock time) and writes it to ``results/``; chapter 9 reads that
file and re-runs a part of it live.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import metrics
from .augment import Augment, AugmentedDataset
from .infer import predict
from .losses import cross_entropy
from .models import UNet
from .patches import patch_dataset, patch_preset, sample_pixels, sliding_window_scores

TRAIN_SLICES, TEST_SLICES = range(0, 20), range(20, 25)   # ISBI 2012: learn 00-19, score 20-24


@dataclass(frozen=True)
class Config:
    """The experiment's budget and sizes, declared once (the defaults are the book's)."""

    size: int = 256        # an "image": a size x size region of one training slice
    window: int = 128      # each sample cuts a window out of its image, then augments it
    crop: int = 64         # ... and trains on a crop of the augmented window
    batch: int = 4
    copies: int = 48       # every training set is copied to this many images: an epoch
    steps: int = 600       # shows each image equally often whatever n is
    lr: float = 3e-3       # Adam, one-cycle: rises for 30 % of the steps, then decays
    test: int = 256        # scored on the centre test x test of slices 20-24
    history: int = 0       # score the net this many times along training (0: at the end)
    net: dict = field(default_factory=lambda: dict(
        in_channels=1, out_channels=2, depth=3, base_width=8, padding="same",
        norm="instance"))


def settings(window: int) -> dict[str, Augment]:
    """The three settings: random crops only, + flips and quarter turns, + the paper's elastic
    deformation (its lattice in tissue pixels: the paper's strain on any window)."""
    plain = dict(intensity=False, window=window)
    return {"none": Augment(flip_rotate=False, elastic=False, **plain),
            "flips": Augment(flip_rotate=True, elastic=False, **plain),
            "flips + elastic": Augment(flip_rotate=True, elastic=True, **plain)}


SETTINGS = tuple(settings(128))


def training_images(images, masks, seed: int, n: int, size: int = 256):
    """``n`` regions ``size x size`` of ``n`` different training slices, chosen by ``seed``;
    nested: the first ``n`` of one order, so a seed's 8 images hold its 4, 2 and 1."""
    rng = np.random.default_rng(seed)
    slices = rng.permutation(len(TRAIN_SLICES))[:n]
    h, w = images.shape[-2:]
    corners = rng.integers(0, min(h, w) - size + 1, size=(len(TRAIN_SLICES), 2))[:n]
    x = np.stack([images[TRAIN_SLICES[i], r:r + size, c:c + size]
                  for i, (r, c) in zip(slices, corners)])
    y = np.stack([masks[TRAIN_SLICES[i], r:r + size, c:c + size]
                  for i, (r, c) in zip(slices, corners)])
    return x, y                                                  # n x size x size each


def test_regions(images, masks, test: int = 256):
    """The held-out images: the centre ``test x test`` of slices 20-24."""
    lo = (images.shape[-1] - test) // 2
    window = (slice(TEST_SLICES[0], TEST_SLICES[-1] + 1), slice(lo, lo + test),
              slice(lo, lo + test))
    return images[window], masks[window]                         # 5 x test x test each


def train(net, dataset, steps: int, seed: int, batch_size: int, lr: float,
          device="cpu", at=(), score=None) -> list:
    """``steps`` Adam steps of ``batch_size`` samples with a one-cycle learning rate; after
    each step in ``at``, ``score(net)`` is recorded (the net is put back in training mode
    after; scoring draws no random numbers, so the training is the same). Returns those
    records."""
    net.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    step, epoch, records = 0, 0, []
    while step < steps:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)               # new crops and augmentations every epoch
        loader = DataLoader(dataset, batch_size, shuffle=True, generator=generator,
                            drop_last=True)
        for x, y in loader:
            x, y = x.to(device), y.to(device)      # N x 1 x h x w, N x h x w
            loss = cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step in at:
                records.append({"step": step, **score(net)})
                net.train()
            if step == steps:
                break
        epoch += 1
    return records


def _errors(net, train_x, train_y, test_x, test_y) -> dict:
    test_pred = predict(net, test_x)[0]                          # 5 x test x test
    train_pred = predict(net, train_x)[0]                        # n x size x size
    return {"test error": metrics.pixel_error(test_pred, test_y),
            "train error": metrics.pixel_error(train_pred, train_y)}


def run(images, masks, seed: int, n: int, setting: str, config: Config = Config(),
        device="cpu", keep_net: bool = False) -> dict:
    """One net of the learning curve: trained on ``n`` images of ``seed`` with ``setting``,
    scored on the held-out regions (pixel error, membrane Dice, Rand error of the cells) and
    on its own training images (pixel error)."""
    x, y = training_images(images, masks, seed, n, config.size)
    test_x, test_y = test_regions(images, masks, config.test)
    copies = config.copies // n
    dataset = AugmentedDataset(np.repeat(x, copies, axis=0), np.repeat(y, copies, axis=0),
                               augment=settings(config.window)[setting], seed=seed,
                               crop=config.crop)
    torch.manual_seed(seed)                                      # same initial weights per seed
    net = UNet(**config.net)
    at = {k * config.steps // config.history for k in range(1, config.history)} \
        if config.history else set()
    scoring = [0.0]                      # seconds spent scoring along the way, not training

    def score(net):
        t0 = time.perf_counter()
        errors = _errors(net, x, y, test_x, test_y)
        scoring[0] += time.perf_counter() - t0
        return errors

    start = time.perf_counter()
    history = train(net, dataset, config.steps, seed, config.batch, config.lr, device, at,
                    score)
    seconds = time.perf_counter() - start - scoring[0]           # training time only
    net = net.cpu().eval()
    test_pred = predict(net, test_x)[0]
    out = dict(seed=seed, n=n, setting=setting, seconds=seconds,
               **_errors(net, x, y, test_x, test_y),
               dice=metrics.dice(test_pred, test_y),
               rand=metrics.rand_error(test_pred, test_y, regions=0),
               history=history + [{"step": config.steps, **_errors(net, x, y, test_x, test_y)}])
    if keep_net:
        out["net"] = net
    return out


# ------------------------------------------------------------------ the patch classifier

def duel(images, masks, seed: int, n: int, seconds: float, unet, config: Config = Config(),
         preset: str = "n4", times=(1, 8), batch_size: int = 64, lr: float = 2e-3,
         per_slice: int = 600, margin: int = 32, device="cpu") -> dict:
    """The patch classifier ``preset`` (Ciresan's N4 by default) trained on the same ``n``
    images as the U-Net ``unet``, for ``times`` x the U-Net's ``seconds`` of wall-clock time
    (scored at each), both scored on the same ``per_slice`` random pixels of every held-out
    region (``margin`` px from its border, each patch cut from the whole slice, so it sees
    real context)."""
    x, y = training_images(images, masks, seed, n, config.size)
    test_x, test_y = test_regions(images, masks, config.test)
    lo = (images.shape[-1] - config.test) // 2
    inner = config.test - 2 * margin
    picks = [sample_pixels((inner, inner), per_slice, seed=k) for k in range(len(test_x))]
    truth = np.concatenate([test_y[k, r + margin, c + margin] for k, (r, c) in enumerate(picks)])
    full = predict(unet, test_x)[0]
    mine = np.concatenate([full[k, r + margin, c + margin] for k, (r, c) in enumerate(picks)])
    out = dict(seed=seed, n=n, preset=preset, seconds=seconds,
               unet_error=metrics.pixel_error(mine, truth), unet_dice=metrics.dice(mine, truth))

    def score(net):
        net.eval()
        labels = np.concatenate([sliding_window_scores(net, images[TEST_SLICES[k]],
                                                       r + margin + lo, c + margin + lo).argmax(1)
                                 for k, (r, c) in enumerate(picks)])
        return {"error": metrics.pixel_error(labels, truth), "dice": metrics.dice(labels, truth)}

    probe = patch_dataset(x, y, patch_preset(preset).window, n=batch_size * 10, seed=seed)
    per_step = float("inf")                     # the fastest of two timings of 10 steps
    for _ in range(2):
        start = time.perf_counter()
        train(patch_preset(preset), probe, 10, seed, batch_size, lr, device)
        per_step = min(per_step, (time.perf_counter() - start) / 10)
    steps = [max(1, int(t * seconds / per_step)) for t in times]
    torch.manual_seed(seed)
    net = patch_preset(preset).to(device)
    samples = patch_dataset(x, y, net.window, n=min(steps[-1] * batch_size, 200_000), seed=seed)
    records = train(net, samples, steps[-1], seed, batch_size, lr, device, set(steps[:-1]),
                    score)
    records.append({"step": steps[-1], **score(net.cpu())})
    out["window"] = net.window
    out["patch"] = [dict(times=t, **r) for t, r in zip(times, records)]
    return out


def config_dict(config: Config) -> dict:
    """The config as plain JSON-able data (for the results file)."""
    return asdict(config)
