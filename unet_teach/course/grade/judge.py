"""Judge a test cell by its records, outside the kernel (see :mod:`unet_teach.course.evidence`).

The instructor's run of the source notebook gives, for each test cell, the expected records
(name, value, rule, tolerances); the student's run gives the student's values under the same
names. A question passes when its cell ran without an error *and* every expected record came
back from the student's cell and satisfies its rule. The rule and the tolerances are always the
instructor's, never what the student's kernel sent.

Example:
    >>> from unet_teach.course.evidence import encode
    >>> want = [{"name": "dice, random batch", "value": encode(0.5), "rule": "equal",
    ...          "bound": None, "rtol": 1e-7, "atol": 1e-9}]
    >>> judge(want, [{"name": "dice, random batch", "value": encode(0.5)}]) is None
    True
    >>> judge(want, [{"name": "dice, random batch", "value": encode(0.25)}])
    'dice, random batch: expected 0.5, got 0.25'
    >>> judge(want, [])
    'dice, random batch: the test cell did not report this result (was the cell changed?)'
"""

from __future__ import annotations

import math

import numpy as np

from ..evidence import Other, decode

MISSING = "the test cell did not report this result (was the cell changed?)"
TWICE = "the test cell reported this result more than once (was the cell changed?)"


def _show(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {tuple(value.shape)}"
    if isinstance(value, Other):
        return f"a {value}"
    if isinstance(value, list):
        text = repr([v.tolist() if isinstance(v, np.ndarray) else v for v in value])
        return text if len(text) <= 80 else text[:77] + "..."
    return repr(value)


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def differs(want, got, rtol: float, atol: float) -> str | None:
    """Why ``got`` is not ``want`` (None if it is): arrays and numbers within the tolerances
    (nan equals nan), everything else exactly."""
    if isinstance(want, np.ndarray) or isinstance(got, np.ndarray):
        if not (isinstance(want, np.ndarray) and isinstance(got, np.ndarray)):
            return f"expected {_show(want)}, got {_show(got)}"
        if want.shape != got.shape:
            return f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
        a, b = want.astype(np.float64), got.astype(np.float64)
        if not np.allclose(b, a, rtol=rtol, atol=atol, equal_nan=True):
            both = np.isfinite(a) & np.isfinite(b)
            worst = float(np.abs(a - b)[both].max()) if both.any() else float("nan")
            wrong = int((~np.isclose(b, a, rtol=rtol, atol=atol, equal_nan=True)).sum())
            return (f"{wrong} of {a.size} values differ from the expected ones (largest "
                    f"difference {worst:.3g})")
        return None
    if _numeric(want) and _numeric(got):
        if math.isnan(want) and math.isnan(got):
            return None
        if isinstance(want, int) and isinstance(got, int):
            return None if want == got else f"expected {want}, got {got}"
        if math.isclose(got, want, rel_tol=rtol, abs_tol=atol):
            return None
        return f"expected {want:.6g}, got {got:.6g}"
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return f"expected {len(want)} items, got {len(got)}"
        for i, (w, g) in enumerate(zip(want, got)):
            why = differs(w, g, rtol, atol)
            if why:
                return f"item {i}: {why}"
        return None
    if type(want) is not type(got) or want != got:
        return f"expected {_show(want)}, got {_show(got)}"
    return None


def _bounded(rule: str, bound: float, got) -> str | None:
    if not _numeric(got) or math.isnan(got):
        return f"expected a number, got {_show(got)}"
    ok = {"le": got <= bound, "lt": got < bound, "ge": got >= bound, "gt": got > bound}[rule]
    sign = {"le": "<=", "lt": "<", "ge": ">=", "gt": ">"}[rule]
    return None if ok else f"expected {sign} {bound:g}, got {got:.6g}"


def judge(expected: list[dict], received: list[dict]) -> str | None:
    """None if ``received`` (the student's records of one test cell) satisfies every record of
    ``expected`` (the instructor's), else why not, for the first that fails, as
    ``"<record name>: <reason>"``. Malformed student records count as missing; a name
    reported twice fails (the hidden tests report each once: a second one was made by the
    student's code, before or after the real one)."""
    got: dict[str, object] = {}
    twice: set[str] = set()
    for r in received:
        if isinstance(r, dict) and isinstance(r.get("name"), str):
            if r["name"] in got:          # the hidden tests report each name once
                twice.add(r["name"])
                continue
            try:
                got[r["name"]] = decode(r.get("value"))
            except (ValueError, TypeError):
                pass
    for want in expected:
        name = want["name"]
        if name in twice:
            return f"{name}: {TWICE}"
        if name not in got:
            return f"{name}: {MISSING}"
        value, rule = got[name], want["rule"]
        if rule == "equal":
            why = differs(decode(want["value"]), value, want["rtol"], want["atol"])
        else:
            why = _bounded(rule, want["bound"], value)
        if why:
            return f"{name}: {why}"
    return None
