"""The network section's headline: LR-Net against ResNet-50 and against its floor.

The floor (:mod:`lrbench.bench.measure.floor`) is LR-Net with the op replaced by a free stand-in,
so for each pass ``floor / ResNet-50`` is what the architecture costs whatever the op, and
``(LR-Net - floor) / LR-Net`` is the op's share of LR-Net's time (Hu et al., ICCV 2019,
arXiv:1904.11491). Every ratio is between rows of one run and one machine (the report splits
machines before calling this).
"""

from __future__ import annotations

import pandas as pd

from lrbench.bench.matrix.cases import FLOOR
from lrbench.bench.results.metrics import shape_of

LRNET, RESNET = "lrnet50", "resnet50"
PAIRING = ["shape", "dtype", "device", "pass"]  # what an LR-Net row shares with its ResNet and floor


def against_the_floor(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per LR-Net implementation and pass: its median beside ResNet-50's and the floor's
    on the same batch, size, dtype and device, the two ratios to ResNet-50, and the op's share.
    Empty when the run has no LR-Net row with a ResNet-50 or floor row to pair with."""
    rows = frame[(frame["status"] == "ok") & frame["target"].isin([LRNET, RESNET])]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(shape=rows["case_id"].map(shape_of))
    keys = rows[PAIRING].astype(str).agg("|".join, axis=1)
    median = dict(zip(keys + "|" + rows["target"] + "|" + rows["impl"], rows["median_s"],
                      strict=True))
    fmt = dict(zip(keys + "|" + rows["target"] + "|" + rows["impl"], rows["memory_format"],
                   strict=True))
    out = []
    for key, (_, row) in zip(keys, rows.iterrows(), strict=True):
        if row["target"] != LRNET or row["impl"] == FLOOR:
            continue
        resnet = median.get(f"{key}|{RESNET}|torch")
        floor = median.get(f"{key}|{LRNET}|{FLOOR}")
        if resnet is None and floor is None:
            continue
        lr = row["median_s"]
        out.append({
            "shape": row["shape"], "dtype": row["dtype"], "device": row["device"],
            "pass": row["pass"], "impl": row["impl"],
            "LR-Net ms": lr * 1e3,
            "ResNet-50 ms": None if resnet is None else resnet * 1e3,
            "floor ms": None if floor is None else floor * 1e3,
            "LR-Net / ResNet-50": None if resnet is None else lr / resnet,
            "floor / ResNet-50": None if resnet is None or floor is None else floor / resnet,
            "op share %": None if floor is None else 100 * (lr - floor) / lr,
            "formats (LR-Net, floor, ResNet)": ", ".join(
                str(fmt.get(k, "-")) for k in (f"{key}|{LRNET}|{row['impl']}",
                                               f"{key}|{LRNET}|{FLOOR}", f"{key}|{RESNET}|torch")),
        })
    return pd.DataFrame(out)
