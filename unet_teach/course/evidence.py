"""What a test cell sends the grader: the student's results as data, judged outside the kernel.

A student's code controls the interpreter it runs in, so a check that runs there cannot be
trusted to report its own verdict (a notebook can replace ``checks.check_unet``, or rewrite the
test cells before they run). The hidden part of each test cell therefore does not decide
anything: it computes the student's outputs on the grader's inputs and :func:`record` sends
them, under a name, as a display message of type ``MIME`` (JSON; arrays as base64 of
their bytes, never pickle). The grader runs the source notebook, with the instructor's
answers, the same way; it compares the two sets of records *outside the kernel*
(:mod:`unet_teach.course.grade.judge`) and awards the points there. A test cell that a
notebook turned into ``pass`` sends nothing and earns nothing; one whose visible check was
replaced still sends the wrong outputs.

Each record carries its rule, taken from the *instructor's* run: ``"equal"`` (the same
value: arrays of the same shape within ``rtol``/``atol``, numbers likewise, the rest exactly)
or a comparison with a bound (``"le"``, ``"lt"``, ``"ge"``, ``"gt"``) for results that need
not equal the instructor's (a training run's time). Outside the grader (``$UNET_TEACH_GRADING``
unset: a student's own run, nbval) :func:`record` sends nothing, so the hidden tests cost
nothing when a notebook runs elsewhere.

The helpers :func:`parameter_shapes`, :func:`fill_parameters` and :func:`calls` make a net's
results comparable with the instructor's: the same weights, matched by the order the forward
pass uses the layers (not the order they were created in).

Example:
    >>> import numpy as np
    >>> decode(encode(np.arange(3.0)))
    array([0., 1., 2.])
    >>> decode(encode([1, 2.5, "x", None, True]))
    [1, 2.5, 'x', None, True]
"""

from __future__ import annotations

import base64
import math
import os
from typing import Any

import numpy as np

MIME = "application/vnd.unet-teach.evidence+json"
ENV = "UNET_TEACH_GRADING"            # set by the grader in the kernel's environment
RULES = ("equal", "le", "lt", "ge", "gt")
MAX_ELEMENTS = 2_000_000               # of one recorded array (16 MB as float64)


def encode(value: Any) -> dict:
    """``value`` as JSON-ready data: None, bool, int, float (nan and inf as strings), str,
    arrays (numpy, torch, anything ``np.asarray`` takes) and lists/tuples of these."""
    if value is None:
        return {"type": "none"}
    if isinstance(value, (bool, np.bool_)):
        return {"type": "bool", "v": bool(value)}
    if isinstance(value, (int, np.integer)):
        return {"type": "int", "v": int(value)}
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return {"type": "float", "v": v if math.isfinite(v) else repr(v)}
    if isinstance(value, str):
        return {"type": "str", "v": value[:10_000]}
    if isinstance(value, (list, tuple)):
        return {"type": "list", "v": [encode(v) for v in value]}
    if hasattr(value, "detach"):                     # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object:
        return {"type": "other", "v": type(value).__name__}
    if array.size > MAX_ELEMENTS:
        raise ValueError(f"a recorded array may have {MAX_ELEMENTS:,} elements, not {array.size:,}")
    kind = "bool" if array.dtype == bool else "int" if array.dtype.kind in "iu" else "float"
    dtype = {"bool": "|u1", "int": "<i8", "float": "<f8"}[kind]
    return {"type": "array", "kind": kind, "shape": list(array.shape),
            "data": base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode()}


def decode(data: dict) -> Any:
    """The value :func:`encode` made ``data`` from (arrays as numpy arrays); a ``ValueError``
    for anything malformed (the data came from a student's kernel)."""
    if not isinstance(data, dict):
        raise ValueError("a record must be a JSON object")
    kind = data.get("type")
    v = data.get("v")
    if kind == "none":
        return None
    if kind == "bool" and isinstance(v, bool):
        return v
    if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if kind == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if kind == "float" and v in ("nan", "inf", "-inf"):
        return float(v)
    if kind == "str" and isinstance(v, str):
        return v
    if kind == "list" and isinstance(v, list):
        return [decode(x) for x in v]
    if kind == "other" and isinstance(v, str):
        return Other(v)
    if kind == "array":
        shape = data.get("shape")
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise ValueError("an array record needs a list of sizes")
        dtype = {"bool": "|u1", "int": "<i8", "float": "<f8"}.get(data.get("kind"))
        if dtype is None or not isinstance(data.get("data"), str):
            raise ValueError("an array record needs a kind and its data")
        raw = base64.b64decode(data["data"], validate=True)
        if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
            raise ValueError("an array record's data does not match its shape")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        return array.astype(bool) if data["kind"] == "bool" else array.copy()
    raise ValueError(f"not a record: {str(data)[:80]}")


def number(value: Any) -> Any:
    """``value`` as a float when it is one number (a Python or numpy scalar, a 0-d array or
    tensor), else unchanged (so a wrong kind of answer is reported as what it is).

    Example:
        >>> number(np.float32(0.5)), number(np.array(2)), number([1, 2])
        (0.5, 2.0, [1, 2])
    """
    if isinstance(value, (bool, np.bool_)) or value is None:
        return value
    if hasattr(value, "detach"):                     # a tensor, maybe one that needs grad
        value = value.detach().cpu()
    try:
        if np.ndim(value) == 0:
            return float(value)
    except (TypeError, ValueError, RuntimeError):
        pass
    return value


class Other(str):
    """A value that is none of the recorded kinds, known by its type's name only."""


def record(name: str, value: Any, rule: str = "equal", bound: float | None = None,
           rtol: float = 1e-7, atol: float = 1e-9) -> None:
    """Send ``value`` to the grader as the result called ``name`` (shown to the student when
    it differs from the instructor's, so write it as a description: "dice_loss, K = 4, random
    labels"). ``rule`` and ``bound`` say how it is judged; ``rtol``/``atol`` are the tolerances
    of ``"equal"``. Sends nothing outside the grader."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    if rule != "equal" and bound is None:
        raise ValueError(f"rule {rule!r} needs a bound")
    if not os.environ.get(ENV):
        return
    from IPython.display import display
    display({MIME: {"name": str(name), "value": encode(value), "rule": rule,
                    "bound": None if bound is None else float(bound),
                    "rtol": float(rtol), "atol": float(atol)}}, raw=True)


# --------------------------------------------------------------------------- nets

def _forward_order(module, *inputs) -> list:
    """The parameters of ``module`` in the order its forward pass uses the layers that own
    them (each layer once, at its first use), then any it never used."""
    import torch

    order: list = []
    seen: set[int] = set()

    def hook(layer, args):
        if id(layer) not in seen:
            seen.add(id(layer))
            order.extend(layer.parameters(recurse=False))

    handles = [m.register_forward_pre_hook(hook) for m in module.modules()]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    used = {id(p) for p in order}
    return order + [p for p in module.parameters() if id(p) not in used]


def parameter_shapes(module, *inputs) -> list[list[int]]:
    """The shape of every parameter of ``module``, in forward order (see :func:`fill_parameters`)."""
    return [list(p.shape) for p in _forward_order(module, *inputs)]


def fill_parameters(module, *inputs, seed: int = 0) -> None:
    """Give ``module`` the grader's weights: parameter k in forward order gets values drawn
    from a generator seeded with ``seed + k`` (uniform in [-0.5, 0.5] / sqrt(fan-in)), so
    two nets with the same layers in the same order compute the same function."""
    import torch

    with torch.no_grad():
        for k, p in enumerate(_forward_order(module, *inputs)):
            fan_in = max(1, p[0].numel()) if p.dim() > 1 else max(1, p.numel())
            g = torch.Generator().manual_seed(seed + k)
            values = (torch.rand(p.shape, generator=g, dtype=torch.float64) - 0.5) / fan_in ** 0.5
            p.copy_(values.to(p.dtype))


def calls(module) -> tuple[list, Any]:
    """``(shapes, remove)``: ``shapes`` collects the input shape of every call of ``module``
    (its first argument) until ``remove()``; e.g. to see how an image was tiled."""
    shapes: list = []

    def hook(layer, args):
        if args and hasattr(args[0], "shape"):
            shapes.append(list(args[0].shape))

    handle = module.register_forward_pre_hook(hook)
    return shapes, handle.remove
