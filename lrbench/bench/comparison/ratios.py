"""One row's time over another's in the same run, with its 95% interval: the statistic behind every
ratio the report shows between two cases (LR-Net against ResNet-50, the backward against the
forward).

The interval comes from the two rows' rounds, as ``lrbench compare`` computes it for one run
against another (:func:`lrbench.bench.results.stats.passes_interval`): with two passes or more a
row, Welch's t-interval of the pass medians (log scale), which widens with the machine's drift
between passes; with one pass, the bootstrap interval of the rounds, which cannot see that drift;
none for rows without rounds (runs made before rounds were kept). A ratio of two medians alone
cannot say whether 1.42 is below 1.45.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from lrbench.bench.results import records, stats

# What a report says of the intervals it shows beside such ratios.
INTERVAL_NOTE = ("Each ratio is that of the two medians [its 95% interval]: with `passes` of 2 or "
                 "more, Welch's t-interval of the pass medians (log scale), which widens with the "
                 "machine's drift between passes, as `lrbench compare` computes it; with 1, the "
                 "bootstrap interval of the rounds, blind to that drift (none under 5 rounds); "
                 "none for rows without rounds. More passes (`--passes 5`) narrow it.")


@dataclass(frozen=True)
class Ratio:
    """The ratio of two rows' medians and its 95% interval."""

    value: float
    low: float  # nan: a row without rounds
    high: float
    passes: int  # passes behind the interval (the fewer of the two rows'); 0 without rounds

    def complement(self, scale: float = 100.0) -> Ratio:
        """``scale * (1 - ratio)`` with its interval (the share of a time that the ratio leaves
        out: the op's share of LR-Net from floor / LR-Net)."""
        return Ratio(scale * (1 - self.value), scale * (1 - self.high), scale * (1 - self.low),
                     self.passes)

    def text(self, digits: int = 2, unit: str = "") -> str:
        """``1.42 [1.35, 1.57]`` (``unit`` after the value: ``1.42x [1.35, 1.57]``), or the bare
        value without an interval."""
        value = f"{self.value:.{digits}f}{unit}"
        if not math.isfinite(self.low):
            return value
        return f"{value} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def ratio(row: pd.Series, to: pd.Series) -> Ratio:
    """``row``'s median over ``to``'s, with the interval from both rows' rounds (see the module).

    Raises:
        ValueError: ``to``'s median is not a positive time.
    """
    if not float(to["median_s"]) > 0:
        raise ValueError(f"to: a row with a positive median_s, got {to['median_s']!r} "
                         f"({to.get('case_id', 'no case id')})")
    value = float(row["median_s"]) / float(to["median_s"])
    mine, theirs = (records.parse_passes(r.get("rounds_s")) for r in (row, to))
    if not mine or not theirs:
        return Ratio(value, math.nan, math.nan, 0)
    low, high = stats.passes_interval(theirs, mine)
    return Ratio(value, low, high, min(len(mine), len(theirs)))
