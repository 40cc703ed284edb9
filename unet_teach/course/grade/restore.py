"""Phase 5 of grading: put back any input file that student code changed while the batch ran.

The grader is not a sandbox: a kernel runs as the user who started the grader and can reach
a file by its absolute path. Every grade was computed from bytes read before the first kernel
started, so a rewritten file cannot change a grade; but it would change the next run. So the
batch keeps the bytes of every submission and source it read (:func:`snapshot`) and, at the
end, writes back whatever changed or disappeared (:func:`restore`).
"""

from __future__ import annotations

from pathlib import Path

from .read import MAX_NOTEBOOK_BYTES


def snapshot(paths) -> dict[Path, bytes | None]:
    """The bytes of each file (``None`` if unreadable or over the size limit).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.ipynb"
        >>> _ = path.write_text("{}")
        >>> kept = snapshot([path])
        >>> _ = path.write_text("vandalised")
        >>> restore(kept) == [path], path.read_text()
        (True, '{}')
    """
    snap = {}
    for path in paths:
        try:
            snap[Path(path)] = (Path(path).read_bytes()
                                if Path(path).stat().st_size <= MAX_NOTEBOOK_BYTES else None)
        except OSError:
            snap[Path(path)] = None
    return snap


def restore(snap: dict[Path, bytes | None]) -> list[Path]:
    """Write back every snapshotted file whose bytes changed (or that was deleted); return them."""
    restored = []
    for path, data in snap.items():
        if data is None:
            continue
        try:
            if path.read_bytes() == data:
                continue
        except OSError:
            pass                                       # deleted or unreadable: write it back
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            restored.append(path)
        except OSError:
            pass
    return restored
