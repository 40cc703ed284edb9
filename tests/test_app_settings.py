"""``unet-teach train``'s options are declared once (unet_teach.app.settings).

The parser is built from the dataclass fields, so these tests compare the two both ways, and
the choices with the tables they come from (augment.AUGMENTS, app.train.LOSSES,
models.PRESETS), which are independent of the parser.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import fields, make_dataclass

import pytest

from unet_teach.app import cli as app_cli
from unet_teach.app import settings as s
from unet_teach.app.images import InputError

COMMAND_ARGUMENTS = {"help", "out", "images", "masks"}      # not training options


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-teach")
    sub = parser.add_subparsers(dest="command")
    app_cli.register(sub)
    return sub.choices["train"]


def option_actions(parser) -> dict:
    return {a.dest: a for a in parser._actions if a.dest not in COMMAND_ARGUMENTS}


def all_fields():
    return [f for cls in s.OPTIONS for f in fields(cls)]


def test_every_option_is_a_field_and_every_field_an_option():
    actions = option_actions(train_parser())
    by_name = {f.name: f for f in all_fields()}
    assert set(actions) == set(by_name)
    for name, action in actions.items():
        assert action.option_strings == [s.flag_of(by_name[name])], name
    # the command's own arguments are the three the app's cli names, and no more
    assert set(app_cli.TRAIN_ARGUMENTS) | {"help"} == {
        a.dest for a in train_parser()._actions} - set(by_name)


def test_defaults_types_and_choices_agree_with_the_fields_and_their_tables():
    from unet_teach.app.train import LOSSES
    from unet_teach.augment import AUGMENTS
    from unet_teach.models import PRESETS

    actions = option_actions(train_parser())
    for f in all_fields():
        action = actions[f.name]
        if isinstance(f.default, bool):
            # a flag: absent means the field's default
            assert action.default is f.default and action.nargs == 0, f.name
        else:
            # given or None ("not given": the default, or the stored setting on --resume)
            assert action.default is None, f.name
    tables = {"augment": list(AUGMENTS), "loss": list(LOSSES),
              "precision": ["auto", "fp32", "bf16"], "preset": ["default"] + sorted(n for n, a in PRESETS.items()
                                             if not a.get("pixel_shuffle"))}
    chosen = {name: list(a.choices) for name, a in actions.items() if a.choices is not None}
    assert chosen == tables
    # every field's default is one of its choices, and within its bounds
    s.check(s.Settings(), s.RunOptions())
    for name, names in tables.items():
        f = next(f for f in all_fields() if f.name == name)
        assert f.default is None or f.default in names, name
    types = {a.dest: a.type for a in actions.values() if a.type is not None}
    assert types == {"preset": str, "base_width": int, "augment": str, "loss": str,
                     "regions": int, "val_fraction": float, "seed": int, "crop": int,
                     "batch_size": int, "lr": float, "weight_decay": float, "minutes": float,
                     "steps": int, "checkpoint_minutes": float, "device": str,
                     "precision": str}


def test_help_shows_every_default():
    text = " ".join(train_parser().format_help().split())      # undo the line wrapping
    for f in all_fields():
        if isinstance(f.default, bool):
            continue                                           # a flag: off unless given
        assert f"default: {' '.join(s.default_text(f).split())})" in text, f.name
    # and the numbers as a reader would write them
    for shown in ("default: 192)", "default: 0.001)", "default: 0.1)", "default: 10)",
                  "default: flip)", "default: auto)", "default: 2)"):
        assert shown in text


def test_parsed_options_reach_train_by_name():
    args = train_parser().parse_args(["i", "m", "--out", "m.pt", "--crop", "64", "--quiet",
                                      "--weight-decay", "0.01", "--steps", "3"])
    given = {k: v for k, v in vars(args).items()
             if k not in (*app_cli.TRAIN_ARGUMENTS, "command", "func")}
    settings, run = s.resolve(given, None, "m.pt")
    assert (settings.crop, settings.weight_decay, settings.lr) == (64, 0.01, 1e-3)
    assert (run.steps, run.minutes, run.progress, run.checkpoint_minutes) == (3, None, False,
                                                                              2.0)
    with pytest.raises(SystemExit):                            # one budget only
        train_parser().parse_args(["i", "m", "--out", "m.pt", "--steps", "3", "--minutes",
                                   "1"])


def test_building_the_parser_imports_no_torch():
    code = ("import argparse, sys\n"
            "from unet_teach.app import cli\n"
            "parser = argparse.ArgumentParser()\n"
            "cli.register(parser.add_subparsers(dest='command'))\n"
            "print('torch' in sys.modules)\n"
            "parser.parse_args(['train', 'i', 'm', '--out', 'x', '--augment', 'warp'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "False", done.stderr
    # a value checked against the choices loads them, and the error names them
    assert done.returncode == 2
    assert "invalid choice: 'warp'" in done.stderr and "'elastic'" in done.stderr


def test_a_new_option_is_one_field():
    extra = make_dataclass("Extra", [("dropout", float, s.option(0.0, "dropout rate",
                                                                 metavar="P", at_least=0))])
    parser = argparse.ArgumentParser()
    s.add_options(parser, (extra,))
    assert parser.parse_args(["--dropout", "0.25"]).dropout == 0.25
    assert "dropout rate (default: 0)" in " ".join(parser.format_help().split())
    with pytest.raises(InputError, match="--dropout -1.0: must be at least 0"):
        s.check(extra(dropout=-1.0))


def test_resume_keeps_the_stored_settings_and_refuses_another():
    stored = {"preset": "default", "crop": 64, "lr": 0.01, "loss": "ce"}
    settings, _ = s.resolve({"crop": None, "lr": 0.01}, stored, "m.pt")
    assert (settings.crop, settings.lr, settings.augment) == (64, 0.01, "flip")
    with pytest.raises(InputError, match=r"m.pt: was trained with --crop 64; .* drop --crop "
                                         r"32"):
        s.resolve({"crop": 32}, stored, "m.pt")
    with pytest.raises(InputError, match="was trained without --regions"):
        s.resolve({"regions": 255}, stored, "m.pt")
    # run options are not stored: a resumed run may change them
    _, run = s.resolve({"precision": "fp32", "checkpoint_minutes": 5}, stored, "m.pt")
    assert (run.precision, run.checkpoint_minutes) == ("fp32", 5)


def test_loss_defaults_to_the_papers_weights_with_regions():
    assert s.resolve({}, None, "m.pt")[0].loss == "ce"
    assert s.resolve({"regions": 255}, None, "m.pt")[0].loss == "weighted"
    assert s.resolve({"regions": 255, "loss": "dice_ce"}, None, "m.pt")[0].loss == "dice_ce"


@pytest.mark.parametrize("values, message", [
    (s.Settings(val_fraction=1.0), "--val-fraction 1.0: must be at least 0 and below 1"),
    (s.Settings(lr=0.0), "--lr 0.0: must be more than 0"),
    (s.Settings(augment="warp"), "--augment warp: choose one of none, flip, elastic"),
    (s.Settings(preset="vgg"), "--preset vgg: choose one of default, keras, paper"),
    (s.RunOptions(steps=0), "--steps 0: must be at least 1"),
    (s.RunOptions(checkpoint_minutes=0), "--checkpoint-minutes 0: must be more than 0"),
])
def test_bad_values_name_the_option_and_what_it_takes(values, message):
    with pytest.raises(InputError, match=re.escape(message)):
        s.check(values)


def test_an_unknown_keyword_is_a_type_error(tmp_path):
    from unet_teach.app.train import train
    with pytest.raises(TypeError, match="unexpected keyword argument 'cropp'"):
        train(tmp_path, tmp_path, tmp_path / "m.pt", cropp=64)
