"""The statistics of a comparison, on synthetic rounds whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from lrbench.bench.results.stats import (
    UNSTABLE_MAD,
    compare_pairs,
    compare_rounds,
    mann_whitney_p,
    ratio_interval,
    relative_mad,
    student_t_p,
    student_t_quantile,
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


def _runs(median_s: float, n_runs: int, drift: float, spread: float = 0.02, seed: int = 0,
          shared: np.ndarray | None = None) -> list[np.ndarray]:
    """``n_runs`` runs of 30 rounds; each run moved as a whole by the machine's drift (log-normal,
    ``drift``), or by ``shared`` (the same moments for both sides of interleaved pairs)."""
    rng = np.random.default_rng(seed)
    moves = shared if shared is not None else rng.normal(0.0, drift, n_runs)
    return [_rounds(median_s * np.exp(m), spread, seed=seed * 100 + i) for i, m in enumerate(moves)]


def test_student_t_matches_scipy():
    from scipy import stats as sp

    for df in (1, 2, 3, 5, 9, 30):
        for t in (0.0, 0.5, 2.0, 4.3, 12.0):
            assert student_t_p(t, df) == pytest.approx(2 * sp.t.sf(t, df), rel=1e-9, abs=1e-14)
        assert student_t_quantile(0.95, df) == pytest.approx(sp.t.ppf(0.975, df), rel=1e-9)


def test_drift_between_runs_is_no_verdict_where_pooled_rounds_would_give_one():
    """The same code, each run moved 20% by the machine's drift: the rounds of one run a side
    call a change, the pairs do so no more often than alpha says (1%; here at most 2 of 100)."""
    verdicts = []
    for seed in range(100):
        base = _runs(1e-3, 5, 0.2, seed=seed)
        new = _runs(1e-3, 5, 0.2, seed=seed + 1000)
        verdicts.append(compare_pairs(base, new, 0.10).verdict)
    assert sum(v in ("slower", "faster") for v in verdicts) <= 2, verdicts
    pooled = compare_rounds(np.concatenate(base[:1]), np.concatenate(new[:1]), 0.10)
    assert pooled.p_value < 0.01  # what one run a side would have claimed


def test_a_2x_slowdown_is_caught_through_shared_drift():
    for seed in range(10):
        shared = np.random.default_rng(seed).normal(0, 0.2, 4)  # each pair's moment, both sides
        base = _runs(1e-3, 4, 0, seed=seed, shared=shared)
        new = _runs(2e-3, 4, 0, seed=seed + 50, shared=shared + np.random.default_rng(
            seed + 9).normal(0, 0.05, 4))
        change = compare_pairs(base, new, 0.10)
        assert change.verdict == "slower" and change.pairs == 4, (seed, change)
        assert change.low > 1.5 and change.high < 2.7


def test_equal_pairs_are_unchanged_and_one_pair_is_unsure():
    base = _runs(1e-3, 4, 0.0, spread=0.01, seed=1)
    new = _runs(1e-3, 4, 0.0, spread=0.01, seed=2)
    assert compare_pairs(base, new, 0.10).verdict == "unchanged"
    one = compare_pairs(base[:1], [r * 2 for r in new[:1]], 0.10)
    assert one.verdict == "unsure" and one.pairs == 1
    with pytest.raises(ValueError, match="as many base as new runs"):
        compare_pairs(base, new[:2], 0.10)
