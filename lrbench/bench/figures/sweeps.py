"""Time and memory along one axis (k, or H = W): one line per implementation, one panel per pass,
each median with its quartile range as error bars; the size sweep with its fitted curves."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from lrbench.bench.figures import canvas, palette
from lrbench.bench.figures.rows import family_title, labelled, quartiles, sweep
from lrbench.bench.figures.spread import error_bars
from lrbench.bench.results import fits

MIB = 2**20
XLABEL = {"k": "kernel size k", "H": "input size H = W"}


def _panels(rows: pd.DataFrame, axis: str, ylabel: str, title: str,
            draw: Callable, loglog: bool = False) -> Figure | None:
    if rows.empty:
        return None
    rows = labelled(rows)
    passes = sorted(rows["pass"].unique())
    fig = canvas.new(5.5 * len(passes), 4.2)
    axes = fig.subplots(1, len(passes), squeeze=False)
    for ax, pass_ in zip(axes[0], passes, strict=True):
        for impl, group in rows[rows["pass"] == pass_].groupby("label"):
            draw(ax, impl, pass_, group.sort_values(axis))
        ax.set_yscale("log")
        if loglog:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
            values = sorted(rows[axis].unique())
            ax.set_xticks(values, [str(v) for v in values])
        ax.set_xlabel(XLABEL[axis])
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}, {pass_}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(family_title(rows, axis), fontsize=9)
    return fig


def _times(axis: str):
    """Draw one implementation's medians (ms) with their quartile range."""
    def draw(ax, impl: str, pass_: str, group: pd.DataFrame, name: str | None = None) -> None:
        low, high = quartiles(group)
        median = group["median_s"].to_numpy(dtype=float)
        ax.errorbar(group[axis], median * 1e3, yerr=error_bars(median, low, high) * 1e3,
                    color=palette.colour(impl), marker=palette.marker(pass_), capsize=3,
                    markersize=4, linewidth=1.2, label=name or impl)
    return draw


def time_vs_k(frame: pd.DataFrame) -> Figure | None:
    """Median time against k (bars: first to third quartile of the rounds)."""
    return _panels(sweep(frame, "k"), "k", "median time (ms), bars: quartiles", "op time vs k",
                   _times("k"))


def memory_vs_k(frame: pd.DataFrame) -> Figure | None:
    """Peak extra memory against k (one measurement per case: an allocation count, no spread)."""
    def draw(ax, impl, pass_, group):
        ax.plot(group["k"], group["peak_bytes"] / MIB, color=palette.colour(impl),
                marker=palette.marker(pass_), label=impl)
    return _panels(sweep(frame, "k"), "k", "peak extra memory (MiB)", "op memory vs k", draw)


def time_vs_size(frame: pd.DataFrame) -> Figure | None:
    """Median time against H = W (log-log) with quartile bars, and each implementation's fit
    ``t0 + c * MACs^b`` dashed (:mod:`lrbench.bench.results.fits`), its verdict in the legend."""
    rows = sweep(frame, "H")
    points = _times("H")

    def draw(ax, impl, pass_, group):
        name = impl
        if group["macs"].nunique() >= 3:
            fit = fits.fit_sweep(group)
            name = (f"{impl}: b={fit.b:.2f} [{fit.low:.2f}, {fit.high:.2f}]"
                    if fit.verdict == "scaling" else f"{impl}: {fit.verdict}")
            sizes = np.geomspace(group["H"].min(), group["H"].max(), 50)
            macs = np.exp(np.interp(np.log(sizes), np.log(group["H"].astype(float)),
                                    np.log(group["macs"].astype(float))))
            ax.plot(sizes, fits.predict(fit, macs, float(group["macs"].max())) * 1e3,
                    color=palette.colour(impl), linestyle=":", linewidth=1)
        points(ax, impl, pass_, group, name)
    return _panels(rows, "H", "median time (ms), bars: quartiles; dotted: fit",
                   "op time vs size", draw, loglog=True)
