"""The PNG plots of a run, drawn from its CSV rows only (:mod:`lrbench.bench.figures`).

:data:`FIGURES` maps each file name to a function of the rows that returns a
``matplotlib.figure.Figure``, or None when the rows hold nothing to draw; :func:`draw` saves those
that have data, each with its caption line (command, machine, date of the data).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lrbench.bench.figures import canvas
from lrbench.bench.figures.network import networks
from lrbench.bench.figures.roofline import roofline as roofline_figure
from lrbench.bench.figures.rows import provenance, sweep, timed  # noqa: F401  (the report's helpers)
from lrbench.bench.figures.speedups import speedup_vs_baseline
from lrbench.bench.figures.stages import per_stage
from lrbench.bench.figures.sweeps import memory_vs_k, time_vs_k, time_vs_size

FIGURES = {
    "per_stage.png": per_stage,
    "networks.png": networks,
    "time_vs_k.png": time_vs_k,
    "time_vs_size.png": time_vs_size,
    "memory_vs_k.png": memory_vs_k,
    "speedup_vs_baseline.png": speedup_vs_baseline,
    "roofline.png": roofline_figure,
}
# Plots earlier versions drew; a report removes them when it no longer draws them.
RETIRED = ("network_throughput.png",)


def draw(frame: pd.DataFrame, out_dir: Path, command: str = "", prefix: str = "") -> list[str]:
    """Save every figure with data as ``out_dir/prefix+name``; returns the names written."""
    written = []
    for name, figure in FIGURES.items():
        fig = figure(frame)
        if fig is not None:
            canvas.save(fig, out_dir / f"{prefix}{name}", provenance(frame, command))
            written.append(f"{prefix}{name}")
    return written


def roofline(frame: pd.DataFrame, path: Path, command: str = "") -> bool:
    """Save the roofline figure to ``path``; False (nothing written) without the data."""
    fig = roofline_figure(frame)
    if fig is not None:
        canvas.save(fig, path, provenance(frame, command))
    return fig is not None
