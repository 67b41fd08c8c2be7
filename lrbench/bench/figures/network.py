"""The whole networks: LR-Net-50 per implementation beside ResNet-50 and, when the run has it, the
floor (LR-Net-50 with the op replaced by a free stand-in: what the architecture costs without the
op), per pass. Bars are the time per batch with its quartile range; each is marked with its ratio to
ResNet-50 and that ratio's 95% interval (:func:`lrbench.bench.comparison.ratios.ratio`)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from lrbench.bench.comparison.ratios import ratio
from lrbench.bench.figures import canvas, palette
from lrbench.bench.figures.rows import FLOOR, NETWORK_TARGETS, labelled, quartiles, timed
from lrbench.bench.figures.spread import error_bars

PANEL = ["dtype", "device", "pass", "B", "H", "W"]  # a ratio pairs rows of one panel only


def network_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = timed(frame, None)
    return labelled(rows[rows["target"].isin(NETWORK_TARGETS)])


def networks(frame: pd.DataFrame) -> Figure | None:
    """One panel per (dtype, device, pass, batch and size): bars per LR-Net-50 implementation,
    the floor and ResNet-50, with ``x ResNet-50`` beside each."""
    rows = network_rows(frame)
    if rows.empty:
        return None
    panels = list(rows.groupby(PANEL, sort=True))
    fig = canvas.new(6.5 * min(2, len(panels)), 1.6 + 0.35 * rows.groupby(PANEL).size().max()
                     * -(-len(panels) // 2))
    axes = fig.subplots(-(-len(panels) // 2), min(2, len(panels)), squeeze=False).ravel()
    for ax, ((dtype, device, pass_, B, H, W), group) in zip(axes, panels, strict=False):
        order = sorted(group["label"], key=lambda n: (n == "resnet50", n == FLOOR, n))
        group = group.set_index("label").loc[order].reset_index()
        median = group["median_s"].to_numpy(dtype=float)
        low, high = quartiles(group)
        ax.barh(range(len(group)), median * 1e3, xerr=error_bars(median, low, high) * 1e3,
                color=[palette.colour(n) for n in group["label"]], capsize=2)
        names = [f"LR-Net-50 {n}" if n not in ("resnet50", FLOOR) else
                 {"resnet50": "ResNet-50", FLOOR: "LR-Net-50 floor (no op)"}[n]
                 for n in group["label"]]
        ax.set_yticks(range(len(group)), names, fontsize=7)
        ax.invert_yaxis()
        resnet = group[group["label"] == "resnet50"]
        if not resnet.empty:
            for i, (_, row) in enumerate(group.iterrows()):
                if row["label"] == "resnet50":
                    continue
                ax.annotate(f" {ratio(row, resnet.iloc[0]).text(unit='x')} ResNet-50",
                            (high[i] * 1e3, i), va="center", fontsize=7)
        ax.margins(x=0.3)
        floor = "" if (group["label"] == FLOOR).any() else " (no floor rows in this run)"
        shape = f"B={B}, {H}x{W}"
        ax.set_title(f"networks, {pass_}, {dtype}, {device}, {shape}{floor}", fontsize=9)
        ax.set_xlabel("median time per batch (ms), bars: quartiles; [ ]: the ratio's 95% interval")
        ax.grid(True, axis="x", alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig
