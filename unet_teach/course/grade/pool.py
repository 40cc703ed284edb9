"""Run the grading jobs in worker processes, a few at a time, and never leave one behind.

Each job runs :func:`~unet_teach.course.grade.run.worker` in its own *spawned* process (a
fresh interpreter: nothing of the grader's state leaks into it). A worker that dies, or
still runs ``hard_limit`` seconds after it started (its own time limits failed), is killed
together with its kernel, and its job gets a result that says so. Ctrl-C, or any error,
kills every worker still running before it propagates.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing.connection import wait
from typing import Callable

from .run import worker


def _kill(proc, kernel_pid) -> None:
    if kernel_pid:
        try:
            os.killpg(kernel_pid, signal.SIGKILL)      # the kernel leads its own session
        except (OSError, ProcessLookupError):
            pass
    if proc.is_alive():
        proc.kill()
    proc.join(5)


def run_jobs(todo: list[tuple[object, dict]], jobs: int, hard_limit: float,
             finish: Callable[[object, dict, float], None]) -> None:
    """Run each ``(key, job)`` of ``todo``, ``jobs`` at a time; call ``finish(key, result,
    seconds)`` as each one ends, in the order they end."""
    ctx = multiprocessing.get_context("spawn")
    todo = list(todo)
    running: dict[object, dict] = {}
    try:
        while todo or running:
            while todo and len(running) < jobs:
                key, job = todo.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=worker, args=(job, child), daemon=True)
                proc.start()
                child.close()
                running[key] = {"proc": proc, "conn": parent, "start": time.monotonic(),
                                "kernel": None}
            wait([r["conn"] for r in running.values()] + [r["proc"].sentinel for r in running.values()],
                 timeout=1)
            for key, r in list(running.items()):
                result = None
                try:
                    while r["conn"].poll():
                        kind, value = r["conn"].recv()
                        if kind == "kernel":
                            r["kernel"] = value
                        else:
                            result = value
                except (EOFError, OSError):
                    if result is None:
                        result = {"error": "grader worker crashed"}
                elapsed = time.monotonic() - r["start"]
                if result is None and not r["proc"].is_alive():
                    result = {"error": "grader worker crashed"}
                if result is None and elapsed > hard_limit:
                    result = {"error": f"killed after {elapsed:.0f} s: the notebook would not stop"}
                if result is not None:
                    _kill(r["proc"], r["kernel"])
                    r["conn"].close()
                    del running[key]
                    finish(key, result, round(elapsed, 2))
    finally:
        for r in running.values():                     # Ctrl-C or an error: leave no kernels
            _kill(r["proc"], r["kernel"])
