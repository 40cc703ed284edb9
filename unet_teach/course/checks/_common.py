"""What every exercise's checks share: calling the student's code and reporting success."""

from __future__ import annotations

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
