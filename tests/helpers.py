"""Helpers that several test modules share (one copy of each)."""

from __future__ import annotations

import pandas as pd

from lrbench.bench.results import records


def outcome(location) -> pd.DataFrame:
    """A run's (case id, status) pairs, sorted: what two runs that should agree must share."""
    frame = records.load(location)
    return frame[["case_id", "status"]].sort_values("case_id").reset_index(drop=True)


def with_rounds(frame: pd.DataFrame, spread: float = 0.02, n: int = 30, seed: int = 0,
                factor: float = 1.0, mask=None) -> pd.DataFrame:
    """``frame`` with synthetic rounds for its ``ok`` rows (``n`` log-normal rounds around each
    median, relative ``spread``), those of ``mask`` (default: all) slowed by ``factor``: a
    comparison's truth, known exactly, whatever the machine's noise was."""
    import numpy as np

    frame = frame.copy()
    rng = np.random.default_rng(seed)
    mask = frame["status"].eq("ok") if mask is None else mask & frame["status"].eq("ok")
    for index in frame.index[frame["status"].eq("ok")]:
        scale = factor if mask[index] else 1.0
        rounds = frame.loc[index, "median_s"] * scale * np.exp(rng.normal(0.0, spread, n))
        frame.loc[index, "rounds_s"] = records.format_rounds(rounds)
        frame.loc[index, "median_s"] = float(np.median(rounds))
    return frame
