"""The model file ``unet-teach train`` writes: the weights and everything needed to use them.

A model is useless without knowing what its classes mean in your files, how its input
was scaled, and where to cut its probabilities; so the file holds all of that next to the
weights, and ``predict`` needs nothing else. The file is a ``dict`` of tensors, numbers,
strings, lists and dicts only, and loads with ``torch.load(path, weights_only=True)``,
which cannot run code hidden in a file. It is written by :func:`contents` and
:func:`save_model`, and read by :func:`read_model_file` and :func:`load_model`. Its keys::

    format          "unet-teach model"
    version         2 (1 had no ``split``); this unet-teach reads 1 and 2, not newer ones
    unet_teach      the version of unet-teach that wrote it
    preset          "default" or a name of unet_teach.models.PRESETS
    model_args      the UNet's arguments, all of them: UNet(**model_args) rebuilds it
    model           the weights (model.state_dict())
    class_values    the mask value of each class: [0, 255] = class 0 is 0, class 1 is 255
    normalization   {"method": "percentile", "low": 1.0, "high": 99.8}
    threshold       2 classes: class 1 where its probability > threshold, chosen on the
                    validation part (0.5 without one): the lowest pixel error, or with
                    --regions the lowest Rand error within PIXEL_SLACK of the lowest
                    pixel error
    threshold_from  2 classes: how the threshold was chosen, in words
    split           --regions, validated: {"region_class": the class index of the
                    objects, "seed_level": SPLIT_LEVEL}; predict then cuts touching
                    regions apart at weak spots
    validation      when validated: the scores on the validation part (scored_pixels,
                    pixel_error, pixel_error_default, threshold, threshold_metric, and
                    with --regions rand_error, rand_error_unsplit, split_level)
    train           how it was trained:
      settings          the stored settings (unet_teach.app.settings.Settings, unset
                        ones left out); --resume continues with them
      budget            the total: {"minutes": M} or {"steps": N}
      step              steps done
      elapsed_s         wall time used, in seconds, over all runs
      finished          False in a checkpoint written while training
      schedule_position where the learning-rate schedule stands, 0..1
      images            the names of the training images
      validation_split  the validation part (unet_teach.app.validate.split)
      loss              the loss of every step
      threshold_info    the latest validation's scores (as ``validation``)
    optimizer       AdamW's moments, so that ``--resume`` continues where it stopped

The same file is the checkpoint: it is written every few minutes while training (with
``train.finished`` = False) and at the end.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import __version__
from ..models import PRESETS, UNet
from ..threshold import PIXEL_SLACK
from .images import NORMALIZATION, InputError

FORMAT = "unet-teach model"
#: The version written; 2 added ``split``. :func:`read_model_file` reads every version up
#: to this one and refuses a newer one.
VERSION = 2

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


def contents(model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, model_args: dict,
             class_values: list[int], train: dict, validation: dict,
             region_class: int | None = None) -> dict:
    """What a model file holds (the keys of the module's docstring; :func:`save_model` adds
    ``format`` and ``version``).

    ``train``: the ``train`` entry less ``threshold_info`` (its ``settings`` name the
    preset); ``validation``: the latest validation's scores
    (:func:`unet_teach.app.validate.score`), empty before the first; ``region_class``: the
    class index of ``--regions``.

    Example:
        >>> from unet_teach.models import UNet
        >>> net = UNet(1, 2, depth=1, base_width=2)
        >>> file = contents(net, torch.optim.AdamW(net.parameters()), model_args={},
        ...                 class_values=[0, 255], validation={},
        ...                 train={"settings": {"preset": "default"}})
        >>> file["threshold"], file["threshold_from"]
        (0.5, 'default (not validated)')
    """
    file = {"unet_teach": __version__, "preset": train["settings"]["preset"],
            "model_args": model_args, "model": weights(model), "class_values": class_values,
            "normalization": dict(NORMALIZATION),
            "train": {**train, "threshold_info": dict(validation)},
            "optimizer": optimizer_state(optimizer)}
    if len(class_values) == 2:
        file["threshold"] = float(validation.get("threshold", 0.5))
        file["threshold_from"] = (
            "default (not validated)" if "threshold" not in validation
            else f"lowest Rand error on the validation part, regions cut at weak spots, "
                 f"pixel error within {PIXEL_SLACK - 1:.0%} of its lowest"
            if validation.get("threshold_metric") == "rand_error"
            else "lowest pixel error on the validation part")
        if validation.get("split_level") is not None:
            file["split"] = {"region_class": region_class,
                             "seed_level": float(validation["split_level"])}
    if validation:
        file["validation"] = {k: v for k, v in validation.items() if k != "single_class"}
    return file


def save_model(path, file: dict) -> Path:
    """Write a model file (:func:`contents`) atomically, with its format and version."""
    from .images import write_atomic
    file = {"format": FORMAT, "version": VERSION, **file}
    return write_atomic(path, lambda tmp: torch.save(file, tmp))


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
                         f"{state['version']}; this one, {__version__}, reads versions 1 to "
                         f"{VERSION}); upgrade unet-teach to read it")
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
