"""IPython start-up file for the book's test build: when a kernel exits, append one JSON line
to ``$UNET_TEACH_KERNEL_LOG`` with the CPU time it used (itself and the processes it waited
for), its torch thread count, and a SHA-1 of every cell it ran, which tells the test which
notebook the kernel executed. tests/test_book.py copies this file into a temporary
``IPYTHONDIR/profile_default/startup/`` for the build's kernels; nothing else loads it."""

import atexit
import hashlib
import json
import os
import resource
import sys
import time

_STARTED = time.monotonic()


def cell_hash(source: str) -> str:
    """A cell's SHA-1, blind to trailing spaces and blank lines at its ends (IPython's
    history and the notebook file may differ there)."""
    text = "\n".join(line.rstrip() for line in source.strip().splitlines())
    return hashlib.sha1(text.encode()).hexdigest()


def _record() -> None:
    from IPython import get_ipython

    shell = get_ipython()
    cells = shell.history_manager.input_hist_raw[1:] if shell is not None else []
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    torch = sys.modules.get("torch")
    record = {"cpu_s": me.ru_utime + me.ru_stime,
              "children_cpu_s": children.ru_utime + children.ru_stime,
              "threads": torch.get_num_threads() if torch is not None else 1,
              "wall_s": time.monotonic() - _STARTED,
              "cells": [cell_hash(c) for c in cells if c.strip()]}
    with open(os.environ["UNET_TEACH_KERNEL_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


if os.environ.get("UNET_TEACH_KERNEL_LOG"):
    atexit.register(_record)
