"""unet_teach.stats.compare against scipy.stats' own t-tests and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from unet_teach.stats import compare


@pytest.mark.parametrize("seed", range(5))
def test_welch_interval_is_scipys(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.1, 0.02, 5), rng.normal(0.12, 0.05, 7)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    d = compare(a, b)
    assert d.diff == pytest.approx(a.mean() - b.mean())
    assert (d.low, d.high) == pytest.approx((ref.low, ref.high))
    assert not d.paired and d.n == (5, 7)


@pytest.mark.parametrize("seed", range(5))
def test_paired_interval_is_scipys(seed):
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 0.05, 6)                 # what the seed does to both settings
    a, b = shared + rng.normal(0.10, 0.01, 6), shared + rng.normal(0.11, 0.01, 6)
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    d = compare(a, b, paired=True)
    assert (d.low, d.high) == pytest.approx((ref.low, ref.high))
    assert d.df == 5


def test_pairing_resolves_what_the_seed_hides():
    # A steady 0.01 gain under a seed-to-seed spread of 0.05: paired, it is resolved.
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.05, 5)
    a, b = shared + 0.01 + rng.normal(0, 0.001, 5), shared + rng.normal(0, 0.001, 5)
    assert compare(a, b, paired=True).sign == 1
    assert compare(a, b, paired=False).sign == 0


def test_sign_reads_the_interval_in_both_directions():
    up, down = [3.0, 3.1, 2.9], [1.0, 1.1, 0.9]
    assert compare(up, down).sign == 1
    assert compare(down, up).sign == -1
    assert compare([1.0, 2.0, 3.0], [2.0, 1.0, 3.0]).sign == 0


def test_runs_without_spread_give_a_point_interval():
    d = compare([1.0, 1.0], [0.5, 0.5])
    assert (d.diff, d.low, d.high) == (0.5, 0.5, 0.5) and d.sign == 1


@pytest.mark.parametrize("a, b, paired, match", [
    ([1.0], [1.0, 2.0], False, "at least 2 runs"),
    ([1.0, np.nan], [1.0, 2.0], False, "NaN"),
    ([1.0, 2.0, 3.0], [1.0, 2.0], True, "pairs"),
])
def test_bad_input_says_what_to_do(a, b, paired, match):
    with pytest.raises(ValueError, match=match):
        compare(a, b, paired=paired)
