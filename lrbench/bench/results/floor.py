"""The network section's headline: LR-Net against ResNet-50 and against its floor.

The floor (:mod:`lrbench.bench.measure.floor`) is LR-Net with the op replaced by a free stand-in,
so for each pass ``floor / ResNet-50`` is what the architecture costs whatever the op, and
``(LR-Net - floor) / LR-Net`` is the op's share of LR-Net's time (Hu et al., ICCV 2019,
arXiv:1904.11491). Every ratio is between rows of one run and one machine (the report splits
machines before calling this).

Each ratio comes with its 95% interval from the rows' rounds, the same statistic as ``lrbench
compare`` on one run against another (:func:`lrbench.bench.results.stats.passes_interval`): with
two passes or more, Welch's t-interval of the pass medians, which widens with the machine's drift
between passes; with one pass, the bootstrap interval of the rounds, which cannot see that drift;
none for rows without rounds. A ratio of two medians alone cannot say whether 1.42 is below 1.45.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from lrbench.bench.matrix.cases import FLOOR
from lrbench.bench.results import records, stats
from lrbench.bench.results.metrics import shape_of

LRNET, RESNET = "lrnet50", "resnet50"
PAIRING = ["shape", "dtype", "device", "pass"]  # what an LR-Net row shares with its ResNet and floor
# the three headline measures, each with "<name> low" and "<name> high" columns beside it
LR_VS_RESNET, FLOOR_VS_RESNET, OP_SHARE = "LR-Net / ResNet-50", "floor / ResNet-50", "op share %"
MEASURES = (LR_VS_RESNET, FLOOR_VS_RESNET, OP_SHARE)


@dataclass(frozen=True)
class Ratio:
    """One row's time over another's: the ratio of their medians and its 95% interval."""

    value: float
    low: float  # nan: a row without rounds
    high: float
    passes: int  # passes behind the interval (the fewer of the two rows'); 0 without rounds


def ratio(row: pd.Series, to: pd.Series) -> Ratio:
    """``row``'s median over ``to``'s, with the interval from both rows' rounds (see the module)."""
    value = float(row["median_s"]) / float(to["median_s"])
    mine, theirs = (records.parse_passes(_rounds_text(r.get("rounds_s"))) for r in (row, to))
    if not mine or not theirs:
        return Ratio(value, math.nan, math.nan, 0)
    low, high = stats.passes_interval(theirs, mine)
    return Ratio(value, low, high, min(len(mine), len(theirs)))


def _rounds_text(cell) -> str:
    """A row's ``rounds_s`` cell as text: empty where the row has none (missing, or NaN)."""
    return "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell)


def against_the_floor(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per LR-Net implementation and pass: its median beside ResNet-50's and the floor's
    on the same batch, size, dtype and device, the two ratios to ResNet-50 and the op's share,
    each with ``low`` and ``high`` columns (its 95% interval), and ``passes`` (the fewest behind
    an interval). Empty when the run has no LR-Net row with a ResNet-50 or floor row to pair
    with."""
    rows = frame[(frame["status"] == "ok") & frame["target"].isin([LRNET, RESNET])]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(shape=rows["case_id"].map(shape_of))
    keys = rows[PAIRING].astype(str).agg("|".join, axis=1)
    by_key = {f"{key}|{row['target']}|{row['impl']}": row
              for key, (_, row) in zip(keys, rows.iterrows(), strict=True)}
    out = []
    for key, (_, row) in zip(keys, rows.iterrows(), strict=True):
        if row["target"] != LRNET or row["impl"] == FLOOR:
            continue
        resnet, floor = by_key.get(f"{key}|{RESNET}|torch"), by_key.get(f"{key}|{LRNET}|{FLOOR}")
        if resnet is None and floor is None:
            continue
        measures = {
            LR_VS_RESNET: None if resnet is None else ratio(row, resnet),
            FLOOR_VS_RESNET: None if resnet is None or floor is None else ratio(floor, resnet),
            OP_SHARE: None if floor is None else _share(ratio(floor, row)),
        }
        out.append({
            "shape": row["shape"], "dtype": row["dtype"], "device": row["device"],
            "pass": row["pass"], "impl": row["impl"],
            "LR-Net ms": row["median_s"] * 1e3,
            "ResNet-50 ms": None if resnet is None else resnet["median_s"] * 1e3,
            "floor ms": None if floor is None else floor["median_s"] * 1e3,
            **{f"{name}{end}": None if m is None else getattr(m, attr)
               for name, m in measures.items()
               for end, attr in (("", "value"), (" low", "low"), (" high", "high"))},
            "passes": min((m.passes for m in measures.values() if m is not None), default=0),
            "formats (LR-Net, floor, ResNet)": ", ".join(
                "-" if other is None else str(other["memory_format"]) for other in (row, floor, resnet)),
        })
    return pd.DataFrame(out)


def _share(floor_over_lr: Ratio) -> Ratio:
    """The op's share of LR-Net's time, in percent, from floor / LR-Net: 100 (1 - ratio)."""
    r = floor_over_lr
    return Ratio(100 * (1 - r.value), 100 * (1 - r.high), 100 * (1 - r.low), r.passes)


def floor_table(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`against_the_floor` for the report: each measure as ``value [low, high]``."""
    table = against_the_floor(frame)
    if table.empty:
        return table
    shown = table.drop(columns=[f"{name}{end}" for name in MEASURES for end in (" low", " high")])
    for name in MEASURES:
        digits = 1 if name == OP_SHARE else 2
        shown[name] = [_with_interval(v, lo, hi, digits) for v, lo, hi in
                       zip(table[name], table[f"{name} low"], table[f"{name} high"], strict=True)]
    return shown


def _with_interval(value, low, high, digits: int) -> str:
    if value is None or pd.isna(value):
        return ""
    if low is None or pd.isna(low):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
