"""The ``unet-teach`` command (unet_teach.cli), put together from its parts, and its ``info``."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys

import numpy
import pytest
import torch

import unet_teach
from unet_teach.cli import build_parser, main


def _rows(text: str) -> dict[str, str]:
    """``key  value`` lines -> dict (keys may contain single spaces)."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+(?: \S+)*)\s{2,}(.*)$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def _check_common(rows: dict[str, str]) -> None:
    assert rows["unet_teach"] == unet_teach.__version__
    assert rows["python"] == platform.python_version()
    assert rows["torch"] == torch.__version__
    assert rows["numpy"] == numpy.__version__
    assert rows["cuda available"] == str(torch.cuda.is_available())
    assert rows["device"] in {"cpu", "cuda", "cuda:0"} or rows["device"].startswith("cuda")
    assert rows["profile"] in {"fast", "full"}


def test_info_with_shared_data(capsys, monkeypatch, isbi_data_dir):
    monkeypatch.setenv("UNET_TEACH_DATA", str(isbi_data_dir))
    monkeypatch.setenv("UNET_TEACH_PROFILE", "fast")
    monkeypatch.setenv("UNET_TEACH_DEVICE", "cpu")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    _check_common(rows)
    assert rows["device"] == "cpu" and rows["profile"] == "fast"
    assert rows["data directory"] == str(isbi_data_dir)
    assert rows["isbi2012 files"] == "50/50 verified, 0 missing, 0 corrupt"
    assert "corrupt:" not in out


def test_info_profile_follows_env(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("UNET_TEACH_DATA", str(tmp_path))
    monkeypatch.setenv("UNET_TEACH_PROFILE", "full")
    monkeypatch.setenv("UNET_TEACH_DEVICE", "cpu")
    main(["info"])
    rows = _rows(capsys.readouterr().out)
    assert rows["profile"] == "full" and rows["device"] == "cpu"


def test_info_empty_dir_reports_missing(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("UNET_TEACH_DATA", str(tmp_path))
    assert main(["info"]) == 0
    rows = _rows(capsys.readouterr().out)
    _check_common(rows)
    assert rows["data directory"] == str(tmp_path)
    assert rows["isbi2012 files"] == "0/50 verified, 50 missing, 0 corrupt"


def test_info_reports_corrupt_files(capsys, monkeypatch, tmp_path, isbi_data_dir):
    src = isbi_data_dir / "isbi2012" / "train"
    dst = tmp_path / "isbi2012" / "train"
    shutil.copytree(src / "images", dst / "images")
    (dst / "labels").mkdir()
    shutil.copyfile(src / "labels" / "00.png", dst / "labels" / "00.png")
    bad = dst / "images" / "05.png"
    bad.write_bytes(bad.read_bytes()[:-1])
    monkeypatch.setenv("UNET_TEACH_DATA", str(tmp_path))
    main(["info"])
    out = capsys.readouterr().out
    assert _rows(out)["isbi2012 files"] == "25/50 verified, 24 missing, 1 corrupt"
    assert "corrupt: images/05.png" in out and "delete" in out


def test_info_subprocess(isbi_data_dir):
    env = {**os.environ, "UNET_TEACH_DATA": str(isbi_data_dir), "UNET_TEACH_DEVICE": "cpu"}
    env.pop("UNET_TEACH_PROFILE", None)
    proc = subprocess.run([sys.executable, "-m", "unet_teach", "info"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    _check_common(rows)
    assert rows["device"] == "cpu" and rows["profile"] == "fast"
    assert rows["data directory"] == str(isbi_data_dir)
    assert "50/50 verified" in rows["isbi2012 files"]


def test_cli_requires_a_command(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["frobnicate"])
    assert "info" in build_parser().format_help()


def _subcommands(register) -> set[str]:
    import argparse
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    return set(sub.choices)


def test_the_command_is_its_parts_subcommands():
    from unet_teach import bench
    from unet_teach.app import cli as app_cli
    from unet_teach.course import cli as course_cli
    app, course = _subcommands(app_cli.register), _subcommands(course_cli.register)
    assert app == {"train", "predict", "evaluate"}
    assert course == {"info", "release", "grade", "grade-merge"}      # no app commands
    whole = set(build_parser()._subparsers._group_actions[0].choices)
    assert whole == app | course | _subcommands(bench.register) and "bench" in whole


def test_the_installed_command_and_python_dash_m_run_the_same_main():
    import tomllib
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["unet-teach"] == "unet_teach.cli:main"
    assert '"unet_teach.cli"' in (root / "unet_teach" / "__main__.py").read_text()
    proc = subprocess.run([sys.executable, "-m", "unet_teach", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert all(name in proc.stdout for name in ("train", "grade-merge", "bench"))
