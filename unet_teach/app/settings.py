"""The options of ``unet-teach train``, declared once.

Each option is a field of a dataclass, and the field carries everything about it: its
default, its type (from the annotation), its choices, metavar and help, and the bounds it
must keep. The ``train`` subcommand's argparse options are built from these fields
(:func:`add_options`), :func:`unet_teach.app.train.train` takes them as keywords and
resolves them (:func:`resolve`, :func:`check`), and the model file records the stored ones.
A new training option is one new field (and its test).

Two kinds:

* :class:`Settings` - what a training *is*: stored in the model file (``train.settings``);
  ``--resume`` continues with the stored ones and refuses a different one.
* :class:`RunOptions` - how this run goes: the budget, resume/force, checkpoints, the
  device, the precision, the progress bar. Not stored (a resumed run may differ).

This module imports no torch: the choices that live in torch-importing modules (the
presets, the augmentations, the losses) are read only when a value is checked or the help
is shown (``LazyChoices``), so building the ``unet-teach`` parser stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import operator
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields

from .images import InputError

#: ``--precision``'s choices (:func:`unet_teach.app.budget.resolve_precision` says what
#: "auto" means on a device).
PRECISIONS = ("auto", "fp32", "bf16")


def _table(module: str, name: str):
    """A loader of the names of ``module.name`` (a dict's keys, or a function's result)."""
    def names() -> list[str]:
        value = getattr(importlib.import_module(module), name)
        return list(value() if callable(value) else value)
    return names


class LazyChoices:
    """argparse ``choices`` read on first use from ``load()``: a value check or ``--help``.

    Example:
        >>> choices = LazyChoices(lambda: ["a", "b"])
        >>> "a" in choices, "c" in choices, ", ".join(choices)
        (True, False, 'a, b')
    """

    def __init__(self, load):
        self._load, self._names = load, None

    def _get(self) -> list:
        if self._names is None:
            self._names = list(self._load())
        return self._names

    def __contains__(self, value) -> bool:
        return value in self._get()

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def option(default, help: str, *, metavar: str | None = None, choices=None,
           default_text: str | None = None, flag: str | None = None, exclusive: str | None = None,
           at_least: float | None = None, more_than: float | None = None,
           below: float | None = None):
    """A dataclass field that is a command-line option.

    ``help`` leaves out the default (``--help`` adds "(default: X)" from ``default``, or
    ``default_text`` where the default is worked out later); ``choices`` is a list or a
    loader of one (``LazyChoices``); ``flag`` replaces ``--field-name`` (a ``True`` boolean
    is turned off by its flag, e.g. ``progress`` by ``--quiet``); options with the same
    ``exclusive`` name exclude each other; ``at_least``, ``more_than`` and ``below`` are the
    bounds :func:`check` enforces.

    Example:
        >>> option(4, "crops a step", at_least=1).metadata["at_least"]
        1
    """
    meta = dict(help=help, metavar=metavar, choices=choices, default_text=default_text,
                flag=flag, exclusive=exclusive, at_least=at_least, more_than=more_than,
                below=below)
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


@dataclass
class Settings:
    """What a training is: stored in the model file; ``--resume`` keeps them."""

    preset: str = option(
        "default", "the U-Net: 'default' = depth 4, base width 16, same padding, batch norm; "
        "or a segmentation preset of unet_teach.models.PRESETS", metavar="NAME",
        choices=_table("unet_teach.app.modelfile", "preset_names"))
    base_width: int | None = option(
        None, "channels at the first level, replacing the preset's", metavar="W",
        default_text="the preset's; 16 for default, fast on a CPU", at_least=1)
    augment: str = option(
        "flip", "none = random crops only; flip = + the 8 flips and quarter turns; "
        "elastic = + elastic deformation and intensity changes", metavar="NAME",
        choices=_table("unet_teach.augment", "AUGMENTS"))
    loss: str | None = option(
        None, "ce = cross-entropy; dice_ce = Dice + cross-entropy, for small objects; "
        "weighted = the U-Net paper's weight map, heaviest between two objects, which needs "
        "--regions", metavar="NAME", choices=_table("unet_teach.app.train", "LOSSES"),
        default_text="weighted with --regions, else ce")
    regions: int | None = option(
        None, "the mask value whose connected regions are the objects (255 for the ISBI "
        "labels' cells): the threshold is then chosen by the lowest Rand error on the "
        "validation part, not the pixel error, and predict cuts touching regions apart at "
        "weak spots", metavar="VALUE", default_text="none")
    val_fraction: float = option(
        0.1, "held out to choose the threshold: that share of the images (with 4 or more), "
        "else of every image's rows; 0 = none", metavar="F", at_least=0, below=1)
    seed: int = option(0, "seeds the split, the weights and the crops", metavar="S")
    crop: int = option(192, "side of the training crops", metavar="PX", at_least=1)
    batch_size: int = option(4, "crops per step, per process under torchrun", metavar="B",
                             at_least=1)
    lr: float = option(1e-3, "AdamW's peak learning rate, decayed by a cosine over the "
                       "budget", metavar="LR", more_than=0)
    weight_decay: float = option(1e-4, "AdamW's weight decay", metavar="WD", at_least=0)


@dataclass
class RunOptions:
    """How this run goes: not stored, so a resumed training may change them."""

    minutes: float = option(
        10.0, "wall time from the command's start, loading and validation included; with "
        "--resume, the new total", metavar="M", exclusive="budget", more_than=0)
    steps: int | None = option(
        None, "train this many steps instead; with --resume, the new total", metavar="N",
        exclusive="budget", default_text="none, --minutes counts", at_least=1)
    resume: bool = option(False, "continue the training in --out for the time (or steps) "
                          "that remain")
    force: bool = option(False, "overwrite --out, starting over")
    checkpoint_minutes: float = option(2.0, "write --out this often while training",
                                       metavar="M", more_than=0)
    device: str | None = option(None, "cpu, cuda, cuda:1, ...", metavar="DEVICE",
                                default_text="$UNET_TEACH_DEVICE, else CUDA when present")
    precision: str = option(
        "auto", "auto = bf16 autocast where the hardware computes bf16 natively (recent "
        "NVIDIA GPUs; CPUs with AMX or AVX-512 BF16, about twice as fast there), else fp32",
        metavar="NAME", choices=PRECISIONS)
    progress: bool = option(True, "no progress bar", flag="--quiet")


OPTIONS = (Settings, RunOptions)


def flag_of(f) -> str:
    """The command-line flag of a field.

    Example:
        >>> [flag_of(f) for f in fields(RunOptions)][-2:]
        ['--precision', '--quiet']
    """
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _type(cls, f):
    """The field's type from its annotation: ``int | None`` -> ``int``."""
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def default_text(f) -> str:
    """What ``--help`` says a field's default is.

    Example:
        >>> [default_text(f) for f in fields(Settings)][-2:]
        ['0.001', '0.0001']
    """
    if "default_text" in f.metadata:
        return f.metadata["default_text"]
    return f"{f.default:g}" if isinstance(f.default, float) else str(f.default)


def _choices(f):
    found = f.metadata.get("choices")
    return LazyChoices(found) if callable(found) else found


def add_options(parser: argparse.ArgumentParser, classes=OPTIONS) -> None:
    """Add one argparse option per field of ``classes`` (default: both kinds).

    The options default to ``None`` (booleans to their field's default), so that
    :func:`resolve` knows which were given: a resumed training takes the others from the
    model file. The help ends with the default (and the choices).

    Example:
        >>> p = argparse.ArgumentParser()
        >>> add_options(p)
        >>> args = p.parse_args(["--crop", "64", "--quiet"])
        >>> args.crop, args.progress, args.lr
        (64, False, None)
    """
    groups = {}
    for cls in classes:
        for f in fields(cls):
            meta, kind = f.metadata, _type(cls, f)
            text = meta["help"].replace("%", "%%")
            where = parser
            if "exclusive" in meta:
                if meta["exclusive"] not in groups:
                    groups[meta["exclusive"]] = parser.add_mutually_exclusive_group()
                where = groups[meta["exclusive"]]
            if kind is bool:
                where.add_argument(flag_of(f), dest=f.name, help=text,
                                   action="store_false" if f.default else "store_true")
                continue
            choices = _choices(f)
            tail = "one of %(choices)s; " if choices is not None else ""
            where.add_argument(flag_of(f), dest=f.name, type=kind, default=None,
                               choices=choices,
                               # a metavar, so that building the parser reads no choices
                               metavar=meta.get("metavar") or (choices and "NAME"),
                               help=f"{text} ({tail}default: "
                                    f"{default_text(f).replace('%', '%%')})")


def defaults(cls) -> dict:
    """The fields' defaults.

    Example:
        >>> defaults(Settings)["crop"]
        192
    """
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def resolve(given: dict, stored: dict | None, out) -> tuple[Settings, RunOptions]:
    """The settings and run options of a training from the keywords ``given`` to ``train``.

    ``None`` means "not given": a setting then comes from ``stored`` (the settings of the
    model file a resumed training continues) or its default, and giving one that differs
    from the stored one is an error. A name that is no option is a ``TypeError``, as for
    any function. ``minutes`` and ``steps`` stay as given (``None`` if not): the budget is
    resolved with the stored one (:func:`unet_teach.app.inputs.budget_spec`).

    Example:
        >>> s, run = resolve({"crop": 64, "regions": 255}, None, "m.pt")
        >>> s.crop, s.loss, run.minutes, run.precision
        (64, 'weighted', None, 'auto')
    """
    names = {f.name for cls in OPTIONS for f in fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"train() got an unexpected keyword argument {unknown[0]!r}")
    known = {f.name for f in fields(Settings)}
    settings = {**defaults(Settings), **{k: v for k, v in (stored or {}).items() if k in known}}
    for key in known:
        value = given.get(key)
        if value is None:
            continue
        if stored is not None and stored.get(key) != value:
            flag = "--" + key.replace("_", "-")
            was = (f"with {flag} {stored[key]}" if stored.get(key) is not None
                   else f"without {flag}")
            raise InputError(f"{out}: was trained {was}; --resume continues that training - "
                             f"drop {flag} {value}, or start over with --force instead of "
                             "--resume")
        settings[key] = value
    if settings["loss"] is None:
        # told what the objects are, train weights the thin background between two of them,
        # as the paper does: that is where a merge starts
        settings["loss"] = "weighted" if settings["regions"] is not None else "ce"
    run = {k: (given.get(k) if given.get(k) is not None else v)
           for k, v in defaults(RunOptions).items()}
    run.update(minutes=given.get("minutes"), steps=given.get("steps"))
    return Settings(**settings), RunOptions(**run)


#: The bounds a field may declare: its metadata key, how the error names it, the test.
BOUNDS = {"at_least": ("at least", operator.ge), "more_than": ("more than", operator.gt),
          "below": ("below", operator.lt)}


def check(*options) -> None:
    """Raise an :class:`~unet_teach.app.images.InputError` for a value out of its field's choices or bounds.

    Example:
        >>> check(Settings(crop=0))
        Traceback (most recent call last):
        ...
        unet_teach.app.images.InputError: --crop 0: must be at least 1
    """
    for values in options:
        for f in fields(values):
            value, meta, flag = getattr(values, f.name), f.metadata, flag_of(f)
            if value is None or isinstance(value, bool):
                continue
            choices = _choices(f)
            if choices is not None and value not in choices:
                raise InputError(f"{flag} {value}: choose one of {', '.join(choices)}")
            bounds = [(f"{word} {meta[key]:g}", test(value, meta[key]))
                      for key, (word, test) in BOUNDS.items() if key in meta]
            if not all(ok for _, ok in bounds):
                raise InputError(f"{flag} {value}: must be "
                                 f"{' and '.join(text for text, _ in bounds)}")


def stored(settings: Settings) -> dict:
    """The ``train.settings`` entry of the model file: the settings that are set.

    Example:
        >>> sorted(stored(Settings()))[:3]
        ['augment', 'batch_size', 'crop']
    """
    return {k: v for k, v in asdict(settings).items() if v is not None}

