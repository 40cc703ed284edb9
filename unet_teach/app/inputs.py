"""What ``unet-teach train`` is asked to do and given, checked before anything is written.

The first two steps of :func:`unet_teach.app.train.train`; every rank of a ``torchrun``
launch takes them, and none writes a file before all have passed them:

1. :func:`check_request` - the options (:mod:`unet_teach.app.settings`) and the model file
   in ``--out``: ``--resume`` needs one with a training to continue (its stored settings
   win, and a different one is an error) and a budget left; without ``--resume``, ``--out``
   must not exist unless ``--force``.
2. :func:`load_data` - every image and mask pair read and checked
   (:mod:`unet_teach.app.images`), the classes found from the masks' values, and the
   validation part held out (:func:`unet_teach.app.validate.split`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .images import (NORMALIZATION, InputError, check_same_size, class_values, load_image,
                     pair_files, read_mask)
from .modelfile import load_model, model_args, read_model_file
from .settings import RunOptions, Settings, check, defaults, resolve
from .validate import split


@dataclass
class Request:
    """A training asked for, checked: where it goes, its settings and run options, its
    total budget (``{"minutes": M}`` or ``{"steps": N}``) and, with ``--resume``, the
    model file it continues (``stored``) and the model loaded from it."""

    out: Path
    settings: Settings
    run: RunOptions
    budget: dict
    stored: dict | None = None
    model: torch.nn.Module | None = None

    @property
    def old(self) -> dict | None:
        """The ``train`` entry of the resumed model file, or ``None``."""
        return self.stored["train"] if self.stored else None


def _stored_training(out: Path, resume: bool, force: bool) -> dict | None:
    """The model file ``--resume`` continues (checked), else ``None`` once it is sure that
    ``--out`` may be written."""
    if resume:
        if not out.exists():
            raise InputError(f"{out}: no such file, so there is nothing to resume; drop "
                             "--resume to start a training")
        state = read_model_file(out)
        if "train" not in state or "optimizer" not in state:
            raise InputError(f"{out}: holds no training state to resume; start over with "
                             "--force instead of --resume")
        return state
    if out.exists() and not force:
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
    return None


def budget_spec(minutes, steps, stored: dict | None, out) -> dict:
    """The total budget: ``{"minutes": M}`` or ``{"steps": N}`` from the options given,
    else the stored one (``--resume``), else ``minutes``' default.

    Example:
        >>> budget_spec(None, None, None, "m.pt"), budget_spec(None, 5, {"steps": 2}, "m.pt")
        ({'minutes': 10.0}, {'steps': 5})
    """
    if stored is None:
        return ({"steps": steps} if steps is not None
                else {"minutes": minutes or defaults(RunOptions)["minutes"]})
    if minutes is None and steps is None:
        return dict(stored)
    kind, value = ("steps", steps) if steps is not None else ("minutes", minutes)
    if kind not in stored:
        old = next(iter(stored))
        raise InputError(f"{out}: was trained for a number of {old}; --resume continues with "
                         f"--{old} (the new total), not --{kind}")
    return {kind: value}


def check_request(out, options: dict) -> Request:
    """Step 1: the options (:func:`unet_teach.app.settings.resolve` and ``check``) and the
    model file in ``out``: ``--resume`` needs one with a training to continue and a budget
    left; without it, ``out`` must not exist unless ``--force``.

    Example:
        >>> request = check_request("new.pt", {"crop": 64, "steps": 5})
        >>> request.settings.crop, request.budget, request.stored
        (64, {'steps': 5}, None)
        >>> check_request("new.pt", {"resume": True})
        Traceback (most recent call last):
        ...
        unet_teach.app.images.InputError: new.pt: no such file, so there is nothing to resume; drop --resume to start a training
    """
    out = Path(out)
    if options.get("minutes") is not None and options.get("steps") is not None:
        raise InputError("--minutes and --steps: give one budget, not both")
    resume, force = bool(options.get("resume")), bool(options.get("force"))
    if resume and force:
        raise InputError("--resume continues the training in --out and --force starts it "
                         "over; give one of them")
    state = _stored_training(out, resume, force)
    old = state["train"] if state else None
    settings, run = resolve(options, old["settings"] if old else None, out)
    check(settings, run)
    if settings.loss == "weighted" and settings.regions is None:
        raise InputError("--loss weighted: weights the background between objects, so it "
                         "needs --regions VALUE, the mask value of the objects (255 for the "
                         "ISBI labels' cells)")
    budget = budget_spec(run.minutes, run.steps, old["budget"] if old else None, out)
    if old:
        kind, total = next(iter(budget.items()))
        used = old["step"] if kind == "steps" else old["elapsed_s"] / 60
        if used >= total or (old["finished"] and budget == old["budget"]):
            raise InputError(f"{out}: already trained for {total:g} {kind}; to train longer, "
                             f"pass a larger total --{kind} with --resume")
    request = Request(out, settings, run, budget, state)
    if state:
        request.model, _ = load_model(out, state)
    return request


# ------------------------------------------------------------------------ 2. the data

@dataclass
class Data:
    """The training data, checked: images (``C x H x W``, normalised) and targets
    (``H x W`` class indices) by name, the mask value of each class, the notes met while
    reading, the validation split, the training part (``train_images``, ``train_masks``),
    the validation ``parts`` (``(image, target, rows or None)``) and the class index of
    ``--regions``."""

    images: dict
    targets: dict
    values: list
    notes: set
    val: dict
    region_class: int | None = None
    train_images: list = field(default_factory=list)
    train_masks: list = field(default_factory=list)
    parts: list = field(default_factory=list)

    def held_out(self, stem: str) -> bool:
        """Whether image ``stem`` is a validation image (not trained on)."""
        return self.val["mode"] == "images" and stem in self.val["images"]


def load_data(images, masks, request: Request) -> Data:
    """Step 2: read and check every pair, find the classes, hold out the validation part.
    With ``--resume``, the classes and the validation images must be the stored ones.

    Example:
        >>> load_data("no-images", "no-masks", check_request("new.pt", {}))
        Traceback (most recent call last):
        ...
        unet_teach.app.images.InputError: no-images: no such folder; pass the folder that holds the images
    """
    old, settings = request.old, request.settings
    args = (request.stored["model_args"] if request.stored
            else model_args(settings.preset, 2, settings.base_width))
    pairs = pair_files(images, masks)
    files = {stem: mask_file for stem, _, mask_file in pairs}
    mask_arrays = {stem: read_mask(mask_file) for stem, _, mask_file in pairs}
    values = class_values(mask_arrays, files)
    image_arrays, notes = {}, set()
    for stem, image_file, mask_file in pairs:
        image, note = load_image(image_file, int(args.get("in_channels", 1)), NORMALIZATION)
        check_same_size(image_file, image, mask_file, mask_arrays[stem])
        image_arrays[stem], notes = image, notes | {note}
    if request.stored and request.stored["class_values"] != values:
        raise InputError(f"{masks}: the masks hold the values {values}, but {request.out} was "
                         f"trained on {request.stored['class_values']}; resume with the same "
                         "masks, or start over with --force")
    region_class = None
    if settings.regions is not None:
        if len(values) != 2 or settings.regions not in values:
            raise InputError(f"--regions {settings.regions}: must be one of the masks' two "
                             f"values, and they hold {values}")
        region_class = values.index(settings.regions)
    targets = {s: np.searchsorted(values, m).astype(np.int64) for s, m in mask_arrays.items()}
    val = split(list(files), settings.val_fraction, settings.seed)
    if old and old["validation_split"] != val:
        raise InputError(f"{images}: the images are not those {request.out} was trained on "
                         "(the validation images differ); resume with the same folders, or "
                         "start over with --force")
    data = Data(image_arrays, targets, values, notes, val, region_class)
    for stem, image in image_arrays.items():
        target = targets[stem]
        if data.held_out(stem):
            data.parts.append((image, target, None))
            continue
        if val["mode"] == "rows":
            keep = max(1, round(target.shape[0] * (1 - val["fraction"])))
            data.parts.append((image, target, slice(keep, None)))
            image, target = image[:, :keep], target[:keep]
        data.train_images.append(image)
        data.train_masks.append(target)
    return data
