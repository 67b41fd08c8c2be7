"""The statistics of a comparison, on synthetic rounds whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from lrbench.bench.results.stats import (
    UNSTABLE_MAD,
    compare_rounds,
    mann_whitney_p,
    ratio_interval,
    relative_mad,
)


def _rounds(median_s: float, spread: float, n: int = 30, seed: int = 0) -> np.ndarray:
    """``n`` positive rounds around ``median_s`` with a relative spread (log-normal, as timings)."""
    rng = np.random.default_rng(seed)
    return median_s * np.exp(rng.normal(0.0, spread, n))


def test_a_30_percent_shift_with_a_small_spread_is_slower():
    change = compare_rounds(_rounds(1e-3, 0.02, seed=1), _rounds(1.3e-3, 0.02, seed=2), 0.10)
    assert change.verdict == "slower" and not change.unstable
    assert change.low > 1.2 and change.high < 1.4 and change.p_value < 1e-6


def test_a_30_percent_speedup_is_faster():
    change = compare_rounds(_rounds(1.3e-3, 0.02, seed=3), _rounds(1e-3, 0.02, seed=4), 0.10)
    assert change.verdict == "faster" and change.high < 1 / 1.1


def test_a_3_percent_shift_inside_20_percent_noise_is_not_a_verdict():
    for seed in range(10):
        change = compare_rounds(_rounds(1e-3, 0.2, seed=seed), _rounds(1.03e-3, 0.2, seed=seed + 50),
                                0.10)
        assert change.verdict not in ("slower", "faster"), (seed, change)
        assert change.unstable  # 20% noise is far past the 5% limit


@pytest.mark.parametrize("seed", range(5))
def test_identical_distributions_give_no_verdict(seed):
    base, new = _rounds(1e-3, 0.01, seed=seed), _rounds(1e-3, 0.01, seed=seed + 100)
    change = compare_rounds(base, new, 0.10)
    assert change.verdict == "unchanged", change  # tight rounds: the interval is inside 10%


def test_a_real_shift_below_the_threshold_is_not_slower():
    """Significant (tight rounds) but only 5%: beyond no practical threshold of 10%."""
    change = compare_rounds(_rounds(1e-3, 0.005, seed=7), _rounds(1.05e-3, 0.005, seed=8), 0.10)
    assert change.p_value < 1e-6 and change.verdict == "unchanged"


def test_too_few_rounds_claim_no_significance():
    change = compare_rounds([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], 0.10)
    assert change.verdict == "unsure" and change.ratio == 2.0


def test_mann_whitney_matches_scipy_asymptotic():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    for n1, n2, ties in [(30, 30, False), (7, 12, False), (20, 25, True)]:
        a, b = rng.normal(0, 1, n1), rng.normal(0.4, 1, n2)
        if ties:
            a, b = np.round(a, 1), np.round(b, 1)
        expected = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic",
                                            use_continuity=True).pvalue
        assert mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-9)


def test_bootstrap_interval_holds_the_ratio_and_shrinks_with_rounds():
    base, new = _rounds(1.0, 0.05, n=10, seed=1), _rounds(1.5, 0.05, n=10, seed=2)
    low, high = ratio_interval(base, new)
    ratio = np.median(new) / np.median(base)
    assert low < ratio < high
    low_big, high_big = ratio_interval(_rounds(1.0, 0.05, n=200, seed=1),
                                       _rounds(1.5, 0.05, n=200, seed=2))
    assert high_big - low_big < (high - low) / 2


def test_relative_mad_flags_the_spread():
    assert relative_mad([1.0, 1.0, 1.0]) == 0.0
    assert relative_mad([0.9, 1.0, 1.1]) == pytest.approx(0.1)
    assert relative_mad([0.9, 1.0, 1.1]) >= UNSTABLE_MAD > relative_mad([0.99, 1.0, 1.01])


@pytest.mark.parametrize(("args", "word"), [
    (([], [1.0], 0.1), "rounds"), (([1.0], [1.0], 0.0), "threshold"),
    (([1.0], [1.0], 0.1, 1.5), "alpha")])
def test_bad_input_names_the_argument(args, word):
    with pytest.raises(ValueError, match=word):
        compare_rounds(*args)
