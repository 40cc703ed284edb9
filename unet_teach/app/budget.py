"""What a training's wall time buys: the budget, the learning rate over it, the precision.

* :class:`Budget` - when training stops: after a number of steps, or when the minutes from
  the command's start are used up, ending early by the time the end (validation, writing
  the file) will take. Its clock can be replaced, so its arithmetic is tested without
  waiting.
* :func:`cosine_lr` - the learning rate decays over the budget, so it is low when the time
  is up, however many steps that was.
* :func:`resolve_precision` - bf16 autocast where the hardware multiplies bf16 natively
  (about twice the steps for the same minutes), else fp32; :func:`precision_reason` says
  why, for the run's first lines.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..profile import cpu_bf16_support
from .images import InputError
from .settings import PRECISIONS


@dataclass
class Budget:
    """When training stops: after ``steps`` steps, or ``seconds`` of wall time counted from
    ``clock_start`` (this command's start; default: now) plus ``elapsed_before`` (earlier
    runs of a resumed training).

    With a time budget the loop stops early by the time the end will take,
    :meth:`reserve`: ``reserve_s`` (writing the file, scoring the validation part) plus
    ``reserve_steps`` times the current step time (predicting the validation images,
    measured in training steps); and it starts no step it cannot finish. ``clock`` is
    ``time.monotonic`` unless a test gives another.

    Example:
        >>> b = Budget(steps=10)
        >>> b.fraction(5), b.spent(9), b.spent(10)
        (0.5, False, True)
        >>> now = [100.0]
        >>> b = Budget(seconds=60, elapsed_before=20, reserve_s=5, clock=lambda: now[0])
        >>> now[0] += 10                          # 10 s into this run, 30 s in all
        >>> b.elapsed(), b.fraction(0), b.spent(0, step_time=2.0)
        (30.0, 0.5, False)
    """

    steps: int | None = None
    seconds: float | None = None
    clock_start: float | None = None
    elapsed_before: float = 0.0
    reserve_s: float = 0.0
    reserve_steps: float = 0.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self):
        if self.clock_start is None:
            self.clock_start = self.clock()

    def elapsed(self) -> float:
        """Seconds used: this run's and the earlier runs' of a resumed training."""
        return self.elapsed_before + self.clock() - self.clock_start

    def fraction(self, step: int) -> float:
        """How much of the budget is used, 0..1 (the learning-rate schedule's position)."""
        if self.steps is not None:
            return min(1.0, step / self.steps)
        return min(1.0, self.elapsed() / self.seconds)

    def reserve(self, step_time: float = 0.0) -> float:
        """Seconds the end of the training will take, at ``step_time`` seconds a step."""
        return self.reserve_s + self.reserve_steps * step_time

    def spent(self, step: int, step_time: float = 0.0) -> bool:
        """Whether to stop before step ``step``: the steps are done, or one more step and
        the end would not fit in the time."""
        if self.steps is not None:
            return step >= self.steps
        return self.elapsed() + self.reserve(step_time) + step_time >= self.seconds

    def describe(self) -> str:
        """``"N steps"`` or ``"M minutes"``."""
        return (f"{self.steps} steps" if self.steps is not None
                else f"{self.seconds / 60:g} minutes")


def cosine_lr(lr: float, fraction: float) -> float:
    """Cosine decay from ``lr`` at the start to ``lr / 100`` at the end of the budget.

    Example:
        >>> cosine_lr(1e-3, 0.0), round(cosine_lr(1e-3, 0.5), 6), cosine_lr(1e-3, 1.0)
        (0.001, 0.000505, 1e-05)
    """
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0))))


# "auto" trains in bf16 autocast where the hardware multiplies bf16 natively (CUDA GPUs
# that support it; CPUs with AMX tile units or AVX-512 BF16 instructions, where it about
# halves a step's time, with channels-last more) and in fp32 elsewhere, where bf16 would be
# converted to fp32 to compute and be slower. The weights and the optimiser stay fp32.

#: What :func:`unet_teach.profile.cpu_bf16_support` says of the CPUs that "auto" uses bf16 on.
#: The accuracy is the same as fp32's (tests/test_app.py trains both ways and compares).
BF16_CPUS = ("AMX", "AVX-512 BF16")


def resolve_precision(name: str | None, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"``: what ``--precision name`` means on ``device``.

    Example:
        >>> resolve_precision("fp32", torch.device("cpu"))
        'fp32'
        >>> resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
        True
    """
    name = name or "auto"
    if name not in PRECISIONS:
        raise InputError(f"--precision {name}: choose one of {', '.join(PRECISIONS)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise InputError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not "
                         "compute in bf16; use --precision fp32")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if cuda_bf16 else "fp32"
    return "bf16" if device.type == "cpu" and cpu_bf16_support() in BF16_CPUS else "fp32"


def precision_reason(name: str | None, device: torch.device) -> str:
    """Why ``--precision name`` means what it does on ``device``, for the run's first lines.

    Example:
        >>> precision_reason("fp32", torch.device("cpu"))
        'asked for with --precision fp32'
    """
    name = name or "auto"
    if name != "auto":
        return f"asked for with --precision {name}"
    if device.type == "cuda":
        return ("auto: this GPU multiplies bf16 natively" if torch.cuda.is_bf16_supported()
                else "auto: this GPU has no bf16 arithmetic")
    if device.type != "cpu":
        return f"auto: fp32 on {device.type}"
    units = cpu_bf16_support()
    if units in BF16_CPUS:
        return f"auto: this CPU multiplies bf16 natively ({units}); --precision fp32 to turn off"
    return ("auto: this CPU has no bf16 instructions (AMX or AVX-512 BF16), so bf16 would "
            "be converted to fp32 and run slower")


def autocast(device: torch.device, precision: str):
    """The forward pass's context: bf16 autocast for ``"bf16"``, nothing for ``"fp32"``.

    Example:
        >>> with autocast(torch.device("cpu"), "bf16"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
