"""Tidy records: one CSV row per case, appended as each case finishes; resume and merge.

Every row has the same columns (:data:`COLUMNS`). A row is recorded once its line ends with a
newline. A line cut short by a killed run (no newline, or no valid ``status``, the last column) is
kept out when the CSV is read, with a warning that says how many lines were dropped
(:class:`DroppedLines`; :func:`read` returns the count), and its case runs again on ``--resume``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lrbench.bench.matrix.axes import FORMATS
from lrbench.bench.matrix.cases import FORMAT_TARGETS
from lrbench.bench.results import metrics
from lrbench.files import atomic_open, atomic_write

RESULTS = "results.csv"
STATUSES = ("ok", "skipped", "failed", "error")
# What the accuracy gate held the row to (lrbench.accuracy.limits): the limit of the value that
# came closest to it (gate_value: "y", a gradient, or the network's logits), where the limit came
# from ("suite", or "implementation" for a declared loosening), and the worst error over it.
GATE_COLUMNS = ["atol", "rtol", "limit_source", "err_over_limit", "gate_value"]
# The reason of a case given up when its job was stopped (lrbench.bench.measure.stopping): such a
# row is not done; the case runs again on --resume and its new row replaces this one.
STOPPED = "stopped:"
COLUMNS = [
    "case_id", "target", "impl", "B", "C", "H", "W", "k", "m", "stride", "dtype", "device", "pass",
    "compile", "median_s", "iqr_s", "stddev_s", "min_s", "mean_s", "rounds", "iterations", "timer",
    "compile_s",
    "macs", "macs_source", "gmacs_per_s", "items_per_s", "speedup_vs_unfold",
    "baseline", "speedup_vs_baseline",
    "peak_bytes", "output_bytes", "max_abs_err", "oracle", *GATE_COLUMNS, "memory_format",
    "min_bytes", "peak_gmacs_per_s", "peak_gb_per_s", "peak_route", "achieved_gmacs_per_s",
    "pct_of_peak",
    "intensity_macs_per_byte", "roofline_gmacs_per_s", "roofline_bound", "pct_of_roofline",
    "threads", "load_1m", "load_1m_after", "cpus", "cpu_governor", "cpu_mhz",
    "gpu_sm_mhz", "gpu_mem_mhz", "gpu_power_w", "gpu_temp_c", "gpu_throttle",
    "cpu", "gpu", "torch", "triton", "fvcore", "python", "git_rev", "allocator", "timestamp",
    "rounds_s", "reason", "status",
]


# Columns of text: read back as strings ("" when empty), never as an all-NaN float column.
TEXT_COLUMNS = ["case_id", "target", "impl", "dtype", "device", "pass", "compile", "macs_source",
                "oracle", "limit_source", "gate_value", "baseline", "timer", "memory_format",
                "roofline_bound", "peak_route", "cpu_governor", "gpu_throttle",
                "cpu", "gpu", "torch", "triton", "fvcore", "python", "git_rev", "allocator",
                "timestamp", "rounds_s", "reason", "status"]


PASS_SEPARATOR = "|"  # between the passes of a case's rounds in one cell: "r r r | r r | r r r"


def format_rounds(times_s) -> str:
    """A case's timed rounds (seconds per call, in the order measured) as one CSV cell."""
    return " ".join(f"{float(t):.6e}" for t in times_s)


def format_passes(passes) -> str:
    """The rounds of each pass over the matrix (``Timing.passes``) as one cell, passes apart."""
    return f" {PASS_SEPARATOR} ".join(format_rounds(rounds) for rounds in passes)


def parse_rounds(cell: str) -> list[float]:
    """Every round of a cell (of :func:`format_rounds` or :func:`format_passes`) as floats, in
    the order measured (empty for a row without them)."""
    return [t for rounds in parse_passes(cell) for t in rounds]


def parse_passes(cell: str) -> list[list[float]]:
    """The rounds of each pass of a cell: one list for a one-pass run, none for a row without
    rounds (an empty or missing cell: None, NaN, pd.NA)."""
    text = "" if cell is None or (not isinstance(cell, str) and pd.isna(cell)) else str(cell)
    passes = [[float(t) for t in part.split()] for part in text.split(PASS_SEPARATOR)]
    return [rounds for rounds in passes if rounds]


def round_stats(times_s) -> dict:
    """The statistics columns of a row recomputed from its rounds (seconds per call): median,
    interquartile range, standard deviation, minimum, mean and count, as pytest-benchmark gives
    them for one pass."""
    x = pd.Series([float(t) for t in times_s], dtype=float)
    if x.empty:
        raise ValueError("rounds: need at least one")
    q1, q3 = x.quantile(0.25), x.quantile(0.75)
    return {"median_s": float(x.median()), "iqr_s": float(q3 - q1),
            "stddev_s": float(x.std()) if len(x) > 1 else 0.0, "min_s": float(x.min()),
            "mean_s": float(x.mean()), "rounds": int(len(x))}


def add_pass(location: str | Path, case_id: str, times_s) -> int:
    """Add one more pass's rounds to the ``ok`` row of ``case_id`` (see :func:`add_passes`);
    returns the row's passes now."""
    return add_passes(location, {case_id: times_s})[case_id]


def add_passes(location: str | Path, new: dict[str, list[float]]) -> dict[str, int]:
    """Add one more pass's rounds to the ``ok`` row of each case id of ``new`` and recompute the
    rows' statistics over every pass; the CSV is rewritten once, atomically. Returns each row's
    passes now.

    Raises:
        KeyError: the run has no ``ok`` row of one of the case ids (nothing is written).
        ValueError: the CSV has lines that cannot be read (rewriting would lose them).
    """
    path = results_path(location)
    loaded = read(path)
    if loaded.dropped:  # rewriting would lose those lines for good
        raise ValueError(f"location: {path} has {loaded.dropped} line(s) that cannot be read; "
                         "not rewritten")
    frame = loaded.rows
    ok = frame.index[frame["status"] == "ok"]
    where = dict(zip(frame.loc[ok, "case_id"], ok, strict=True))  # a case's last ok row
    missing = [case_id for case_id in new if case_id not in where]
    if missing:
        raise KeyError(f"case_id: no ok row of {missing[0]!r} in {path}")
    stats = list(round_stats([0.0]))  # its columns
    frame[stats] = frame[stats].astype(float)  # a column read as all-integer (iqr_s of zeros)
    counts = {}
    for case_id, times_s in new.items():
        index = where[case_id]
        passes = [*parse_passes(frame.at[index, "rounds_s"]), [float(t) for t in times_s]]
        for column, value in round_stats([t for rounds in passes for t in rounds]).items():
            frame.at[index, column] = value
        frame.at[index, "rounds_s"] = format_passes(passes)
        counts[case_id] = len(passes)
    write(metrics.derive(frame), path)
    return counts


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
        _drop_cut_line(path)
        with path.open() as handle:
            columns = handle.readline().strip().split(",")
    else:
        columns = COLUMNS
    frame = pd.DataFrame([row]).reindex(columns=columns)
    with path.open("a", newline="") as handle:
        frame.to_csv(handle, header=not existing, index=False)
        handle.flush()


class DroppedLines(UserWarning):
    """Lines of a results CSV that were kept out: cut short by a kill, or unreadable."""


@dataclass(frozen=True)
class Loaded:
    """The rows of a CSV and how many of its lines were kept out of them."""

    path: Path
    rows: pd.DataFrame
    dropped: int  # lines cut short (no newline) or unreadable (bad field count, no valid status)


def _drop_cut_line(path: Path) -> None:
    """Before appending: a last line without its newline (a killed writer's) is removed, so the
    next row starts a line of its own. The file is rewritten whole (atomically), with a warning."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data[:data.rfind(b"\n") + 1]
    warnings.warn(f"{path}: removed its last line, cut short by a killed run "
                  f"({len(data) - len(keep)} bytes); that case runs again", DroppedLines,
                  stacklevel=3)
    atomic_write(path, keep)


def read(location: str | Path) -> Loaded:
    """The rows of a run (a CSV or a run directory) with the derived metrics
    (:func:`lrbench.bench.results.metrics.derive`), and the count of lines kept out: a last line
    without its newline, lines with too many fields, rows without a valid status. A ``stopped:``
    row followed by a later row of its case is replaced by that row. Never warns; see :func:`load`.
    """
    path = results_path(location)
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}")
    data = path.read_bytes()
    dropped = 0
    if data and not data.endswith(b"\n"):  # the writer was killed in the middle of this line
        data = data[:data.rfind(b"\n") + 1]
        dropped += 1
    bad: list[list[str]] = []
    lines = data.count(b"\n") - 1  # rows: no cell holds a newline
    with _any_field_size():
        frame = pd.read_csv(io.BytesIO(data), engine="python", on_bad_lines=bad.append,
                            dtype={c: str for c in TEXT_COLUMNS}) if lines >= 0 \
            else pd.DataFrame(columns=COLUMNS)
    valid = frame["status"].isin(STATUSES) if "status" in frame else pd.Series(False, frame.index)
    unseen = max(lines - len(frame) - len(bad), 0)  # lines the parser skipped without a word
    dropped += len(bad) + int((~valid).sum()) + unseen
    frame = frame[valid].reindex(columns=COLUMNS)
    frame[TEXT_COLUMNS] = frame[TEXT_COLUMNS].astype(object).fillna("").astype(str)
    stopped = frame["reason"].str.startswith(STOPPED)
    superseded = stopped & frame.duplicated("case_id", keep="last")
    frame = frame[~superseded]
    # Rows written before the format axis: an op, layer or conv3x3 case ran contiguous.
    unset = (frame["memory_format"] == "") & frame["target"].isin(FORMAT_TARGETS)
    frame.loc[unset, "memory_format"] = FORMATS[0]
    return Loaded(path=path, rows=metrics.derive(frame.reset_index(drop=True)), dropped=dropped)


@contextlib.contextmanager
def _any_field_size():
    """Lift the csv module's cell size limit (131,072 characters, which pandas' python engine
    obeys by skipping the line without a word) for one read: a case's rounds can be longer
    (5 passes of 2,800 rounds of a 0.035 ms case are 180,000 characters)."""
    before = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def load(location: str | Path) -> pd.DataFrame:
    """:func:`read`'s rows; warns (:class:`DroppedLines`) when lines were kept out."""
    loaded = read(location)
    if loaded.dropped:
        warnings.warn(f"{loaded.path}: {loaded.dropped} line(s) kept out (cut short by a killed "
                      "run, or unreadable); their cases count as not done", DroppedLines,
                      stacklevel=2)
    return loaded.rows


def done_ids(location: str | Path) -> set[str]:
    """Case ids already recorded in a run (any status, except ``stopped:`` rows: those cases run
    again); empty if there is no file yet."""
    path = results_path(location)
    if not path.exists():
        return set()
    rows = load(path)
    return set(rows.loc[~rows["reason"].str.startswith(STOPPED), "case_id"])


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
