"""Timing work on a CPU or a GPU, fairly: steps timed one by one between synchronisations,
set-ups timed by turns on a shared machine, and the switches that decide which kernels run.

* :func:`sync` - wait until the device has finished: CUDA runs asynchronously, so without
  it a clock measures the launches, not the work;
* :func:`time_steps` - untimed warm-up calls (cuDNN tries its algorithms, ``torch.compile``
  compiles, the allocator fills its cache), then the calls timed one by one; the median is
  robust to a stray slow call;
* :func:`time_interleaved` - several ways of doing the same work timed by turns, so that
  every way meets the same changes of load;
* :func:`backend_flags` - TF32 and ``cudnn.benchmark`` set for a block, then put back.

The speed ladder of :mod:`unet_teach.bench` and chapters 7 and 11 time with these.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued on it (a no-op on the CPU, whose
    work is done when the call returns).

    Example:
        >>> sync(torch.device("cpu"))
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device, steps: int,
               warmup: int, before_timing: Callable[[], None] | None = None) -> dict:
    """Run ``warmup`` untimed calls of ``step``, then ``before_timing()`` (e.g. reset the
    memory peak, so that cuDNN's trials in the warm-up do not count), then ``steps`` timed
    calls; the median, the best and the first call's time (seconds).

    Example:
        >>> t = time_steps(lambda: None, torch.device("cpu"), steps=3, warmup=1)
        >>> sorted(t), len(t["times"])
        (['best_s', 'first_step_s', 'median_s', 'times'], 3)
    """
    first = None
    for _ in range(warmup):
        started = time.perf_counter()
        step()
        sync(device)
        first = time.perf_counter() - started if first is None else first
    if before_timing is not None:
        before_timing()
    times = []
    for _ in range(max(1, steps)):
        sync(device)
        started = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times), "best_s": min(times),
            "first_step_s": first if first is not None else times[0], "times": times}


@contextmanager
def backend_flags(tf32: bool, benchmark: bool = True):
    """Set the TF32 switches and ``cudnn.benchmark`` for a block; put back the old values.

    The switches are ``torch.backends.cuda.matmul.allow_tf32`` and
    ``torch.backends.cudnn.allow_tf32``, spelled ``fp32_precision = "tf32"`` (or
    ``"ieee"``) since torch 2.9. The new spelling is used here: once anything in a process
    has used it, reading the old one raises an error.

    Example:
        >>> with backend_flags(tf32=True):
        ...     torch.backends.cudnn.conv.fp32_precision
        'tf32'
    """
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision, torch.backends.cudnn.benchmark)
    matmul.fp32_precision = conv.fp32_precision = "tf32" if tf32 else "ieee"
    torch.backends.cudnn.benchmark = benchmark
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision, torch.backends.cudnn.benchmark = saved


def time_interleaved(steps: dict[str, Callable[[], None]], device: torch.device,
                     repeats: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Time several ways of doing the same work by turns: ``warmup`` untimed rounds, then
    ``repeats`` rounds in each of which every step runs once, timed on its own.

    On a shared machine the load changes from one second to the next. Timed one after
    the other, the first way could run while another program was idle and the second while
    it was busy; timed by turns, every way meets the same changes, and the median of its
    repeats drops the rounds a burst of load hit.

    Returns:
        ``{name: [seconds, ...]}``, ``repeats`` times per name.

    Example:
        >>> calls = []
        >>> t = time_interleaved({"a": lambda: calls.append("a"),
        ...                       "b": lambda: calls.append("b")},
        ...                      torch.device("cpu"), repeats=2, warmup=1)
        >>> calls, [len(v) for v in t.values()]
        (['a', 'b', 'a', 'b', 'a', 'b'], [2, 2])
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(max(1, repeats)):
        for name, step in steps.items():
            sync(device)
            started = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - started)
    return times
