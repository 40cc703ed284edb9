"""``unet-teach predict``: segment your images with a trained model file.

For each input image, in order:

1. read it and scale it exactly as the training images were (the model file's
   ``normalization`` and input channels; RGB becomes grey for a grey model, with a note);
2. compute class probabilities with the overlap-tile strategy
   (:func:`unet_teach.infer.predict_probabilities`): an image up to ``infer.TILE`` px on its
   longer side in one pass, a larger one in tiles that overlap by ``infer.OVERLAP`` px (a padded
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

from ..infer import decide, predict_probabilities
from .. import profile
from .images import (COLOR_NOTES, IMAGE_SUFFIXES, PROB_SUFFIX, InputError, check_outputs,
                     list_images, load_image, write_mask, write_tiff)
from .modelfile import load_model

def pick_device(name: str | None) -> torch.device:
    """:func:`unet_teach.profile.pick_device`, its error an
    :class:`~unet_teach.app.images.InputError` (one line,
    exit status 2)."""
    try:
        return profile.pick_device(name)
    except ValueError as err:
        raise InputError(str(err)) from err


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
