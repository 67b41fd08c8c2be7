"""The network section's headline: LR-Net against ResNet-50 and against its floor.

The floor (:mod:`lrbench.bench.measure.floor`) is LR-Net with the op replaced by a free stand-in,
so for each pass ``floor / ResNet-50`` is what the architecture costs whatever the op, and
``(LR-Net - floor) / LR-Net`` is the op's share of LR-Net's time (Hu et al., ICCV 2019,
arXiv:1904.11491). Every ratio is between rows of one run and one machine (the report splits
machines before calling this), with its 95% interval (:mod:`lrbench.bench.comparison.ratios`).
"""

from __future__ import annotations

import pandas as pd

from lrbench.bench.comparison.ratios import Ratio, ratio
from lrbench.bench.matrix.cases import FLOOR
from lrbench.bench.results.metrics import shape_of

LRNET, RESNET = "lrnet50", "resnet50"
PAIRING = ["shape", "dtype", "device", "pass"]  # what an LR-Net row shares with its ResNet and floor
# the three headline measures, each with "<name> low" and "<name> high" columns beside it
LR_VS_RESNET, FLOOR_VS_RESNET, OP_SHARE = "LR-Net / ResNet-50", "floor / ResNet-50", "op share %"
MEASURES = (LR_VS_RESNET, FLOOR_VS_RESNET, OP_SHARE)


def _measures(row: pd.Series, floor: pd.Series | None, resnet: pd.Series | None
              ) -> dict[str, Ratio | None]:
    return {
        LR_VS_RESNET: None if resnet is None else ratio(row, resnet),
        FLOOR_VS_RESNET: None if resnet is None or floor is None else ratio(floor, resnet),
        OP_SHARE: None if floor is None else ratio(floor, row).complement(),
    }


def _paired(frame: pd.DataFrame):
    """(LR-Net row, its floor row or None, its ResNet-50 row or None) for each LR-Net row with
    one of them at least."""
    rows = frame[(frame["status"] == "ok") & frame["target"].isin([LRNET, RESNET])]
    if rows.empty:
        return
    rows = rows.assign(shape=rows["case_id"].map(shape_of))
    keys = rows[PAIRING].astype(str).agg("|".join, axis=1)
    by_key = {f"{key}|{row['target']}|{row['impl']}": row
              for key, (_, row) in zip(keys, rows.iterrows(), strict=True)}
    for key, (_, row) in zip(keys, rows.iterrows(), strict=True):
        if row["target"] != LRNET or row["impl"] == FLOOR:
            continue
        resnet, floor = by_key.get(f"{key}|{RESNET}|torch"), by_key.get(f"{key}|{LRNET}|{FLOOR}")
        if resnet is not None or floor is not None:
            yield row, floor, resnet


def against_the_floor(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per LR-Net implementation and pass: its median beside ResNet-50's and the floor's
    on the same batch, size, dtype and device, the two ratios to ResNet-50 and the op's share,
    each with ``low`` and ``high`` columns (its 95% interval), and ``passes`` (the fewest behind
    an interval). Empty when the run has no LR-Net row with a ResNet-50 or floor row to pair
    with."""
    out = []
    for row, floor, resnet in _paired(frame):
        measures = _measures(row, floor, resnet)
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
                "-" if other is None else str(other["memory_format"])
                for other in (row, floor, resnet)),
        })
    return pd.DataFrame(out)


def floor_table(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`against_the_floor` for the report: each measure as ``value [low, high]``."""
    table = against_the_floor(frame)
    if table.empty:
        return table
    shown = table.drop(columns=[f"{name}{end}" for name in MEASURES for end in (" low", " high")])
    for name in MEASURES:
        shown[name] = [
            "" if pd.isna(value) else Ratio(value, low, high, 0).text(1 if name == OP_SHARE else 2)
            for value, low, high in zip(table[name], table[f"{name} low"], table[f"{name} high"],
                                        strict=True)]
    return shown
