"""The statistics of a comparison, on synthetic rounds whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from lrbench.bench.results.stats import (
    UNSTABLE_MAD,
    adjust_p,
    compare_pairs,
    compare_passes,
    compare_rounds,
    mann_whitney_p,
    passes_interval,
    ratio_interval,
    relative_mad,
    student_t_p,
    student_t_quantile,
    welch,
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


def test_welch_matches_scipy():
    from scipy import stats as sp

    rng = np.random.default_rng(3)
    for nb, nn, sb, sn in ((3, 3, 0.1, 0.1), (5, 3, 0.05, 0.3), (2, 7, 1.0, 0.01)):
        base, new = rng.normal(0, sb, nb), rng.normal(0.2, sn, nn)
        diff, p, half = welch(base, new)
        ref = sp.ttest_ind(new, base, equal_var=False)
        assert diff == pytest.approx(new.mean() - base.mean())
        assert p == pytest.approx(ref.pvalue, rel=1e-7)
        low, high = ref.confidence_interval(0.95)
        assert (diff - half, diff + half) == pytest.approx((low, high), rel=1e-7)
    with pytest.raises(ValueError, match="two values a side"):
        welch([1.0], [1.0, 2.0])


def test_benjamini_hochberg_matches_scipy():
    from scipy import stats as sp

    p = np.random.default_rng(0).uniform(0, 0.2, 40) ** 2
    assert adjust_p(p) == pytest.approx(sp.false_discovery_control(p, method="bh"), rel=1e-12)
    assert adjust_p([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_p([]).size == 0


def _passes(median_s: float, n_passes: int, drift: float, spread: float = 0.02, seed: int = 0,
            rounds: int = 30) -> list[np.ndarray]:
    """One run's passes: each moved as a whole by the machine's state of its moment (log-normal,
    ``drift``), its rounds tight around that (``spread``)."""
    rng = np.random.default_rng(seed)
    return [_rounds(median_s * np.exp(rng.normal(0.0, drift)), spread, n=rounds,
                    seed=seed * 100 + i) for i in range(n_passes)]


def test_passes_make_drift_between_runs_no_verdict():
    """The same code, every pass of both runs moved by 12% drift (what this suite's quick cases
    showed from run to run): one pass a side would call most pairs a change at p < 1e-9, five
    passes a side call one about as often as alpha says (1%, two-sided: 2 of 200 expected; at
    most 5)."""
    verdicts, one_pass = [], []
    for seed in range(200):
        base = _passes(1e-3, 5, 0.12, seed=seed)
        new = _passes(1e-3, 5, 0.12, seed=seed + 1000)
        verdicts.append(compare_passes(base, new, 0.10).verdict)
        one_pass.append(compare_rounds(base[0], new[0], 0.10).verdict)
    assert sum(v in ("slower", "faster") for v in verdicts) <= 5, verdicts
    assert sum(v in ("slower", "faster") for v in one_pass) > 60  # what the rounds alone claim


def test_passes_catch_a_30_percent_shift_and_a_2x_slowdown():
    for seed in range(10):
        base = _passes(1e-3, 5, 0.02, seed=seed)
        change = compare_passes(base, _passes(1.3e-3, 5, 0.02, seed=seed + 50), 0.10)
        assert change.verdict == "slower" and change.passes == 5, (seed, change)
        assert 1.15 < change.low <= change.ratio <= change.high < 1.5
        slow = compare_passes(_passes(1e-3, 5, 0.12, seed=seed),
                              _passes(2e-3, 5, 0.12, seed=seed + 50), 0.10)
        assert slow.verdict == "slower", (seed, slow)
        fast = compare_passes(base, _passes(0.7e-3, 5, 0.02, seed=seed + 70), 0.10)
        assert fast.verdict == "faster", (seed, fast)


def test_one_pass_a_side_never_calls_a_change():
    base, new = _passes(1e-3, 1, 0.0, seed=1), _passes(2e-3, 1, 0.0, seed=2)
    change = compare_passes(base, new, 0.10)
    assert change.verdict == "unsure" and change.passes == 1
    assert change.p_value < 1e-9 and change.low > 1.9  # the rounds' statistics are still shown
    same = compare_passes(base, _passes(1e-3, 1, 0.0, seed=3), 0.10)
    assert same.verdict == "unchanged"  # an interval inside the threshold still says so
    with pytest.raises(ValueError, match="at least one a side"):
        compare_passes([], new, 0.10)
    with pytest.raises(ValueError, match="every pass needs at least one round"):
        compare_passes([[]], new, 0.10)


def test_a_reported_ratios_interval_is_the_comparisons_and_covers_the_truth():
    """passes_interval is compare_passes' interval (one statistic for a ratio judged or shown);
    under 12% drift between passes it covers the true ratio (1.4) about 95% of the time, where
    the rounds' bootstrap of one pass a side covers it far less often."""
    covered, covered_one_pass = 0, 0
    for seed in range(100):
        base = _passes(1e-3, 5, 0.12, seed=seed)
        new = _passes(1.4e-3, 5, 0.12, seed=seed + 500)
        low, high = passes_interval(base, new)
        judged = compare_passes(base, new, 0.10)
        assert (low, high) == (judged.low, judged.high)
        covered += low <= 1.4 <= high
        one_low, one_high = passes_interval(base[:1], new[:1])
        assert (one_low, one_high) == ratio_interval(base[0], new[0])
        covered_one_pass += one_low <= 1.4 <= one_high
    assert covered >= 88, covered
    assert covered_one_pass < 50, covered_one_pass
    few = passes_interval([[1.0, 1.1, 1.2, 1.3]], [[2.0] * 10])  # one pass of 4 rounds
    assert np.isnan(few).all()  # a bootstrap of so few rounds is no interval
    assert np.isfinite(passes_interval([[1.0, 1.1, 1.2, 1.3, 1.4]], [[2.0] * 5])).all()
    with pytest.raises(ValueError, match="at least one a side"):
        passes_interval([], [[1.0]])
    with pytest.raises(ValueError, match="every pass needs at least one round"):
        passes_interval([[1.0], []], [[1.0]])
