"""Comparing two runs case by case: which cases got slower by more than a threshold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lrbench.bench.results import metrics, records


def parse_threshold(text: str) -> float:
    """``"10%"`` -> ``0.10``; anything but a non-negative percentage is a ValueError."""
    value = str(text).strip()
    if not value.endswith("%"):
        raise ValueError(f"threshold must be a percentage such as 10%, got {text!r}")
    try:
        fraction = float(value[:-1]) / 100
    except ValueError:
        raise ValueError(f"threshold must be a percentage such as 10%, got {text!r}") from None
    if not fraction >= 0:
        raise ValueError(f"threshold must be >= 0%, got {text!r}")
    return fraction


@dataclass
class Comparison:
    """Cases timed in both runs, with ``ratio`` = new median / base median.

    Attributes:
        table: one row per common ``ok`` case: case_id, base_s, new_s, ratio, regressed.
        threshold: fraction; a case regressed when ``ratio > 1 + threshold``.
        only_base, only_new: case ids timed in one run only.
        broken: case ids timed in BASE that NEW recorded as ``failed`` or ``error``.
    """

    table: pd.DataFrame
    threshold: float
    only_base: list[str]
    only_new: list[str]
    broken: list[str]

    @property
    def regressions(self) -> pd.DataFrame:
        return self.table[self.table["regressed"]]


def compare_runs(base: str | Path, new: str | Path, threshold: float) -> Comparison:
    """Compare the ``ok`` rows of two runs (directories or CSVs) by median time."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")

    base_rows, new_rows = records.load(base), records.load(new)
    for name, rows in (("BASE", base_rows), ("NEW", new_rows)):
        machines = metrics.machine_of(rows).unique()
        if len(machines) > 1:  # a case id would stand for several machines' times
            raise ValueError(f"{name} has rows of {len(machines)} machines ({'; '.join(machines)});"
                             " compare runs of one machine each")

    def timed(frame: pd.DataFrame) -> pd.Series:
        frame = frame[frame["status"] == "ok"]
        return frame.set_index("case_id")["median_s"].astype(float)

    base_s, new_s = timed(base_rows), timed(new_rows)
    new_bad = new_rows[new_rows["status"].isin(["failed", "error"])]["case_id"]
    common = base_s.index.intersection(new_s.index)
    table = pd.DataFrame({"base_s": base_s[common], "new_s": new_s[common]})
    table["ratio"] = table["new_s"] / table["base_s"]
    table["regressed"] = table["ratio"] > 1 + threshold
    table = table.sort_values("ratio", ascending=False).reset_index(names="case_id")
    return Comparison(table=table, threshold=threshold,
                      only_base=sorted(set(base_s.index) - set(common)),
                      only_new=sorted(set(new_s.index) - set(common)),
                      broken=sorted(set(base_s.index) & set(new_bad)))
