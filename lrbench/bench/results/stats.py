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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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
    up, down = 1 + threshold, 1 / (1 + threshold)
    powered = min(len(base), len(new)) >= MIN_ROUNDS
    if powered and p < alpha and ratio > up and low > 1:
        verdict = "slower"
    elif powered and p < alpha and ratio < down and high < 1:
        verdict = "faster"
    elif down <= low and high <= up:
        verdict = "unchanged"
    else:
        verdict = "unsure"
    unstable = max(relative_mad(base), relative_mad(new)) >= UNSTABLE_MAD
    return Change(ratio=ratio, low=low, high=high, p_value=p, verdict=verdict, unstable=unstable,
                  base_rounds=len(base), new_rounds=len(new))
