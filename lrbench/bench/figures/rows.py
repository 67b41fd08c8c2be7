"""What a figure draws from: the timed rows, sweeps along one axis, each row's series label, its
spread, and the caption line that says where the data came from."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrbench.bench.matrix.axes import FORMATS
from lrbench.bench.results import records
from lrbench.bench.results.metrics import impl_of, machine_of

FAMILY = ["target", "B", "C", "H", "W", "k", "m", "stride", "dtype", "device", "memory_format"]
NETWORK_TARGETS = ("lrnet50", "resnet50", "network")  # whole networks (the floor is one of their rows)
FLOOR = "floor"  # the impl of LR-Net-50's rows with the op replaced by a free stand-in


def timed(frame: pd.DataFrame, target: str | None = "op") -> pd.DataFrame:
    """The ``ok`` rows (of one target, unless ``target`` is None)."""
    rows = frame[frame["status"] == "ok"]
    return rows if target is None else rows[rows["target"] == target]


def label(row: pd.Series) -> str:
    """The name a row is drawn (and coloured) under: the implementation as run
    (``unfold@inductor``), ``conv3x3``, ``natten``, ``resnet50`` or ``floor``."""
    if row["target"] in ("conv3x3", "resnet50", "natten"):
        return row["target"]
    if row["impl"] == FLOOR:
        return FLOOR
    try:
        return impl_of(row["case_id"])
    except ValueError:
        return str(row["impl"])


def labelled(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with a ``label`` column (:func:`label`)."""
    return rows.assign(label=[label(r) for _, r in rows.iterrows()] if len(rows) else [])


def families(frame: pd.DataFrame, axis: str, least: int = 2) -> list[pd.DataFrame]:
    """The op rows grouped into families of shapes that differ only along ``axis`` (``"k"``, or
    ``"H"`` for H = W), those with at least ``least`` values of it, largest first (of equal ones,
    the default memory format's first)."""
    rows = timed(frame)
    if axis == "H":
        rows = rows[rows["H"] == rows["W"]]
    if rows.empty:
        return []
    fixed = [c for c in FAMILY if c in rows and c not in ({"k"} if axis == "k" else {"H", "W"})]
    found = [group for _, group in rows.groupby(fixed, dropna=False, sort=True)
             if group[axis].nunique() >= least]
    return sorted(found, key=lambda g: (-g[axis].nunique(), bool(format_words(_format_of(g)))))


def _format_of(rows: pd.DataFrame) -> str:
    return str(rows["memory_format"].iloc[0]) if "memory_format" in rows else ""


def sweep(frame: pd.DataFrame, axis: str) -> pd.DataFrame:
    """The op rows of the largest family along ``axis`` (:func:`families`); empty if none has
    two values."""
    found = families(frame, axis)
    return found[0] if found else frame.iloc[:0]


def family_title(rows: pd.DataFrame, axis: str) -> str:
    first = rows.iloc[0]
    parts = [f"B={first['B']}", f"C={first['C']}"]
    parts += [f"{first['H']}x{first['W']}"] if axis == "k" else [f"k={first['k']}"]
    parts += [f"m={first['m']}", f"s={first['stride']}", first["dtype"], first["device"]]
    return ", ".join(str(p) for p in parts + format_words(first.get("memory_format", "")))


def format_words(fmt: str) -> list[str]:
    """``[fmt]`` for a memory format other than the default (``channels_last``), else ``[]``: what
    a title or legend adds to name it."""
    return [fmt] if fmt and fmt != FORMATS[0] else []


def quartiles(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first and third quartile of its time per call (seconds).

    From the row's rounds (``rounds_s``) where it has at least two; otherwise (CSVs written
    before rounds were kept) the median -/+ half the IQR column: the IQR's length, centred on the
    median, since the quartiles themselves were not recorded. A row with neither has no spread
    (both ends at its median).
    """
    low, high = [], []
    for _, row in rows.iterrows():
        median = float(row["median_s"])
        rounds = records.parse_rounds(row.get("rounds_s", ""))
        if len(rounds) >= 2:
            q1, q3 = np.percentile(rounds, [25, 75])
        else:
            half = float(row["iqr_s"]) / 2 if pd.notna(row.get("iqr_s")) else 0.0
            q1, q3 = median - half, median + half
        low.append(min(q1, median))
        high.append(max(q3, median))
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def has_rounds(row: pd.Series) -> bool:
    return len(records.parse_rounds(row.get("rounds_s", ""))) >= 2


def provenance(rows: pd.DataFrame, command: str) -> str:
    """The caption line of a figure: the command, the machine(s) and the date(s) of the data."""
    machines = sorted(set(machine_of(rows))) if len(rows) else []
    stamps = sorted(str(t)[:10] for t in rows.get("timestamp", pd.Series(dtype=str)) if str(t)
                    and str(t) != "nan")
    dates = (stamps[0] if stamps[0] == stamps[-1] else f"{stamps[0]} to {stamps[-1]}") \
        if stamps else "date unknown"
    return " | ".join([f"`{command}`" if command else "", "; ".join(machines) or "machine unknown",
                       f"data of {dates}"]).strip(" |").replace("`", "")
