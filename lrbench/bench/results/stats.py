"""Is a change real? The statistics behind every comparison of two timed cases.

A comparison is made on the raw rounds of both sides, never on two medians alone:

- the **ratio of medians** (new over base) with a 95% **bootstrap interval**: each side's rounds
  resampled with replacement, the ratio of the resampled medians, its 2.5th and 97.5th
  percentiles (a fixed seed, so the same rounds give the same interval);
- a **rank test**: the two-sided Mann-Whitney U test on the rounds (normal approximation with the
  tie and continuity corrections), which assumes no distribution of the times;
- a **verdict** that needs both a practical and a statistical reason, as asv's does: ``slower``
  (``faster``) when the ratio is beyond the threshold and the test is significant at ``alpha``;
  ``unchanged`` when the whole interval lies within the threshold both ways; ``unsure`` otherwise;
- an **unstable** flag when either side's rounds spread widely: their median absolute deviation
  is ``UNSTABLE_MAD`` (5%) of their median or more (nanobench flags a benchmark whose median
  error reaches 5%). An unstable side makes any verdict weaker: the interval widens with it.

A threshold ``t`` is symmetric in ratio: ``slower`` beyond ``1 + t``, ``faster`` below
``1 / (1 + t)``.

Rounds of one pass share the machine's state of that moment: a neighbour's job, clocks, heat, the
place of the case's tensors in memory move every round of it alike, and no test on those rounds
can tell that from a change in the code (measured: the same commit's case 1.63x slower in a second
run, its rounds tight on both sides). So a verdict needs a unit that meets that drift:

- :func:`compare_passes`: a run that went over its matrix several times (``Timing.passes``,
  minutes apart, each pass building the case afresh) has one median per pass; Welch's t-test and
  t-interval on the logarithms of the two sides' pass medians, with the rank test on the pooled
  rounds; a verdict only where both agree. One pass a side cannot tell drift from code: no
  ``slower`` or ``faster``.
- :func:`compare_pairs`: ``lrbench ab`` runs the two sides interleaved, in pairs of runs close in
  time; the change in each pair (ratio of the two runs' medians), a t-test and t-interval on their
  logarithms, and the rank test on the pooled rounds.

Many cases are compared at once: :func:`adjust_p` gives the Benjamini-Hochberg adjusted p-values,
so that ``alpha`` bounds the share of false ``slower``/``faster`` calls in a comparison (and, when
nothing changed, the chance of any).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

UNSTABLE_MAD = 0.05  # median absolute deviation over median at which a side is unstable
CONFIDENCE = 0.95
BOOTSTRAP = 2000  # resamples; the interval's ends move by well under 1% between seeds
MIN_ROUNDS = 5  # fewer rounds on a side: no significance claimed (the test has no power)
VERDICTS = ("slower", "faster", "unchanged", "unsure")


@dataclass(frozen=True)
class Change:
    """How ``new`` compares with ``base`` (times: larger is slower)."""

    ratio: float  # median(new) / median(base)
    low: float  # 95% bootstrap interval of the ratio
    high: float
    p_value: float  # two-sided Mann-Whitney U
    verdict: str  # one of VERDICTS
    unstable: bool  # either side's MAD/median >= UNSTABLE_MAD
    base_rounds: int
    new_rounds: int
    pairs: int = 0  # interleaved pairs of runs behind the interval and p (compare_pairs); 0: rounds
    passes: int = 0  # passes a side (the fewer) behind the interval and p (compare_passes)


def relative_mad(rounds: Sequence[float]) -> float:
    """Median absolute deviation over the median (0 for fewer than two rounds)."""
    x = np.asarray(rounds, dtype=float)
    if x.size < 2:
        return 0.0
    med = float(np.median(x))
    return float(np.median(np.abs(x - med)) / med) if med > 0 else math.inf


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, ties and continuity
    corrected); 1.0 when either side is empty or every value is tied."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return 1.0
    both = np.concatenate([a, b])
    ranks = _ranks(both)
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    n = n1 + n2
    _, counts = np.unique(both, return_counts=True)
    tie = (counts**3 - counts).sum() / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie))
    if sigma == 0:
        return 1.0
    z = (abs(u1 - n1 * n2 / 2) - 0.5) / sigma
    return float(min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, dtype=float)
    ranks[order] = np.arange(1, x.size + 1)
    values, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def ratio_interval(base: Sequence[float], new: Sequence[float], *, seed: int = 0,
                   resamples: int = BOOTSTRAP, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Bootstrap interval of median(new) / median(base)."""
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    rng = np.random.default_rng(seed)
    b = np.median(base[rng.integers(0, base.size, (resamples, base.size))], axis=1)
    n = np.median(new[rng.integers(0, new.size, (resamples, new.size))], axis=1)
    ratios = n / b
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def compare_rounds(base: Sequence[float], new: Sequence[float], threshold: float,
                   alpha: float = 0.01) -> Change:
    """The change from ``base`` to ``new`` (each a case's timed rounds, in seconds).

    Args:
        base, new: the rounds of each side; at least one each.
        threshold: the smallest change that matters, as a fraction (0.1 for 10%).
        alpha: the significance level of the rank test.
    """
    if not len(base) or not len(new):
        raise ValueError(f"rounds: need at least one a side, got {len(base)} and {len(new)}")
    if not threshold > 0:
        raise ValueError(f"threshold: expected a fraction > 0, got {threshold!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected 0 < alpha < 1, got {alpha!r}")
    ratio = float(np.median(new) / np.median(base))
    low, high = ratio_interval(base, new)
    p = mann_whitney_p(base, new)
    powered = min(len(base), len(new)) >= MIN_ROUNDS
    verdict = decide(ratio, low, high, p if powered else 1.0, threshold, alpha)
    unstable = max(relative_mad(base), relative_mad(new)) >= UNSTABLE_MAD
    return Change(ratio=ratio, low=low, high=high, p_value=p, verdict=verdict, unstable=unstable,
                  base_rounds=len(base), new_rounds=len(new))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"df: expected >= 1, got {df}")
    if math.isinf(t):
        return 0.0
    return _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def student_t_quantile(confidence: float, df: float) -> float:
    """``q`` with P(|T| <= q) = ``confidence`` for Student's t with ``df`` degrees of freedom."""
    low, high = 0.0, 1.0
    while student_t_p(high, df) > 1 - confidence:
        high *= 2
    for _ in range(200):  # bisection: p falls as q grows
        mid = (low + high) / 2
        low, high = (mid, high) if student_t_p(mid, df) > 1 - confidence else (low, mid)
    return (low + high) / 2


def compare_pairs(base_runs: Sequence[Sequence[float]], new_runs: Sequence[Sequence[float]],
                  threshold: float, alpha: float = 0.01) -> Change:
    """The change from ``base`` to ``new`` measured in interleaved pairs of runs (``lrbench ab``).

    Pair ``i`` is base run ``i`` and new run ``i``, run one after the other. The ratio is that of
    the medians over every round gathered (as :func:`compare_rounds`); the interval is the 95%
    t-interval of the pairs' ratios (of the two runs' medians, on a log scale), which widens with
    the machine's drift between runs; the p-value is the larger of the rank test on all rounds and
    the t-test of the pairs' log ratios (both must reject: an intersection-union test, still of
    level ``alpha``). Verdicts as :func:`compare_rounds`, on that interval and p. Fewer than two
    pairs cannot tell drift from code: ``unsure``.

    Args:
        base_runs, new_runs: per run, its rounds (seconds); as many runs on each side.
        threshold: the smallest change that matters, a fraction (0.1 for 10%).
        alpha: the significance level.
    """
    if len(base_runs) != len(new_runs):
        raise ValueError(f"runs: need as many base as new runs, at least one, got "
                         f"{len(base_runs)} and {len(new_runs)}")
    pooled = _pooled("runs", "run", base_runs, new_runs, threshold, alpha)
    n = len(base_runs)
    logs = np.log([np.median(new) / np.median(base) for base, new in zip(base_runs, new_runs,
                                                                         strict=True)])
    if n < 2:
        return replace(pooled, verdict="unsure", pairs=n, low=math.nan, high=math.nan)
    mean, se = float(logs.mean()), float(logs.std(ddof=1)) / math.sqrt(n)
    if se > 0:
        p_pairs = student_t_p(mean / se, n - 1)
        half = student_t_quantile(CONFIDENCE, n - 1) * se
    else:  # every pair agrees exactly
        p_pairs, half = (0.0 if mean != 0 else 1.0), 0.0
    low, high = math.exp(mean - half), math.exp(mean + half)
    p = max(pooled.p_value, p_pairs)
    pooled_inside = 1 / (1 + threshold) <= pooled.low and pooled.high <= 1 + threshold
    verdict = decide(pooled.ratio, low, high, p, threshold, alpha, inside=pooled_inside)
    return replace(pooled, low=low, high=high, p_value=p, verdict=verdict, pairs=n)


def decide(ratio: float, low: float, high: float, p: float, threshold: float, alpha: float,
           inside: bool = True) -> str:
    """The verdict of a change: ``slower``/``faster`` beyond the threshold with its interval
    wholly beyond 1 and ``p < alpha``; ``unchanged`` when the interval (and ``inside``, any other
    interval that must agree) lies within the threshold both ways; ``unsure`` otherwise."""
    up, down = 1 + threshold, 1 / (1 + threshold)
    if p < alpha and ratio > up and low > 1:
        return "slower"
    if p < alpha and ratio < down and high < 1:
        return "faster"
    if inside and down <= low and high <= up:
        return "unchanged"
    return "unsure"


def welch(base: Sequence[float], new: Sequence[float]) -> tuple[float, float, float]:
    """Welch's t-test of mean(new) - mean(base): (difference, two-sided p, half-width of its 95%
    interval). Two values a side at least."""
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if base.size < 2 or new.size < 2:
        raise ValueError(f"welch: need two values a side, got {base.size} and {new.size}")
    diff = float(new.mean() - base.mean())
    vb, vn = base.var(ddof=1) / base.size, new.var(ddof=1) / new.size
    se = math.sqrt(vb + vn)
    if se == 0:  # every value of each side equal
        return diff, (0.0 if diff != 0 else 1.0), 0.0
    df = (vb + vn) ** 2 / (vb**2 / (base.size - 1) + vn**2 / (new.size - 1))
    return diff, student_t_p(diff / se, df), student_t_quantile(CONFIDENCE, df) * se


def compare_passes(base_passes: Sequence[Sequence[float]],
                   new_passes: Sequence[Sequence[float]], threshold: float,
                   alpha: float = 0.01) -> Change:
    """The change from ``base`` to ``new``, each a run's passes over the matrix (or several
    runs' passes, not paired in time).

    The ratio is that of the medians over every round (as :func:`compare_rounds`); the interval is
    exp of Welch's 95% t-interval of mean log(pass median), new minus base, which widens with the
    drift between passes; the p-value is the larger of Welch's t-test on the log pass medians and
    the rank test on all rounds (both must reject). With fewer than two passes on a side the
    interval is the bootstrap's on the rounds and the verdict at most ``unsure``: rounds of one
    pass cannot tell drift from code.

    Args:
        base_passes, new_passes: per pass, its rounds (seconds); at least one pass a side.
        threshold: the smallest change that matters, a fraction (0.1 for 10%).
        alpha: the significance level.
    """
    pooled = _pooled("passes", "pass", base_passes, new_passes, threshold, alpha)
    units = min(len(base_passes), len(new_passes))
    if units < 2:
        verdict = "unsure" if pooled.verdict in ("slower", "faster") else pooled.verdict
        return replace(pooled, verdict=verdict, passes=units)
    low, high, p_welch = _welch_on_passes(base_passes, new_passes)
    p = max(pooled.p_value, p_welch)
    verdict = decide(pooled.ratio, low, high, p, threshold, alpha)
    return replace(pooled, low=low, high=high, p_value=p, verdict=verdict, passes=units)


def passes_interval(base_passes: Sequence[Sequence[float]],
                    new_passes: Sequence[Sequence[float]]) -> tuple[float, float]:
    """The 95% interval of median(new) / median(base) as :func:`compare_passes` gives it, for
    a ratio that is reported rather than judged (LR-Net against ResNet-50 in one run): Welch's
    t-interval of the log pass medians with two passes or more a side, else the bootstrap
    interval of the pooled rounds (which cannot see the drift between passes), and none (nan,
    nan) where a side of one pass has fewer than ``MIN_ROUNDS`` rounds: a bootstrap of three
    rounds is no interval."""
    _check_units("passes", "pass", base_passes, new_passes)
    if min(len(base_passes), len(new_passes)) < 2:
        base = [t for rounds in base_passes for t in rounds]
        new = [t for rounds in new_passes for t in rounds]
        if min(len(base), len(new)) < MIN_ROUNDS:
            return math.nan, math.nan
        return ratio_interval(base, new)
    low, high, _ = _welch_on_passes(base_passes, new_passes)
    return low, high


def _welch_on_passes(base_passes: Sequence[Sequence[float]],
                     new_passes: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """Welch on the log pass medians: the ratio's 95% interval (low, high) and the p-value."""
    diff, p, half = welch(np.log([np.median(r) for r in base_passes]),
                          np.log([np.median(r) for r in new_passes]))
    return math.exp(diff - half), math.exp(diff + half), p


def _pooled(units: str, unit: str, base: Sequence[Sequence[float]],
            new: Sequence[Sequence[float]], threshold: float, alpha: float) -> Change:
    """:func:`compare_rounds` on every round of the ``units`` (runs or passes) of each side, once
    each side has one and every ``unit`` a round."""
    _check_units(units, unit, base, new)
    return compare_rounds([t for rounds in base for t in rounds],
                          [t for rounds in new for t in rounds], threshold, alpha)


def _check_units(units: str, unit: str, base: Sequence[Sequence[float]],
                 new: Sequence[Sequence[float]]) -> None:
    """A ValueError unless each side has a ``unit`` (run or pass) and every one of them a round."""
    if not len(base) or not len(new):
        raise ValueError(f"{units}: need at least one a side, got {len(base)} and {len(new)}")
    if any(not len(rounds) for rounds in [*base, *new]):
        raise ValueError(f"{units}: every {unit} needs at least one round")


def adjust_p(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (in the order given): ``adjusted < alpha`` keeps the
    expected share of false discoveries among the calls at most ``alpha``."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * (p.size / np.arange(1, p.size + 1))  # each factor >= 1: never below p
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(ranked, 1.0)
    return adjusted
