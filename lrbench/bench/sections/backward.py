"""The report's backward against the forward: what a training step pays for the op beyond the
inference forward, per implementation and shape.

For each op case timed in the ``fwd`` pass (forward without autograd) and in ``fwd_bwd`` (forward
with autograd, then backward) or ``bwd`` (the backward alone), the ratios ``fwd_bwd / fwd`` (the
``(forward+backward) / forward`` of a kernel's cost) and ``bwd / fwd``, each with its 95% interval
(:mod:`lrbench.bench.comparison.ratios`). Shapes that are LR layers of LR-Net-50 at 224 input
(:data:`lrbench.bench.matrix.presets.LRNET50_LAYERS`, the ``layers`` preset) are named.
"""

from __future__ import annotations

import pandas as pd

from lrbench.bench.comparison.ratios import ratio
from lrbench.bench.matrix.cases import parse_case_id
from lrbench.bench.matrix.presets import LRNET50_BATCH, LRNET50_K, LRNET50_LAYERS, LRNET50_M

FWD_BWD_OVER_FWD, BWD_OVER_FWD = "(fwd+bwd) / fwd", "bwd / fwd"
LAYER_FIELDS = ("C", "H", "W", "stride")  # what names a layer, at its batch, k and m


def layer_name(row: pd.Series) -> str:
    """The LR-Net-50 layer (``stem``, ``res3.0``, ...) whose shape ``row`` has at batch 8, else
    ``""``."""
    if (int(row["B"]), int(row["k"]), int(row["m"])) != (LRNET50_BATCH, LRNET50_K, LRNET50_M):
        return ""
    shape = tuple(int(row[field]) for field in LAYER_FIELDS)
    for name, layer in LRNET50_LAYERS.items():
        if tuple(layer[field] for field in LAYER_FIELDS) == shape:
            return name
    return ""


def backward_cost(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per op case timed forward and backward: the three medians (ms), both ratios as
    ``value [low, high]`` text, the passes behind the intervals, and the LR-Net-50 layer's name.
    Empty when no op case has a ``fwd`` row and a ``bwd`` or ``fwd_bwd`` row."""
    rows = frame[(frame["status"] == "ok") & (frame["target"] == "op")]
    if rows.empty:
        return pd.DataFrame()
    parts = rows["case_id"].map(parse_case_id)
    keys = parts.map(lambda p: ":".join(v for name, v in p.items() if name != "pass"))
    by_pass = {(key, row["pass"]): row for key, (_, row) in zip(keys, rows.iterrows(), strict=True)}
    out = []
    for key in dict.fromkeys(keys):
        fwd = by_pass.get((key, "fwd"))
        bwd, both = by_pass.get((key, "bwd")), by_pass.get((key, "fwd_bwd"))
        if fwd is None or (bwd is None and both is None):
            continue
        ratios = {FWD_BWD_OVER_FWD: None if both is None else ratio(both, fwd),
                  BWD_OVER_FWD: None if bwd is None else ratio(bwd, fwd)}
        case = parse_case_id(fwd["case_id"])
        out.append({
            "impl": case["impl"], "shape": case["shape"], "LR-Net-50 layer": layer_name(fwd),
            "memory format": fwd.get("memory_format", ""),
            "dtype": case["dtype"], "device": case["device"],
            "fwd ms": fwd["median_s"] * 1e3,
            "bwd ms": None if bwd is None else bwd["median_s"] * 1e3,
            "fwd_bwd ms": None if both is None else both["median_s"] * 1e3,
            **{name: "" if r is None else r.text() for name, r in ratios.items()},
            "passes": min(r.passes for r in ratios.values() if r is not None),
        })
    return pd.DataFrame(out)
