"""Speedup against the case's baseline, one bar per (implementation, case), with its interval."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from lrbench.bench.figures import canvas, palette
from lrbench.bench.figures.rows import labelled, timed
from lrbench.bench.figures.spread import BOOTSTRAP, error_bars, speedup
from lrbench.bench.matrix.cases import with_impl
from lrbench.bench.results.metrics import shape_of


def speedup_vs_baseline(frame: pd.DataFrame) -> Figure | None:
    """Baseline median / median per case (log scale), coloured by implementation; bars: the 95%
    bootstrap interval where both sides kept their rounds, else the quartile range (the hatched
    bars)."""
    rows = labelled(timed(frame, None))
    by_id = {r["case_id"]: r for _, r in rows.iterrows()}
    drawn = []
    for _, row in rows.iterrows():
        if not row["baseline"] or row["impl"] == row["baseline"]:
            continue
        base = by_id.get(with_impl(row["case_id"], row["baseline"]))
        if base is not None:
            drawn.append((row, speedup(row, base)))
    if not drawn:
        return None
    fig = canvas.new(8, 1.4 + 0.28 * len(drawn))
    ax = fig.subplots()
    for i, (row, s) in enumerate(drawn):
        ax.barh(i, s.value, color=palette.colour(row["label"]),
                hatch="" if s.source == BOOTSTRAP else "//", edgecolor="white", linewidth=0,
                label=row["label"])
        ax.errorbar(s.value, i, xerr=error_bars([s.value], [s.low], [s.high]), color="black",
                    capsize=2, linewidth=0.8)
    labels = [f"{r['target']} {r['label']} {shape_of(r['case_id'])} {r['dtype']} {r['device']} "
              f"{r['pass']}" for r, _ in drawn]
    ax.set_yticks(range(len(drawn)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    names = ", ".join(sorted({r["baseline"] for r, _ in drawn}))
    ax.set_xlabel(f"speedup vs baseline ({names}): baseline median / median; >1 is faster\n"
                  "bars: 95% bootstrap interval of the rounds; hatched: quartile range, no rounds")
    ax.set_title("speedup vs baseline")
    ax.grid(True, axis="x", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(sorted(zip(names, handles, strict=True), key=lambda p: p[0]))  # one per impl
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    return fig
