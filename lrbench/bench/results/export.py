"""A run's timed rows in other tools' formats, by name (:data:`FORMATS`).

``github-action-benchmark``: the ``customSmallerIsBetter`` JSON of
benchmark-action/github-action-benchmark, for users who keep their history on its Pages chart: a
list of ``{"name", "unit", "value", "range", "extra"}``, one per ``ok`` row; ``value`` is the
median in milliseconds, ``range`` half the interquartile range (``"± x"``), ``extra`` the rounds,
the revision and the machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pandas as pd

from lrbench.bench.results import metrics


def _github_action_benchmark(frame: pd.DataFrame) -> str:
    timed = frame[frame["status"] == "ok"]
    machines = metrics.machine_of(timed)
    entries = []
    for (_, row), machine in zip(timed.iterrows(), machines, strict=True):
        iqr = float(row["iqr_s"]) if pd.notna(row["iqr_s"]) else math.nan
        entry = {"name": row["case_id"], "unit": "ms", "value": float(row["median_s"]) * 1e3}
        if math.isfinite(iqr):
            entry["range"] = f"± {iqr / 2 * 1e3:.4g}"
        rounds = int(row["rounds"]) if pd.notna(row["rounds"]) else "?"
        entry["extra"] = f"{rounds} rounds; git {row['git_rev'] or '?'}; {machine}"
        entries.append(entry)
    return json.dumps(entries, indent=2, ensure_ascii=False) + "\n"


# format name -> rows to the file's text
FORMATS: dict[str, Callable[[pd.DataFrame], str]] = {
    "github-action-benchmark": _github_action_benchmark,
}


def export(frame: pd.DataFrame, fmt: str) -> str:
    """``frame`` (a run's rows) as format ``fmt``; an unknown format lists those that exist."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return FORMATS[fmt](frame)
