"""One case over a series of runs: a line per implementation, the quartile range as a band, and
the verdicts between consecutive runs as markers (:mod:`lrbench.bench.pages.history`)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from lrbench.bench.figures import canvas, palette
from lrbench.bench.figures.rows import quartiles

MARKS = {"slower": ("^", "#c00000"), "faster": ("v", "#008000")}


def case_history(rows: pd.DataFrame, title: str, ticks: list[str]) -> Figure:
    """``rows``: columns run, label, pass, median_s, iqr_s, rounds, rounds_s, verdict;
    ``ticks``: the label of every run (index = run)."""
    fig = canvas.new(max(5.0, 1.1 * len(ticks) + 2.5), 3.6)
    ax = fig.subplots()
    for impl, group in rows.groupby("label", sort=True):
        group = group.sort_values("run")
        median = group["median_s"].to_numpy(dtype=float) * 1e3
        low, high = quartiles(group)
        colour = palette.colour(impl)
        ax.fill_between(group["run"], low * 1e3, high * 1e3, color=colour, alpha=0.2, linewidth=0)
        ax.plot(group["run"], median, color=colour, marker=palette.marker(group["pass"].iloc[0]),
                markersize=4, label=impl)
        for verdict, (mark, mark_colour) in MARKS.items():
            hit = group["verdict"].str.startswith(verdict).to_numpy()
            if hit.any():
                ax.scatter(group["run"][hit], high[hit] * 1e3 * 1.15, marker=mark, s=40,
                           color=mark_colour, zorder=3,
                           label=verdict if verdict not in ax.get_legend_handles_labels()[1]
                           else None)
    ax.set_xticks(range(len(ticks)), ticks, fontsize=7)
    ax.set_xlim(-0.5, len(ticks) - 0.5)
    ax.set_yscale("log")
    ax.set_ylabel("median time (ms), band: quartiles")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig
