"""PNG plots of a run, drawn from its CSV rows only (matplotlib).

Figures are ``matplotlib.figure.Figure`` objects saved directly (Agg, chosen by the file type),
never through pyplot: importing or calling this module leaves the user's backend and pyplot's
figure list alone (a notebook keeps its inline backend).

Each function takes the run's rows and a path, draws only from the data present, and returns
``False`` (writing nothing) when the rows hold nothing to plot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrbench.bench.results.metrics import shape_of

MIB = 2**20
FAMILY = ["target", "B", "C", "H", "W", "k", "m", "stride", "dtype", "device"]


def timed(frame: pd.DataFrame, target: str | None = "op") -> pd.DataFrame:
    """The ``ok`` rows (of one target, unless ``target`` is None)."""
    rows = frame[frame["status"] == "ok"]
    return rows if target is None else rows[rows["target"] == target]


def sweep(frame: pd.DataFrame, axis: str) -> pd.DataFrame:
    """The op rows of the largest family of shapes that differ only along ``axis``
    (``"k"``, or ``"H"`` for H = W); empty if no family has two values."""
    rows = timed(frame)
    if axis == "H":
        rows = rows[rows["H"] == rows["W"]]
    fixed = [c for c in FAMILY if c not in ({"k"} if axis == "k" else {"H", "W"})]
    if rows.empty:
        return rows
    sizes = rows.groupby(fixed, dropna=False)[axis].nunique()
    if sizes.max() < 2:
        return rows.iloc[:0]
    best = sizes.idxmax()
    mask = np.logical_and.reduce([rows[c] == v for c, v in zip(fixed, best, strict=True)])
    return rows[mask]


def _family_title(rows: pd.DataFrame, axis: str) -> str:
    first = rows.iloc[0]
    parts = [f"B={first['B']}", f"C={first['C']}"]
    parts += [f"{first['H']}x{first['W']}"] if axis == "k" else [f"k={first['k']}"]
    parts += [f"m={first['m']}", f"s={first['stride']}", first["dtype"], first["device"]]
    return ", ".join(str(p) for p in parts)


def _by_pass(rows: pd.DataFrame, path: Path, axis: str, value, ylabel: str, title: str,
             loglog: bool = False) -> bool:
    if rows.empty:
        return False
    passes = sorted(rows["pass"].unique())
    fig = Figure(figsize=(5.5 * len(passes), 4))
    axes = fig.subplots(1, len(passes), squeeze=False)
    for ax, pass_ in zip(axes[0], passes, strict=True):
        for impl, group in rows[rows["pass"] == pass_].groupby("impl"):
            group = group.sort_values(axis)
            ax.plot(group[axis], value(group), marker="o", label=impl)
        ax.set_yscale("log")
        if loglog:
            ax.set_xscale("log")
        ax.set_xlabel({"k": "kernel size k", "H": "input size H = W"}[axis])
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}, {pass_}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(_family_title(rows, axis), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def time_vs_k(frame: pd.DataFrame, path: Path) -> bool:
    """Median time against k, one line per implementation, one panel per pass."""
    return _by_pass(sweep(frame, "k"), path, "k", lambda g: g["median_s"] * 1e3,
                    "median time (ms)", "op time vs k")


def memory_vs_k(frame: pd.DataFrame, path: Path) -> bool:
    """Peak extra memory against k, one line per implementation, one panel per pass."""
    return _by_pass(sweep(frame, "k"), path, "k", lambda g: g["peak_bytes"] / MIB,
                    "peak extra memory (MiB)", "op memory vs k")


def size_exponents(frame: pd.DataFrame) -> pd.DataFrame:
    """Per implementation and pass: the fitted exponent ``a`` of ``time ~ H^a`` over the size
    sweep, beside the closed form's (the same fit of the MAC count)."""
    rows = sweep(frame, "H")
    out = []
    for (impl, pass_), group in rows.groupby(["impl", "pass"]):
        if group["H"].nunique() < 2:
            continue
        log_h = np.log(group["H"].astype(float))
        out.append({
            "impl": impl, "pass": pass_,
            "sizes": ",".join(str(h) for h in sorted(group["H"].unique())),
            "fitted exponent": np.polyfit(log_h, np.log(group["median_s"].astype(float)), 1)[0],
            "closed-form exponent": np.polyfit(log_h, np.log(group["macs"].astype(float)), 1)[0],
        })
    return pd.DataFrame(out)


def time_vs_size(frame: pd.DataFrame, path: Path) -> bool:
    """Median time against H = W (log-log), legend with the fitted and closed-form exponents."""
    rows = sweep(frame, "H")
    if rows.empty:
        return False
    exponents = size_exponents(frame).set_index(["impl", "pass"])
    rows = rows.assign(impl=[
        f"{r['impl']} (fit {exponents.loc[(r['impl'], r['pass']), 'fitted exponent']:.2f}, "
        f"closed form {exponents.loc[(r['impl'], r['pass']), 'closed-form exponent']:.2f})"
        if (r["impl"], r["pass"]) in exponents.index else r["impl"]
        for _, r in rows.iterrows()
    ])
    return _by_pass(rows, path, "H", lambda g: g["median_s"] * 1e3, "median time (ms)",
                    "op time vs size", loglog=True)


def _barh(labels: list[str], values: list[float], path: Path, xlabel: str, title: str,
          reference: float | None = None, log: bool = False) -> bool:
    if not values:
        return False
    fig = Figure(figsize=(8, 1.2 + 0.28 * len(values)))
    ax = fig.subplots()
    ax.barh(range(len(values)), values, color="tab:blue")
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    if reference is not None:
        ax.axvline(reference, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def speedup_vs_baseline(frame: pd.DataFrame, path: Path) -> bool:
    """Speedup against the case's baseline, one bar per (implementation, case)."""
    rows = timed(frame, None)
    rows = rows[(rows["impl"] != rows["baseline"]) & rows["speedup_vs_baseline"].notna()]
    labels = [f"{r['target']} {r['impl']} {shape_of(r['case_id'])} {r['dtype']} "
              f"{r['device']} {r['pass']}" for _, r in rows.iterrows()]
    names = ", ".join(sorted(rows["baseline"].unique()))
    return _barh(labels, list(rows["speedup_vs_baseline"]), path,
                 f"speedup vs baseline ({names}): baseline median / median; >1 is faster",
                 "speedup vs baseline", reference=1.0, log=True)


def network_throughput(frame: pd.DataFrame, path: Path) -> bool:
    """Images per second of the whole networks, forward and training step."""
    rows = timed(frame, None)
    rows = rows[rows["target"].isin(["lrnet50", "resnet50"])]
    labels = [f"{r['target']} {r['impl']} B{r['B']} {r['H']}x{r['W']} {r['dtype']} "
              f"{r['device']} {r['pass']}" for _, r in rows.iterrows()]
    return _barh(labels, list(rows["items_per_s"]), path, "images / s", "network throughput")


def roofline(frame: pd.DataFrame, path: Path) -> bool:
    """Achieved GMAC/s against arithmetic intensity (MACs per minimal byte), log-log: one point
    per timed case coloured by implementation, marker by pass, under the compute roof (measured
    GEMM peak) and the bandwidth roof (measured copy rate x intensity) of each device and dtype
    (the median of the rows' measurements)."""
    rows = timed(frame, None)
    needed = ["achieved_gmacs_per_s", "intensity_macs_per_byte", "peak_gmacs_per_s",
              "peak_gb_per_s"]
    if rows.empty or any(c not in rows for c in needed):
        return False
    rows = rows.dropna(subset=needed)
    rows = rows[(rows["achieved_gmacs_per_s"] > 0) & (rows["intensity_macs_per_byte"] > 0)]
    if rows.empty:
        return False
    fig = Figure(figsize=(7.5, 5))
    ax = fig.subplots()
    lo = rows["intensity_macs_per_byte"].min() / 4
    hi = rows["intensity_macs_per_byte"].max() * 4
    x = np.geomspace(lo, hi, 200)
    for (device, dtype), group in rows.groupby(["device", "dtype"]):
        peak, bandwidth = group["peak_gmacs_per_s"].median(), group["peak_gb_per_s"].median()
        ax.plot(x, np.minimum(peak, bandwidth * x), color="black", linewidth=1.2)
        ax.annotate(f"{device} {dtype}: GEMM {peak:.0f} GMAC/s, copy {bandwidth:.0f} GB/s",
                    (x[-1], peak), ha="right", va="bottom", fontsize=7)
    markers = dict(zip(["fwd", "bwd", "fwd_bwd", "train"], "os^D", strict=True))
    colours = {impl: f"C{i % 10}" for i, impl in enumerate(sorted(rows["impl"].unique()))}
    for (impl, pass_), group in rows.groupby(["impl", "pass"]):
        ax.scatter(group["intensity_macs_per_byte"], group["achieved_gmacs_per_s"],
                   color=colours[impl], marker=markers.get(pass_, "x"), s=22,
                   label=f"{impl} {pass_}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (closed-form MACs / minimal bytes)")
    ax.set_ylabel("achieved GMAC/s (backward = 2x forward MACs)")
    ax.set_title("roofline: measured GEMM peak and copy bandwidth")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


PLOTS = {
    "time_vs_k.png": time_vs_k,
    "time_vs_size.png": time_vs_size,
    "memory_vs_k.png": memory_vs_k,
    "speedup_vs_baseline.png": speedup_vs_baseline,
    "network_throughput.png": network_throughput,
    "roofline.png": roofline,
}
