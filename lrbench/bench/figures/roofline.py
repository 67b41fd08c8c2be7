"""The roofline: achieved GMAC/s against arithmetic intensity (MACs per minimal byte), log-log."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrbench.bench.figures import canvas, palette
from lrbench.bench.figures.rows import format_words, labelled, quartiles, timed
from lrbench.bench.figures.spread import error_bars
from lrbench.bench.matrix.cases import FORMAT_TARGETS
from lrbench.bench.measure.limits import roofs_text
from lrbench.bench.results.conditions import measured_roofs

NEEDED = ["achieved_gmacs_per_s", "intensity_macs_per_byte", "peak_gmacs_per_s", "peak_gb_per_s"]


def roofline(frame: pd.DataFrame) -> Figure | None:
    """One point per timed case coloured by implementation, marker by pass, with the rate's
    quartile range as a vertical bar, under the compute roof (measured GEMM peak) and the
    bandwidth roof (measured copy rate x intensity) of each device and dtype (the median of the
    rows' measurements)."""
    rows = timed(frame, None)
    if rows.empty or any(c not in rows for c in NEEDED):
        return None
    rows = rows.dropna(subset=NEEDED)
    rows = rows[(rows["achieved_gmacs_per_s"] > 0) & (rows["intensity_macs_per_byte"] > 0)]
    if rows.empty:
        return None
    rows = labelled(rows)
    fig = canvas.new(7.5, 5.2)
    ax = fig.subplots()
    x = np.geomspace(rows["intensity_macs_per_byte"].min() / 4,
                     rows["intensity_macs_per_byte"].max() * 4, 200)
    for device, dtype, peak, bandwidth, route in measured_roofs(rows):
        ax.plot(x, np.minimum(peak, bandwidth * x), color="black", linewidth=1.2)
        ax.annotate(f"{device} {dtype}: {roofs_text(peak, bandwidth, route, 0)}",
                    (x[-1], peak), ha="right", va="bottom", fontsize=7)
    # a series per implementation and pass, and apart for a non-default format of the case's own
    # (a network's is its trial's: it joins its implementation's series, as NCHW rows do)
    own = rows["memory_format"].where(rows["target"].isin(FORMAT_TARGETS), "")
    for (impl, pass_, fmt), group in rows.groupby(["label", "pass", own.map(format_words).str.join(" ")]):
        rate = group["achieved_gmacs_per_s"].to_numpy(dtype=float)
        low, high = quartiles(group)  # time quartiles: the rate's are work / Q3 .. work / Q1
        median = group["median_s"].to_numpy(dtype=float)
        ax.errorbar(group["intensity_macs_per_byte"], rate,
                    yerr=error_bars(rate, rate * median / high, rate * median / low),
                    color=palette.colour(impl), marker=palette.marker(pass_), markersize=4.5,
                    linestyle="none", capsize=1.5, elinewidth=0.8,
                    label=" ".join(filter(None, [impl, pass_, fmt])))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (closed-form MACs / minimal bytes)")
    ax.set_ylabel("achieved GMAC/s (backward = 2x forward MACs)")
    ax.set_title("roofline: measured GEMM peak and copy bandwidth")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, ncol=2)
    return fig
