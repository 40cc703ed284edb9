"""The model file ``unet-teach train`` writes: the weights and everything needed to use them.

A model is useless without knowing what its classes mean in your files, how its input
was scaled, and where to cut its probabilities; so the file holds all of that next to the
weights, and ``predict`` needs nothing else. The file is a ``dict`` of tensors, numbers,
strings, lists and dicts only, and loads with ``torch.load(path, weights_only=True)``,
which cannot run code hidden in a file::

    format          "unet-teach model"; version: 1 (a newer version will not load here)
    preset          "default" or a name of unet_teach.models.PRESETS
    model_args      the UNet's arguments, all of them: UNet(**model_args) rebuilds it
    model           the weights (model.state_dict())
    class_values    the mask value of each class: [0, 255] = class 0 is 0, class 1 is 255
    normalization   {"method": "percentile", "low": 1.0, "high": 99.8}
    threshold       2 classes: class 1 where its probability > threshold (chosen on the
                    validation part for the lowest pixel error; 0.5 without one)
    threshold_from  how it was chosen
    validation      what the validation part was and the scores on it
    train           the settings, the budget, the step count, elapsed seconds, the
                    learning-rate schedule's position (0..1), whether it finished, the
                    training images and validation split, the loss of every step
    optimizer       AdamW's moments, so that ``--resume`` continues where it stopped

The same file is the checkpoint: it is written every few minutes while training (with
``train.finished`` = False) and at the end.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..models import PRESETS, UNet
from .images import InputError

FORMAT = "unet-teach model"
VERSION = 1

#: ``--preset default``: a padded U-Net small enough to train in minutes on a laptop CPU -
#: depth 4 (the paper's), 16..256 channels (the paper's / 4), same padding (output = input,
#: so any image size works), batch norm (trains fast at a high learning rate).
DEFAULT_PRESET = dict(in_channels=1, depth=4, base_width=16, padding="same", norm="batch")


def preset_names() -> list[str]:
    """``default`` and the segmentation presets of ``unet_teach.models.PRESETS``.

    Example:
        >>> preset_names()[:2]
        ['default', 'keras']
    """
    return ["default"] + sorted(n for n, a in PRESETS.items() if not a.get("pixel_shuffle"))


def _plain(value):
    """Tuples to lists, recursively: the model file holds lists, not tuples."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def model_args(preset: str, classes: int, base_width: int | None = None) -> dict:
    """The UNet arguments for ``preset`` with one score map per class.

    The input channels are the preset's (1 for ``default``, ``paper`` and ``keras``, 3 for
    ``pytorch`` and ``tf``); the output is ``classes`` maps whatever the preset had (the
    loss applies the softmax); ``base_width`` replaces the preset's when given. Arguments
    that are ``None`` are left out (they are UNet's defaults).

    Example:
        >>> model_args("default", 2)
        {'in_channels': 1, 'depth': 4, 'base_width': 16, 'padding': 'same', 'norm': 'batch', 'out_channels': 2}
    """
    if preset == "default":
        args = dict(DEFAULT_PRESET)
    elif preset in PRESETS and not PRESETS[preset].get("pixel_shuffle"):
        args = dict(PRESETS[preset])
    else:
        raise InputError(f"--preset {preset}: not a segmentation preset; choose one of "
                         f"{', '.join(preset_names())}")
    args["out_channels"] = int(classes)
    if base_width is not None:
        if base_width < 1:
            raise InputError(f"--base-width {base_width}: must be at least 1 (16 is the "
                             "default; more is slower and learns more)")
        args["base_width"] = int(base_width)
    return {k: _plain(v) for k, v in args.items() if v is not None}


def build_model(args: dict) -> UNet:
    """``UNet(**args)`` (``dropout`` may be a list, as stored)."""
    return UNet(**args)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The net inside ``DistributedDataParallel`` (``.module``) or ``torch.compile``
    (``._orig_mod``) wrappers: its ``state_dict`` has the plain UNet's keys, where the
    wrapper's would start with ``module.``, so one file format serves every way of training.

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> unwrap(net) is net
        True
    """
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def weights(model: torch.nn.Module) -> dict:
    """The ``model`` entry of a model file: the unwrapped net's state, on the CPU."""
    # contiguous: a net trained channels-last (bf16) is saved in the one standard layout
    return {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """The optimiser's per-parameter state only (moments and step counts), keyed by
    parameter index as a string: tensors and dicts, which ``weights_only`` loading
    accepts. The hyper-parameters are rebuilt from the training settings."""
    state = optimizer.state_dict()["state"]
    return {str(i): dict(s) for i, s in state.items()}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Put the moments saved by :func:`optimizer_state` back into ``optimizer``."""
    full = optimizer.state_dict()
    full["state"] = {int(i): s for i, s in state.items()}
    optimizer.load_state_dict(full)


def save_model(path, contents: dict) -> Path:
    """Write a model file atomically (a temporary file in the same folder, then a rename)."""
    from .images import write_atomic
    contents = {"format": FORMAT, "version": VERSION, **contents}
    return write_atomic(path, lambda tmp: torch.save(contents, tmp))


def read_model_file(path) -> dict:
    """Load and check a model file; an :class:`~unet_teach.app.images.InputError` says what is wrong with it.

    Example:
        >>> read_model_file("missing.pt")
        Traceback (most recent call last):
        ...
        unet_teach.app.images.InputError: missing.pt: no such file; train a model with `unet-teach train IMAGES MASKS --out missing.pt`
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; train a model with `unet-teach train "
                         f"IMAGES MASKS --out {path}`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        text = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise InputError(f"{path}: truncated or not a model file ({text}); copy the whole "
                         "file again, or train again") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        what = ("a checkpoint of unet_teach.train.save_checkpoint, without the class values "
                "and normalisation" if isinstance(state, dict) and "model" in state
                else "not written by `unet-teach train`")
        raise InputError(f"{path}: not a unet-teach model file ({what}); train one with "
                         "`unet-teach train`")
    if state.get("version", 0) > VERSION:
        raise InputError(f"{path}: written by a newer unet-teach (model file version "
                         f"{state['version']}, this one reads {VERSION}); upgrade unet-teach")
    missing = [k for k in ("model", "model_args", "class_values", "normalization", "preset")
               if k not in state]
    if missing:
        raise InputError(f"{path}: a damaged model file (no {', '.join(missing)}); train again")
    return state


def load_model(path, state: dict | None = None) -> tuple[UNet, dict]:
    """``(model, contents)`` from a model file, the weights checked against its preset.

    A file whose weights do not fit the net its ``model_args`` describe (edited, or
    weights of another preset put in) is an :class:`~unet_teach.app.images.InputError`.
    """
    state = state if state is not None else read_model_file(path)
    try:
        model = build_model(state["model_args"])
    except (TypeError, ValueError) as err:
        raise InputError(f"{path}: its model arguments do not build a UNet "
                         f"({_short(err)}); train again") from err
    own, saved = model.state_dict(), state["model"]
    wrong = ([k for k in own if k not in saved] + [k for k in saved if k not in own]
             + [k for k in own if k in saved and own[k].shape != saved[k].shape])
    if wrong and all(k.startswith("module.") for k in saved):
        raise InputError(f"{path}: its weights were saved from a DistributedDataParallel "
                         "wrapper (keys start with 'module.'); save model.module's weights, "
                         "as `unet-teach train` does under torchrun")
    if wrong:
        raise InputError(f"{path}: its weights do not fit its preset {state['preset']!r} "
                         f"({len(wrong)} tensors differ, e.g. {wrong[0]}); the file holds "
                         "another preset's weights - train again with `unet-teach train`")
    model.load_state_dict(saved)
    return model, state


def _short(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:120]
