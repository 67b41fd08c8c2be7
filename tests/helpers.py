"""Helpers that several test modules share (one copy of each)."""

from __future__ import annotations

import pandas as pd

from lrbench.bench.results import records


def outcome(location) -> pd.DataFrame:
    """A run's (case id, status) pairs, sorted: what two runs that should agree must share."""
    frame = records.load(location)
    return frame[["case_id", "status"]].sort_values("case_id").reset_index(drop=True)
