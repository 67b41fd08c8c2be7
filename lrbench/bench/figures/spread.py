"""Speedups with their interval: the same statistics as ``lrbench compare``
(:func:`lrbench.bench.results.stats.ratio_interval`) where both rows kept their rounds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lrbench.bench.figures.rows import has_rounds, quartiles
from lrbench.bench.results import records, stats

BOOTSTRAP = "95% bootstrap interval"
IQR = "quartile range (no rounds recorded)"


@dataclass(frozen=True)
class Speedup:
    """``base`` median / ``row`` median, with an interval and what the interval is."""

    value: float
    low: float
    high: float
    source: str  # BOOTSTRAP or IQR


def speedup(row: pd.Series, base: pd.Series) -> Speedup:
    """How much faster ``row`` is than ``base`` (>1: faster).

    With both rows' rounds: the bootstrap interval of median(base) / median(row). Without: the
    widest ratio the two quartile ranges allow (base Q1 / row Q3 to base Q3 / row Q1), which is
    not a confidence interval and is labelled so.
    """
    value = float(base["median_s"]) / float(row["median_s"])
    if has_rounds(row) and has_rounds(base):
        low, high = stats.ratio_interval(records.parse_rounds(row["rounds_s"]),
                                         records.parse_rounds(base["rounds_s"]))
        return Speedup(value, low, high, BOOTSTRAP)
    (r_low,), (r_high,) = quartiles(row.to_frame().T)
    (b_low,), (b_high,) = quartiles(base.to_frame().T)
    return Speedup(value, b_low / r_high, b_high / r_low, IQR)


def error_bars(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """matplotlib's ``xerr``/``yerr`` (2 x n, distances below and above) for ``low <= values <=
    high``."""
    values = np.asarray(values, dtype=float)
    return np.stack([np.maximum(values - low, 0), np.maximum(high - values, 0)])
