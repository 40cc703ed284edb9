"""What every exercise's checks share: calling the student's code, making sure it does not
hand the task to the library's reference (:func:`call_own`), and reporting success."""

from __future__ import annotations

import inspect
import sys
import threading
from typing import Callable


def report_passed(points_table: dict[str, float], name: str, n: int, points: float | None) -> None:
    """Print the one success line of a check; ``points`` (if given) overrides the table.

    Example:
        >>> report_passed({"dice": 3}, "dice", 4, None)
        dice: all 4 checks passed - 3 points
    """
    points = points_table[name] if points is None else points
    print(f"{name}: all {n} checks passed - {points:g} point{'s' if points != 1 else ''}")


def call_student(fn: Callable, name: str, *args, where: str | None = None):
    """``fn(*args)``, turning whatever it raises into an ``AssertionError`` that a student
    can act on (a stub still raising ``NotImplementedError`` is named as such).

    Example:
        >>> call_student(lambda x: 1 / x, "inverse", 0, where="x = 0")
        Traceback (most recent call last):
        ...
        AssertionError: inverse raised ZeroDivisionError: division by zero on x = 0
    """
    if not callable(fn):
        # the usual slip: passing the result, check_dice(dice(p, t)), instead of the function
        raise AssertionError(f"pass your function (or class) itself, e.g. check_{name}({name}), "
                             f"not {type(fn).__name__} {fn!r:.40}")
    try:
        return fn(*args)
    except NotImplementedError:
        raise AssertionError(f"{name} is not implemented yet: replace `raise "
                             "NotImplementedError()` with your code") from None
    except AssertionError:
        raise
    except Exception as err:
        on = f" on {where}" if where else ""
        raise AssertionError(f"{name} raised {type(err).__name__}: {err}{on}") from err


# --------------------------------------------------------------------------- the answer key

def _codes(ref) -> list[tuple[tuple[str, str], str]]:
    """``((file, qualified name), printable name)`` of the code a reference runs: a function
    (decorators unwrapped), or every function a class defines (``__init__``, ``forward``...)."""
    if isinstance(ref, type):
        found = []
        for attr in vars(ref).values():
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            elif isinstance(attr, property):
                attr = attr.fget
            if callable(attr):
                found += _codes(attr)
        return found
    fn = inspect.unwrap(ref)
    code = getattr(fn, "__code__", None)
    if code is None:
        raise TypeError(f"cannot watch {ref!r}: not a Python function or class")
    return [((code.co_filename, code.co_qualname), f"{fn.__module__}.{code.co_qualname}")]


def _keys(refs) -> dict[tuple[str, str], str]:
    return {key: shown for ref in refs for key, shown in _codes(ref)}


def _inside(frame, codes: dict) -> bool:
    """Whether ``frame`` or one of its callers runs one of the ``codes``."""
    while frame is not None:
        if (frame.f_code.co_filename, frame.f_code.co_qualname) in codes:
            return True
        frame = frame.f_back
    return False


def call_own(fn: Callable, name: str, *args, references: tuple = (), allowed: tuple = (),
             where: str | None = None, advice: str = ""):
    """``call_student(fn, name, *args)``, failing if ``fn`` ran the code of one of the
    ``references`` (library functions, or classes: all their methods) on the way.

    **The library is not the answer key.** The package holds the reference of every function
    an exercise asks for, so a one-line answer that calls it would pass any comparison. While
    ``fn`` runs, a profiler hook (``sys.setprofile``, and ``threading.setprofile`` for threads
    it starts) records every entry into the code of the ``references``: by any route (an
    import alias, a wrapper, ``functools.partial``, a subclass, another library function that
    calls it, a call whose result is thrown away). Any entry fails the check with the reason
    "called the library's reference implementation ... earns no points for this question".
    The message names the references the answer entered itself (not those they called in
    turn). Entries made from inside an ``allowed`` function do not count: that is a helper the
    question hands out (an earlier answer, such as ``iou`` for the mean IoU) which happens to
    use a reference internally. Matching is by the code's file and qualified name, so
    reloading the module does not slip through; the hook cannot see the library's source text
    retyped into the answer or code run in another process. The hook is active only during
    this call, so a check calls the references itself, for the expected values, outside it.

    Example:
        >>> import numpy as np
        >>> from unet_teach import metrics
        >>> one, two = np.array([0, 1, 1]), np.array([0, 1, 0])
        >>> call_own(lambda p, t: metrics.dice(p, t), "dice", one, two,
        ...          references=(metrics.dice,), where="a 3-pixel example")
        Traceback (most recent call last):
        ...
        AssertionError: dice called the library's reference implementation unet_teach.metrics.dice on a 3-pixel example: that is the answer key, not an answer, and earns no points for this question.
        Hint: write it yourself; the library's function is only the reference the check compares with
        >>> call_own(lambda p, t: (metrics.iou(p, t, 0) + metrics.iou(p, t, 1)) / 2, "mean_iou",
        ...          one, two, references=(metrics.iou_per_class,), allowed=(metrics.iou,))
        0.5
        >>> call_own(lambda x: x + 1, "plus_one", 1, references=(metrics.dice,))
        2
    """
    targets = _keys(references)
    outer = {**targets, **_keys(allowed)}     # a reference entered from these is not named
    hits: list[str] = []

    def profile(frame, event, arg):
        if event == "call":
            code = frame.f_code
            hit = targets.get((code.co_filename, code.co_qualname))
            if hit is not None and hit not in hits and not _inside(frame.f_back, outer):
                hits.append(hit)

    previous, previous_threads = sys.getprofile(), threading.getprofile()
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        value = call_student(fn, name, *args, where=where)
    except AssertionError:
        if not hits:
            raise
        value = None                 # the reference was reached: that is the verdict
    finally:
        tampered = sys.getprofile() is not profile
        sys.setprofile(previous)
        threading.setprofile(previous_threads)
    on = f" on {where}" if where else ""
    if hits:
        raise AssertionError(
            f"{name} called the library's reference implementation {', '.join(hits)}{on}: that "
            "is the answer key, not an answer, and earns no points for this question.\nHint: "
            + (advice or "write it yourself") + "; the library's function is only the "
            "reference the check compares with")
    if tampered:
        raise AssertionError(f"{name} changed the profiler hook (sys.setprofile){on}; the "
                             "check uses it to see which functions your code calls: leave it "
                             "alone")
    return value
