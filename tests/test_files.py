"""unet_teach.files.write_atomic: the whole new file or the old one, never a part, no debris,
and the permissions a plain ``open(path, "w")`` gives."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from unet_teach.files import write_atomic


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writes_the_file_and_replaces_an_old_one(tmp_path):
    target = tmp_path / "results.json"
    assert write_atomic(target, lambda tmp: Path(tmp).write_text("first")) == target
    assert target.read_text() == "first"
    write_atomic(str(target), lambda tmp: Path(tmp).write_text("second"))
    assert target.read_text() == "second"
    assert _names(tmp_path) == ["results.json"]           # no temporary file left behind


def test_the_writer_gets_a_path_in_the_targets_folder(tmp_path):
    seen = []
    write_atomic(tmp_path / "a.bin", lambda tmp: (seen.append(tmp), Path(tmp).write_bytes(b"x")))
    assert Path(seen[0]).parent == tmp_path and Path(seen[0]).name != "a.bin"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_permissions_follow_the_umask_as_open_would(tmp_path, monkeypatch, umask):
    old = os.umask(umask)
    try:
        # the reference: what a plain open(path, "w") makes under this umask
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        # write_atomic must not read the umask by setting it (a process-wide change)
        monkeypatch.setattr(os, "umask", lambda *a: pytest.fail("os.umask was called"))
        write_atomic(tmp_path / "atomic.txt", lambda tmp: Path(tmp).write_text("x"))
        monkeypatch.undo()
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


@pytest.mark.parametrize("error", [ValueError("disk full"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_target_and_no_temporary_file(tmp_path, error):
    target = tmp_path / "model.pt"
    target.write_text("old weights")

    def half_then_fail(tmp):
        Path(tmp).write_text("half of the new")
        raise error

    with pytest.raises(type(error)):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old weights"
    assert _names(tmp_path) == ["model.pt"]


def test_a_failing_writer_creates_no_file_where_there_was_none(tmp_path):
    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "new.csv", lambda tmp: (_ for _ in ()).throw(RuntimeError()))
    assert _names(tmp_path) == []


def test_a_missing_folder_or_a_folder_as_target_is_refused_before_writing(tmp_path):
    with pytest.raises(FileNotFoundError, match="create it first"):
        write_atomic(tmp_path / "nowhere" / "x.txt", lambda tmp: Path(tmp).write_text("x"))
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_atomic(tmp_path, lambda tmp: Path(tmp).write_text("x"))
    assert _names(tmp_path) == []
