"""The paper's picture: per LR-Net-50 stage, each implementation's (and peer's) time beside
ResNet-50's 3x3 convolution at the same stage, with the layer / conv ratio marked.

Stages are the shapes of :data:`lrbench.bench.matrix.presets.LRNET50_STAGES` (the op, the layer,
NATTEN) and :data:`~lrbench.bench.matrix.presets.RESNET50_STAGES` (the conv), matched by batch and
spatial size. One panel per (op or layer, dtype, device, pass); bars are medians with their quartile
range; above each stage, the fastest bar's time over the conv's (``best / conv``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from lrbench.bench.figures import canvas, palette
from lrbench.bench.figures.rows import labelled, quartiles, timed
from lrbench.bench.figures.spread import error_bars
from lrbench.bench.matrix.presets import LRNET50_STAGES, RESNET50_STAGES

PANEL = ["what", "dtype", "device", "pass", "memory_format"]
STAGE = ["B", "H", "W"]
PEERS = ("natten", "flex_attention")  # and every compiled variant (``impl@mode``)


def _order(name: str) -> tuple[int, str]:
    """Ours first, then the peers, the conv last."""
    peer = name.partition("@")[0] in PEERS or "@" in name
    return (2 if name == "conv3x3" else 1 if peer else 0, name)


def _at(rows: pd.DataFrame, stages: list[dict]) -> pd.DataFrame:
    keys = {(s["C"], s["H"], s["W"]) for s in stages}
    mask = [(int(r["C"]), int(r["H"]), int(r["W"])) in keys for _, r in rows.iterrows()]
    return rows[mask] if len(rows) else rows


def stage_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The timed rows at the stages, labelled, with ``what`` = ``op`` or ``layer``."""
    rows = timed(frame, None)
    ours = _at(rows[rows["target"].isin(["op", "natten", "layer"])], LRNET50_STAGES)
    convs = _at(rows[rows["target"] == "conv3x3"], RESNET50_STAGES)
    if ours.empty:
        return ours
    ours = ours.assign(what=np.where(ours["target"] == "layer", "layer", "op"))
    # the conv stands beside both the op and the layer
    convs = pd.concat([convs.assign(what=w) for w in ours["what"].unique()], ignore_index=True)
    return labelled(pd.concat([ours, convs], ignore_index=True))


def _at_stage(rows: pd.DataFrame, stage: tuple[int, int, int]) -> pd.Series:
    return np.logical_and.reduce([rows[c].astype(int) == v for c, v in zip(STAGE, stage,
                                                                             strict=True)])


def _panel(ax, rows: pd.DataFrame, title: str) -> None:
    labels = sorted(rows["label"].unique(), key=_order)
    stages = sorted({tuple(int(v) for v in s) for s in rows[STAGE].to_numpy()}, key=lambda s: -s[1])
    width = 0.8 / len(labels)
    for j, name in enumerate(labels):
        for i, stage in enumerate(stages):
            at = rows[(rows["label"] == name) & _at_stage(rows, stage)]
            if at.empty:
                continue
            median = at["median_s"].to_numpy(dtype=float)
            low, high = quartiles(at)
            ax.bar(i - 0.4 + width * (j + 0.5), median[0] * 1e3, width,
                   yerr=error_bars(median, low, high)[:, :1] * 1e3, capsize=2,
                   color=palette.colour(name), label=name)
    for i, stage in enumerate(stages):
        here = rows[_at_stage(rows, stage)]
        conv, others = here[here["label"] == "conv3x3"], here[here["label"] != "conv3x3"]
        if conv.empty or others.empty:
            continue
        ratio = others["median_s"].min() / conv["median_s"].min()
        ax.annotate(f"best/conv\n{ratio:.1f}x", (i, here["median_s"].max() * 1e3),
                    xytext=(0, 8), textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(range(len(stages)), [f"{h}x{w}\n(B={b})" for b, h, w in stages], fontsize=8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.margins(y=0.25)
    ax.set_ylabel("median time (ms), bars: quartiles")
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))  # one entry per name, not per stage
    ax.legend(unique.values(), unique.keys(), fontsize=6.5, loc="upper left",
              bbox_to_anchor=(1.01, 1))


def per_stage(frame: pd.DataFrame) -> Figure | None:
    """One panel per (op or layer, dtype, device, pass) with the stages side by side."""
    rows = stage_rows(frame)
    panels = [(key, group) for key, group in rows.groupby(PANEL, sort=True)
              if (group["label"] != "conv3x3").any()] if not rows.empty else []
    if not panels:
        return None
    columns = min(2, len(panels))
    lines = -(-len(panels) // columns)
    fig = canvas.new(7.5 * columns, 4.2 * lines)
    axes = fig.subplots(lines, columns, squeeze=False).ravel()
    for ax, ((what, dtype, device, pass_, fmt), group) in zip(axes, panels, strict=False):
        _panel(ax, group, f"LR-Net-50 stages: {what}, {pass_}, {dtype}, {device}, {fmt}")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig
