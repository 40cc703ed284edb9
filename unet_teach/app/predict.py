"""``unet-teach predict``: segment your images with a trained model file.

For each input image, in order:

1. read it and scale it exactly as the training images were (the model file's
   ``normalization`` and input channels; RGB becomes grey for a grey model, with a note);
2. compute class probabilities with the overlap-tile strategy
   (:func:`unet_teach.infer.predict_tiled`): an image up to ``TILE`` px on its longer side
   in one pass, a larger one in ``TILE`` px tiles that overlap by ``OVERLAP`` px (a padded
   net sees zeros past a tile's edge, so the pixels near it are dropped); with ``tta``,
   averaged over the 8 flips and quarter turns (:data:`unet_teach.augment.DIHEDRAL`);
3. decide each pixel's class - for 2 classes, class 1 where its probability is above the
   threshold (the model's, chosen on its validation images, unless one is given), and for a
   model trained with ``--regions`` that chose it on validation, the regions cut apart where
   they touch only through a weak spot (:func:`unet_teach.infer.split_regions`); for more
   classes, the most probable class - and write it in the training masks' own values
   (``class_values``: a model trained on 0/255 masks writes 0/255) as ``OUT/<stem>.png``;
4. write the probabilities as float32 ``OUT/<stem>_prob.tif``: for 2 classes the
   probability of class 1 (the larger mask value), ``H x W``; for K > 2 classes all K maps,
   ``K x H x W``, in the order of ``class_values``.

Every input is read and every output name checked before the first file is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..augment import DIHEDRAL, flip_rotate, invert_flip_rotate
from ..infer import predict_tiled, split_regions
from ..models import output_size
from ..profile import default_device
from .images import (COLOR_NOTES, IMAGE_SUFFIXES, PROB_SUFFIX, InputError, check_outputs,
                     list_images, load_image, write_mask, write_tiff)
from .modelfile import load_model

#: Tile side for images larger than this (same-padding nets), and the overlap of tiles.
TILE, OVERLAP = 512, 64
#: The input tile for valid-padding nets (the paper's): 572 -> 388 output pixels.
VALID_TILE = 572


def pick_device(name: str | None) -> torch.device:
    """``--device`` (``cpu``, ``cuda``, ``cuda:1``, ...), else the package's default device
    (``$UNET_TEACH_DEVICE``, else CUDA when present); an unusable one is an InputError."""
    try:
        device = torch.device(name) if name else default_device()
    except (RuntimeError, ValueError) as err:
        raise InputError(f"--device {name or ''}: {str(err).splitlines()[0]}; use cpu, or "
                         "cuda on a machine with a GPU") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available here; use --device cpu")
    return device


def input_for(model, out: int) -> tuple[int, int]:
    """``(input, output)``: the smallest input side the net takes whose output side is at
    least ``out`` (equal for a same-padding net, 184 px more for the paper's valid one).

    Example:
        >>> from unet_teach.models import UNet
        >>> input_for(UNet(1, 2, depth=4, base_width=4), 100)
        (112, 112)
        >>> input_for(UNet(1, 2, depth=4, base_width=4, padding="valid"), 100)
        (284, 100)
    """
    size = out
    while (output_size(size, model.depth, model.padding) or 0) < out:
        size += 1
    return size, output_size(size, model.depth, model.padding)


def tile_for(model, shape) -> tuple[int | None, int | None]:
    """``(tile, overlap)`` for :func:`unet_teach.infer.predict_tiled` on an image of
    ``shape`` (``(..., H, W)``); ``(None, None)`` = the whole image in one tile, the default
    overlap for ``None``.

    A same-padding net takes an image up to ``TILE`` px in one pass, larger ones in ``TILE``
    px tiles overlapping by ``OVERLAP``. A valid-padding net's tiles are seamless: one tile
    whose output covers the image, at most ``VALID_TILE`` px of input (and at least an
    output of ``2**depth`` px, which tiles need to stay on the pooling grid).

    Example:
        >>> from unet_teach.models import UNet
        >>> net = UNet(1, 2, depth=4, base_width=4)
        >>> tile_for(net, (300, 200)), tile_for(net, (2000, 900))
        ((None, None), (512, 64))
        >>> tile_for(UNet(1, 2, depth=4, base_width=4, padding="valid"), (64, 64))
        (252, None)
    """
    longest = max(shape[-2:])
    if model.padding == "same":
        return (None, None) if longest <= TILE else (TILE, OVERLAP)
    largest = output_size(input_for(model, output_size(VALID_TILE, model.depth,
                                                       model.padding) or 1)[0],
                          model.depth, model.padding)
    return input_for(model, max(2 ** model.depth, min(longest, largest)))[0], None


@torch.no_grad()
def predict_probabilities(model, image: np.ndarray, tta: bool = False,
                          device: torch.device | None = None) -> np.ndarray:
    """Class probabilities ``K x H x W`` (float32) of one normalised ``C x H x W`` image.

    With ``tta`` the image is flipped and turned 8 ways (``DIHEDRAL``), each prediction
    turned back (``invert_flip_rotate``) and the 8 averaged.

    Example:
        >>> from unet_teach.models import UNet
        >>> net = UNet(1, 2, depth=2, base_width=4)
        >>> predict_probabilities(net, np.zeros((1, 20, 30), np.float32), tta=True).shape
        (2, 20, 30)
    """
    if not tta:
        tile, overlap = tile_for(model, image.shape)
        return predict_tiled(model, image, tile, overlap, device=device)[1]
    total = None
    for k, flip in DIHEDRAL:
        turned, _ = flip_rotate(image, None, k, flip)
        tile, overlap = tile_for(model, turned.shape)
        probs = invert_flip_rotate(predict_tiled(model, turned, tile, overlap,
                                                 device=device)[1], k, flip)
        total = probs if total is None else total + probs
    return (total / len(DIHEDRAL)).astype(np.float32)


def decide(probs: np.ndarray, threshold: float | None,
           split: tuple[int, float] | None = None) -> np.ndarray:
    """Class indices ``H x W`` from ``K x H x W`` probabilities: for two classes class 1
    where its probability is above ``threshold``, else the most probable class.

    ``split = (region class, seed level)`` (two classes and a threshold): then the region
    class's connected regions are also cut apart where they touch only through a weak
    spot (:func:`unet_teach.infer.split_regions`, cores above the seed level).

    Example:
        >>> decide(np.array([[[0.6, 0.3]], [[0.4, 0.7]]]), 0.35).tolist()
        [[1, 1]]
    """
    if probs.shape[0] == 2 and threshold is not None:
        if split is None:
            return (probs[1] > threshold).astype(np.int64)
        region, level = split
        # the region class's own probability, and the cut that gives the same pixels
        p, cut = (probs[1], threshold) if region == 1 else (1 - probs[1], 1 - threshold)
        inside = split_regions(p, cut, max(level, cut))
        return np.where(inside, region, 1 - region).astype(np.int64)
    return probs.argmax(axis=0).astype(np.int64)


def split_of(state: dict) -> tuple[int, float] | None:
    """``(region class, seed level)`` of a model file that chose to split regions on its
    validation part (``train --regions``), else None."""
    chosen = state.get("split")
    return (int(chosen["region_class"]), float(chosen["seed_level"])) if chosen else None


def _inputs(inputs) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for item in inputs:
        path = Path(item)
        files = (list_images(path, "images").values() if path.is_dir() else [path])
        for file in files:
            if not file.exists():
                raise InputError(f"{file}: no such file or folder")
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"{file}: not a PNG, TIFF or JPEG image; pass image files "
                                 "or folders of them")
            if file.stem in found and found[file.stem] != file:
                raise InputError(f"{file}: {found[file.stem]} has the same name, and both "
                                 f"would be written to {file.stem}.png; predict them into "
                                 "different --out folders")
            found[file.stem] = file
    if not found:
        raise InputError("no input images given; pass image files or folders")
    return found


def predict(model_path, inputs, out, *, tta: bool = False, threshold: float | None = None,
            force: bool = False, device: str | None = None, progress: bool = True,
            split: bool = True) -> int:
    """Segment ``inputs`` (files and folders) into ``out``; return the exit status.

    Writes ``out/<stem>.png`` (labels in the training masks' values) and
    ``out/<stem>_prob.tif`` for every input; see the module's description. ``split=False``
    leaves out the cutting of touching regions that a model trained with ``--regions`` may
    have chosen (``--no-split``).
    """
    model, state = load_model(model_path)
    values = np.asarray(state["class_values"], dtype=np.int64)
    k = len(values)
    if threshold is not None:
        if k != 2:
            raise InputError(f"--threshold: {model_path} has {k} classes, and a threshold "
                             "decides between 2; drop it (the most probable class is taken)")
        if not 0 < threshold < 1:
            raise InputError(f"--threshold {threshold}: a probability between 0 and 1")
    cut = (threshold if threshold is not None else float(state.get("threshold", 0.5))
           ) if k == 2 else None
    files = _inputs(inputs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; --out is the folder for the "
                         "predictions")
    targets = {stem: (out / f"{stem}.png", out / f"{stem}{PROB_SUFFIX}.tif") for stem in files}
    check_outputs([p for pair in targets.values() for p in pair], force)
    channels = int(state["model_args"].get("in_channels", 1))
    # Read everything once before writing anything: a bad file fails the run up front.
    # Small sets stay in memory for the second pass.
    cache, notes, kept = {}, set(), 0
    for stem, file in files.items():
        image, note = load_image(file, channels, state["normalization"])
        notes.add(note)
        if kept + image.nbytes < 2**30:
            cache[stem] = image
            kept += image.nbytes
    for note in sorted(n for n in notes if n):
        print(f"note: {COLOR_NOTES[note]}", file=sys.stderr)
    if not state.get("train", {}).get("finished", True):
        print(f"note: {model_path} is a checkpoint of an unfinished training; `unet-teach "
              "train ... --resume` finishes it", file=sys.stderr)
    if values.max() < 16 and k == 2:
        print(f"note: the masks' values are {values.tolist()}, so the PNGs look black in most "
              "viewers; their values are right (stretch the contrast to see them)",
              file=sys.stderr)

    device = pick_device(device)
    model.to(device).eval()
    out.mkdir(parents=True, exist_ok=True)
    single = []
    for stem, file in tqdm(files.items(), desc="predicting", unit="image",
                           disable=not progress, file=sys.stderr):
        image = cache.pop(stem, None)
        if image is None:
            image, _ = load_image(file, channels, state["normalization"])
        probs = predict_probabilities(model, image, tta=tta, device=device)
        labels = values[decide(probs, cut, split_of(state) if split else None)]
        png, tif = targets[stem]
        write_mask(png, labels)
        write_tiff(tif, probs[1] if k == 2 else probs)
        if np.all(labels == labels.flat[0]):
            single.append(f"{stem} (all {labels.flat[0]})")
    if single:
        print(f"note: one value everywhere in {', '.join(single[:5])}"
              f"{' ...' if len(single) > 5 else ''}; if that is wrong, check the model on "
              "labelled images with `unet-teach evaluate`, and train longer",
              file=sys.stderr)
    how = (f"class {values[1]} where its probability > {cut:g}" if k == 2
           else "the most probable class")
    if k == 2 and split and split_of(state):
        region, level = split_of(state)
        how += (f"; regions of {values[region]} cut apart where they touch through a weak "
                f"spot (cores above {level:g})")
    print(f"wrote {len(files)} prediction(s) to {out}: <name>.png ({how}), "
          f"<name>{PROB_SUFFIX}.tif (probabilities){', test-time augmented' if tta else ''}")
    return 0
