"""Tidy records: one CSV row per case, appended as each case finishes; resume and merge.

Every row has the same columns (:data:`COLUMNS`). ``status`` is the last column, so a line cut
short by a killed run has none and is dropped (and its case rerun) on ``--resume``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lrbench.bench.results import metrics
from lrbench.files import atomic_open

RESULTS = "results.csv"
STATUSES = ("ok", "skipped", "failed", "error")
# What the accuracy gate held the row to (lrbench.accuracy.limits): the limit of the value that
# came closest to it (gate_value: "y", a gradient, or the network's logits), where the limit came
# from ("suite", or "implementation" for a declared loosening), and the worst error over it.
GATE_COLUMNS = ["atol", "rtol", "limit_source", "err_over_limit", "gate_value"]
COLUMNS = [
    "case_id", "target", "impl", "B", "C", "H", "W", "k", "m", "stride", "dtype", "device", "pass",
    "compile", "median_s", "iqr_s", "stddev_s", "min_s", "mean_s", "rounds", "iterations", "timer",
    "compile_s",
    "macs", "macs_source", "gmacs_per_s", "items_per_s", "speedup_vs_unfold",
    "baseline", "speedup_vs_baseline",
    "peak_bytes", "output_bytes", "max_abs_err", "oracle", *GATE_COLUMNS, "memory_format",
    "min_bytes", "peak_gmacs_per_s", "peak_gb_per_s", "achieved_gmacs_per_s", "pct_of_peak",
    "intensity_macs_per_byte", "roofline_gmacs_per_s", "roofline_bound", "pct_of_roofline",
    "threads", "load_1m", "load_1m_after", "cpus", "cpu_governor", "cpu_mhz",
    "gpu_sm_mhz", "gpu_mem_mhz", "gpu_power_w", "gpu_temp_c", "gpu_throttle",
    "cpu", "gpu", "torch", "triton", "fvcore", "python", "git_rev", "timestamp",
    "rounds_s", "reason", "status",
]


# Columns of text: read back as strings ("" when empty), never as an all-NaN float column.
TEXT_COLUMNS = ["case_id", "target", "impl", "dtype", "device", "pass", "compile", "macs_source",
                "oracle", "limit_source", "gate_value", "baseline", "timer", "memory_format",
                "roofline_bound", "cpu_governor", "gpu_throttle",
                "cpu", "gpu", "torch", "triton", "fvcore", "python", "git_rev", "timestamp",
                "rounds_s", "reason", "status"]


def format_rounds(times_s) -> str:
    """A case's timed rounds (seconds per call, in the order measured) as one CSV cell."""
    return " ".join(f"{float(t):.6e}" for t in times_s)


def parse_rounds(cell: str) -> list[float]:
    """The rounds of :func:`format_rounds` back as floats (empty for a row without them)."""
    return [float(t) for t in str(cell).split()] if cell else []


def results_path(location: str | Path) -> Path:
    """``location`` if it is a CSV file, else ``location/results.csv``."""
    location = Path(location)
    return location if location.suffix == ".csv" else location / RESULTS


def append_row(path: str | Path, row: dict) -> None:
    """Append one row (missing columns empty), writing the header if the file is new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"row has unknown columns {sorted(unknown)}")
    if row.get("status") not in STATUSES:
        raise ValueError(f"row status must be one of {STATUSES}, got {row.get('status')!r}")
    # An existing file keeps its own header (e.g. written by an older version, without a column).
    existing = path.exists() and path.stat().st_size > 0
    if existing:
        with path.open() as handle:
            columns = handle.readline().strip().split(",")
    else:
        columns = COLUMNS
    frame = pd.DataFrame([row]).reindex(columns=columns)
    with path.open("a", newline="") as handle:
        frame.to_csv(handle, header=not existing, index=False)
        handle.flush()


def load(location: str | Path) -> pd.DataFrame:
    """The rows of a run (a CSV or a run directory), with the derived metrics
    (:func:`lrbench.bench.results.metrics.derive`); rows without a valid status are dropped."""
    path = results_path(location)
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}")
    frame = pd.read_csv(path, on_bad_lines="skip", dtype={c: str for c in TEXT_COLUMNS})
    frame = frame[frame["status"].isin(STATUSES)].reindex(columns=COLUMNS)
    frame[TEXT_COLUMNS] = frame[TEXT_COLUMNS].astype(object).fillna("").astype(str)
    return metrics.derive(frame.reset_index(drop=True))


def done_ids(location: str | Path) -> set[str]:
    """Case ids already recorded (any status) in a run; empty if there is no file yet."""
    path = results_path(location)
    return set(load(path)["case_id"]) if path.exists() else set()


def merge_runs(locations: list[str | Path]) -> pd.DataFrame:
    """Rows of several runs (e.g. shards, or machines) joined: one per case id and machine
    (:func:`lrbench.bench.results.metrics.machine_of`), an ``ok`` row preferred, later pieces winning
    ties; derived metrics (speedups, within each machine) recomputed across pieces."""
    if not locations:
        raise ValueError("merge needs at least one run to read")
    frame = pd.concat([load(location) for location in locations], ignore_index=True)
    frame["_rank"] = (frame["status"] == "ok").astype(int)
    frame["_machine"] = metrics.machine_of(frame)
    frame = frame.reset_index().sort_values(["_rank", "index"], kind="stable")
    frame = frame.drop_duplicates(["_machine", "case_id"], keep="last").sort_values("index")
    return metrics.derive(frame.drop(columns=["_rank", "_machine", "index"])
                          .reset_index(drop=True))


def write(frame: pd.DataFrame, location: str | Path) -> Path:
    """Write ``frame`` as a run's CSV, replacing it atomically (:mod:`lrbench.files`); returns the
    path."""
    path = results_path(location)
    with atomic_open(path, newline="") as handle:
        frame.reindex(columns=COLUMNS).to_csv(handle, index=False)
    return path
