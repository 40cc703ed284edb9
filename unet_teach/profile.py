"""The run profile: how much training a chapter can afford on this machine.

Chapters never hard-code epochs or image counts. They ask the profile:

    >>> from unet_teach.profile import get_profile
    >>> P = get_profile()
    >>> steps = P.pick(fast=150, full=3000)

* ``fast`` - the default on a CPU: small budgets, so every chapter runs in minutes on a
  2-core laptop and the numbers still show the effect being taught;
* ``full`` - the default when CUDA is present: budgets close to the papers'.

Set ``UNET_TEACH_PROFILE=fast`` or ``full`` to override the choice (for example ``fast`` to
check a notebook quickly on a GPU, or ``full`` to train properly on a strong CPU), and
``UNET_TEACH_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ...) to choose the device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
PROFILES = ("fast", "full")


def default_device() -> torch.device:
    """``$UNET_TEACH_DEVICE`` if set, else CUDA when present, else the CPU.

    Example:
        >>> default_device().type in {"cpu", "cuda"}
        True
    """
    name = os.environ.get("UNET_TEACH_DEVICE")
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"UNET_TEACH_DEVICE={name} but CUDA is not available here; "
                               "unset it or set it to cpu")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_device(name: str | None) -> torch.device:
    """The device a ``--device`` option names (``cpu``, ``cuda``, ``cuda:1``, ...), else
    :func:`default_device`; a ``ValueError`` that says what to use instead when it cannot
    be used here.

    Example:
        >>> pick_device("cpu")
        device(type='cpu')
    """
    try:
        device = torch.device(name) if name else default_device()
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"--device {name or ''}: {str(err).splitlines()[0]}; use cpu, or "
                         "cuda on a machine with a GPU") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; use --device cpu")
    return device


def cpu_bf16_support() -> str:
    """The bf16 instructions of this machine's CPU that PyTorch's CPU kernels (oneDNN) use.

    ``"AMX"`` (Intel's tile matrix units, Sapphire Rapids and newer), ``"AVX-512 BF16"``
    (bf16 dot products in vector registers), or ``"none"`` (bf16 is converted to fp32 to
    compute). Whether bf16 autocast speeds a CPU up depends on it.

    Example:
        >>> cpu_bf16_support() in ("AMX", "AVX-512 BF16", "none")
        True
    """
    cpu = getattr(torch, "cpu", None)

    def has(name: str) -> bool:
        check = getattr(cpu, name, None)
        return bool(check()) if callable(check) else False

    if has("_is_amx_tile_supported"):
        return "AMX"
    if has("_is_avx512_bf16_supported"):
        return "AVX-512 BF16"
    return "none"


@dataclass(frozen=True)
class Profile:
    """A training budget (``name``: ``fast`` or ``full``) and the device to train on."""

    name: str
    device: torch.device

    @property
    def fast(self) -> bool:
        return self.name == "fast"

    def pick(self, fast: T, full: T) -> T:
        """Return ``fast`` in the fast profile and ``full`` in the full one.

        Example:
            >>> Profile("fast", torch.device("cpu")).pick(fast=100, full=5000)
            100
        """
        return fast if self.fast else full

    def __str__(self) -> str:
        """The banner at the top of every chapter: what produced the page's numbers.

        Example:
            >>> str(Profile("fast", torch.device("cpu"))).startswith("fast profile on cpu")
            True
        """
        where = str(self.device)
        if self.device.type == "cuda" and torch.cuda.is_available():
            where += f" ({torch.cuda.get_device_name(self.device)})"
        threads = torch.get_num_threads()
        return (f"{self.name} profile on {where}, {threads} CPU "
                f"thread{'' if threads == 1 else 's'}, torch {torch.__version__}")


def get_profile() -> Profile:
    """The profile for this run: ``$UNET_TEACH_PROFILE`` if set, else ``full`` with CUDA and
    ``fast`` without.

    Example:
        >>> get_profile().name in ("fast", "full")
        True
    """
    device = default_device()
    name = os.environ.get("UNET_TEACH_PROFILE", "").strip().lower()
    if name and name not in PROFILES:
        raise ValueError(f"UNET_TEACH_PROFILE={name!r}: use one of {PROFILES}")
    return Profile(name or ("full" if device.type == "cuda" else "fast"), device)
