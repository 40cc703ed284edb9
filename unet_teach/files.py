"""Writing a file atomically: a reader sees the old file or the whole new one, never a part.

A program killed half-way through ``open(path, "w")`` leaves half a file: a checkpoint that
will not load, a results file that is not JSON. :func:`write_atomic` writes a temporary file
next to the target instead, flushes it to the disk, and renames it over the target
(``os.replace``: atomic within one file system, which is why the temporary file lies in the
target's own folder). Every file the package writes for later (checkpoints, benchmark
results, the app's masks and reports, the grader's templates) goes through it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Callable


def _create_temporary(folder: Path, name: str) -> str:
    """Create an empty ``.name.<random>.tmp`` in ``folder``, readable as ``open(path, "w")``
    would make it: mode 0o666 less the umask, applied by the operating system itself (no
    need to read the umask, which only ``os.umask``, a process-wide change, can)."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:                 # another writer drew the same name
            continue
        return str(tmp)
    raise FileExistsError(f"could not create a temporary file in {folder}: 100 names taken; "
                          "remove the stale .*.tmp files there")


def _fsync(path: str, directory: bool = False) -> None:
    """Flush ``path``'s data (or a folder's entries) from the operating system to the disk."""
    # POSIX syncs through any descriptor; Windows only through one open for writing
    mode = os.O_RDONLY if os.name == "posix" or directory else os.O_WRONLY
    try:
        fd = os.open(path, mode | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:          # a folder cannot be opened on Windows: nothing to flush
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:      # some file systems refuse to sync a folder; a file must sync
            raise
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(temporary path)``, then put the temporary file in ``path``'s place.

    The temporary file lies in ``path``'s folder (a rename is atomic only within one file
    system), gets the permissions a plain ``open(path, "w")`` would give a new file
    (``0o666`` less the umask; the process's umask is never changed), and is flushed to the
    disk before the rename. If ``write`` fails, or the run is interrupted (``Ctrl-C``
    included), the temporary file is removed and ``path`` is left as it was: the old file,
    or no file.

    Args:
        path: the file to write; its folder must exist.
        write: writes the whole content to the path it is given (a ``str``), e.g.
            ``lambda tmp: torch.save(state, tmp)``; it may open the file as often as it
            likes. Its return value is ignored.

    Returns:
        ``path`` as a ``Path``.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "x.txt"
        >>> write_atomic(p, lambda tmp: Path(tmp).write_text("hi")).read_text()
        'hi'
        >>> sorted(f.name for f in p.parent.iterdir())      # no temporary file left
        ['x.txt']
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; choose a file name to write to")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} does not exist; create it first "
                                "(Path(...).mkdir(parents=True))")
    tmp = _create_temporary(path.parent, path.name)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:                       # KeyboardInterrupt too: no debris
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync(str(path.parent), directory=True)    # and the rename itself survives a crash
    return path
