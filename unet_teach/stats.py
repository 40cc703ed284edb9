"""Comparing two sets of training runs: the difference of means and its 95 % interval.

A trained net is one draw from a random process (the initial weights, the order of the
crops, which images a seed picks), so "A beats B" is a statement about the *means* of many
runs. The book makes every such statement the same way, with :func:`compare`:

* the **difference of means** ``mean(a) - mean(b)``;
* its **95 % confidence interval** from Student's t distribution:

  - *unpaired* (Welch): ``se = sqrt(var(a)/n_a + var(b)/n_b)`` with the
    Welch-Satterthwaite degrees of freedom, when the two sets of runs are independent;
  - *paired*: ``d = a - b`` run by run, ``se = sd(d) / sqrt(n)``, ``n - 1`` degrees of
    freedom, when run i of ``a`` and run i of ``b`` share their seed (the same images and
    the same initial weights). Pairing removes what the seed does to both, so a small
    effect is resolved with fewer runs.

The interval ``[low, high]`` is what a finding rests on: ``low > 0`` means "a is larger,
beyond the noise of this many runs", ``high < 0`` the opposite, and an interval that holds 0
means "not resolved at this budget" - which is a finding too, and the book asserts it as
one (a harm beyond the bar fails the build just as a missing gain does).

With 3 seeds the t quantile is 4.30 (paired, 2 degrees of freedom): an interval that
excludes 0 needs a difference larger than 2.5 times the spread of the differences. Five
seeds bring the quantile down to 2.78.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: The book's one confidence level.
LEVEL = 0.95


@dataclass(frozen=True)
class Comparison:
    """``mean(a) - mean(b)`` with its confidence interval; see :func:`compare`."""

    diff: float          # mean(a) - mean(b)
    low: float           # the interval's ends
    high: float
    se: float            # standard error of diff
    df: float            # degrees of freedom of the t quantile
    n: tuple[int, int]   # runs in a and in b
    paired: bool

    @property
    def sign(self) -> int:
        """+1 if the whole interval is above 0, -1 if below, 0 if it holds 0 (unresolved)."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def __str__(self) -> str:
        kind = "paired" if self.paired else "Welch"
        return (f"{self.diff:+.4g} (95 % CI {self.low:+.4g} to {self.high:+.4g}; "
                f"{kind}, n = {self.n[0]}, {self.n[1]})")


def _runs(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"{name} has {x.size} run(s); a confidence interval needs at least "
                         "2 runs per setting (5 seeds are a good start)")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or infinite values: {x.tolist()}; drop the failed "
                         "runs explicitly (and say so) before comparing")
    return x


def compare(a, b, paired: bool = False) -> Comparison:
    """The difference of the means of runs ``a`` and ``b``, with its 95 % confidence interval.

    Args:
        a, b: one number per run (e.g. the test error of each seed).
        paired: ``True`` when ``a[i]`` and ``b[i]`` come from the same seed (same images,
            same initial weights): the interval then comes from the run-by-run differences.
            ``False`` (Welch's unequal-variance t) for independent runs.

    Example:
        >>> d = compare([0.12, 0.10, 0.11, 0.13, 0.12], [0.15, 0.13, 0.15, 0.16, 0.14],
        ...             paired=True)
        >>> round(d.diff, 3), round(d.low, 3), round(d.high, 3), d.sign
        (-0.03, -0.039, -0.021, -1)
        >>> print(d)
        -0.03 (95 % CI -0.03878 to -0.02122; paired, n = 5, 5)
    """
    a, b = _runs(a, "a"), _runs(b, "b")
    if paired:
        if a.size != b.size:
            raise ValueError(f"paired runs come in pairs: got {a.size} and {b.size} runs; "
                             "pass paired=False for independent sets of runs")
        d = a - b
        n = d.size
        diff, se, df = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)), float(n - 1)
    else:
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        diff, se = float(a.mean() - b.mean()), float(math.sqrt(va + vb))
        # Welch-Satterthwaite; with no spread at all in either set there is no t to take.
        df = float((va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))) \
            if se > 0 else float(a.size + b.size - 2)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df) * se)
    return Comparison(diff, diff - half, diff + half, se, df, (a.size, b.size), paired)
