"""Comparing two runs case by case, on their raw rounds: is a case slower, faster, unchanged, or
can the data not tell?

Each case's rounds (``rounds_s``: every timed round in seconds per call, pass by pass) of BASE and
NEW go to :mod:`lrbench.bench.results.stats`. When each side holds the same number (two or more)
of runs of a case, in the order run (``lrbench ab``'s interleaved repeats), run ``i`` of BASE and
run ``i`` of NEW are a pair and :func:`~lrbench.bench.results.stats.compare_pairs` decides, with
the run as the unit. Otherwise every pass of every run is a unit
(:func:`~lrbench.bench.results.stats.compare_passes`): runs made with ``--passes 2`` or more get
verdicts; runs of one pass get the ratio, its interval on the rounds and the rank test, and at most
``unsure``, with the reason. A run made before rounds were kept has only its median, compared as a
pass of one round. The p-values are then adjusted over the comparison's cases (Benjamini-Hochberg):
``alpha`` bounds the share of false calls among them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lrbench.bench.results import metrics, records, stats

# the order of the table: what needs attention first
VERDICT_ORDER = {"slower": 0, "unsure": 1, "faster": 2, "unchanged": 3}
TABLE_COLUMNS = ["case_id", "verdict", "unstable", "base_s", "new_s", "ratio", "low", "high",
                 "p_value", "p_adjusted", "base_rounds", "new_rounds", "pairs", "passes", "note"]


def parse_threshold(text: str) -> float:
    """``"10%"`` -> ``0.10``; anything but a positive percentage is a ValueError."""
    value = str(text).strip()
    if not value.endswith("%"):
        raise ValueError(f"threshold must be a percentage such as 10%, got {text!r}")
    try:
        fraction = float(value[:-1]) / 100
    except ValueError:
        raise ValueError(f"threshold must be a percentage such as 10%, got {text!r}") from None
    if not fraction > 0:
        raise ValueError(f"threshold must be > 0%, got {text!r}")
    return fraction


@dataclass
class Comparison:
    """Cases timed on both sides, each with its statistics and verdict.

    Attributes:
        table: one row per case timed on both sides (:data:`TABLE_COLUMNS`), most urgent first:
            base_s/new_s the medians of the pooled samples, ratio = new / base with its 95%
            interval [low, high], p_value of the case (the larger of its rank test and its
            t-test on passes or pairs), p_adjusted (Benjamini-Hochberg over the table), verdict
            (one of :data:`lrbench.bench.results.stats.VERDICTS`), unstable (either side's median
            absolute deviation >= 5% of its median), the samples per side, the pairs of runs or
            the passes a side behind the interval and p, a note (reasons, fallbacks).
        threshold, alpha: the practical and the statistical bar.
        only_base, only_new: case ids timed on one side only.
        broken: case ids timed in BASE that NEW recorded as ``failed`` or ``error``.
    """

    table: pd.DataFrame
    threshold: float
    alpha: float
    only_base: list[str]
    only_new: list[str]
    broken: list[str]

    @property
    def regressions(self) -> pd.DataFrame:
        """Cases significantly slower by more than the threshold."""
        return self.table[self.table["verdict"] == "slower"]

    @property
    def failed(self) -> bool:
        """A confirmed regression or a broken case: what makes ``compare`` and ``ab`` exit 1."""
        return bool(len(self.regressions) or self.broken)

    @property
    def paired(self) -> bool:
        """Were the verdicts made on pairs of interleaved runs (``lrbench ab``)?"""
        return bool(len(self.table) and self.table["pairs"].max() >= 2)

    def counts(self) -> dict[str, int]:
        found = self.table["verdict"].value_counts()
        return {verdict: int(found.get(verdict, 0)) for verdict in stats.VERDICTS}


def case_runs(rows: pd.DataFrame) -> tuple[list[list[list[float]]], bool]:
    """One side's runs of one case (its ``ok`` rows, one per run, in run order): each run's passes,
    each pass its rounds (and True); or, when any run lacks rounds, each run's median alone as a
    pass of one round (and False)."""
    runs = [records.parse_passes(cell) for cell in rows["rounds_s"]]
    if runs and all(runs):
        return runs, True
    return [[[float(m)]] for m in rows["median_s"]], False


def _compare_case(base: pd.DataFrame, new: pd.DataFrame, threshold: float, alpha: float) -> dict:
    (base_runs, base_has), (new_runs, new_has) = case_runs(base), case_runs(new)
    paired = len(base_runs) == len(new_runs) >= 2  # interleaved repeats (lrbench ab)
    notes = []
    if paired:
        change = stats.compare_pairs([_flat(run) for run in base_runs],
                                     [_flat(run) for run in new_runs], threshold, alpha)
    else:  # every pass of every run a unit of its own
        change = stats.compare_passes([rounds for run in base_runs for rounds in run],
                                      [rounds for run in new_runs for rounds in run],
                                      threshold, alpha)
        if change.passes < 2:
            notes.append("one pass a side: rounds of one pass cannot tell machine drift from "
                         "code, no slower/faster verdict (run with --passes 2 or more, or "
                         "`lrbench ab`)")
    without = [side for side, has in (("BASE", base_has), ("NEW", new_has)) if not has]
    if without:
        notes.append(f"no rounds in {' or '.join(without)} (run made before rounds were kept): "
                     "compared on run medians")
    base_all = [t for run in base_runs for t in _flat(run)]
    new_all = [t for run in new_runs for t in _flat(run)]
    return {"verdict": change.verdict, "unstable": change.unstable,
            "base_s": float(pd.Series(base_all).median()),
            "new_s": float(pd.Series(new_all).median()),
            "ratio": change.ratio, "low": change.low, "high": change.high,
            "p_value": change.p_value,  # p_adjusted: _adjust, over the whole table
            "base_rounds": change.base_rounds, "new_rounds": change.new_rounds,
            "pairs": change.pairs, "passes": change.passes, "note": "; ".join(notes)}


def _flat(run: list[list[float]]) -> list[float]:
    return [t for rounds in run for t in rounds]


def _adjust(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Benjamini-Hochberg over the comparison's cases: ``p_adjusted``, and a slower/faster call
    whose adjusted p is not below ``alpha`` becomes ``unsure``, with the reason."""
    if table.empty:
        return table
    table = table.copy()
    table["p_adjusted"] = stats.adjust_p(table["p_value"].to_numpy())
    lost = table["verdict"].isin(["slower", "faster"]) & (table["p_adjusted"] >= alpha)
    table.loc[lost, "verdict"] = "unsure"
    reason = f"not significant once adjusted for the {len(table)} cases compared"
    table.loc[lost, "note"] = [f"{note}; {reason}" if note else reason
                               for note in table.loc[lost, "note"]]
    return table


def compare_frames(base_rows: pd.DataFrame, new_rows: pd.DataFrame, threshold: float,
                   alpha: float = 0.01) -> Comparison:
    """Compare the rows of two sides (each one run, or several runs of the same cases).

    Args:
        base_rows, new_rows: rows as :func:`lrbench.bench.results.records.load` gives them.
        threshold: the smallest change that matters, a fraction (> 0).
        alpha: significance level of the rank test (0 < alpha < 1).
    """
    if not threshold > 0:
        raise ValueError(f"threshold: expected a fraction > 0, got {threshold!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected 0 < alpha < 1, got {alpha!r}")
    base_ok = base_rows[base_rows["status"] == "ok"]
    new_ok = new_rows[new_rows["status"] == "ok"]
    new_bad = set(new_rows[new_rows["status"].isin(["failed", "error"])]["case_id"])
    base_ids, new_ids = set(base_ok["case_id"]), set(new_ok["case_id"])
    base_groups = dict(tuple(base_ok.groupby("case_id")))
    new_groups = dict(tuple(new_ok.groupby("case_id")))
    common = [case for case in dict.fromkeys(base_ok["case_id"]) if case in new_ids]
    table = pd.DataFrame([{"case_id": case, **_compare_case(base_groups[case], new_groups[case],
                                                            threshold, alpha)}
                          for case in common], columns=TABLE_COLUMNS)
    table = _adjust(table, alpha)
    if not table.empty:
        order = table["verdict"].map(VERDICT_ORDER)
        table = (table.assign(_order=order).sort_values(["_order", "ratio"], ascending=[True, False],
                                                        kind="stable")
                 .drop(columns="_order").reset_index(drop=True))
    return Comparison(table=table, threshold=threshold, alpha=alpha,
                      only_base=sorted(base_ids - new_ids), only_new=sorted(new_ids - base_ids),
                      broken=sorted(base_ids & new_bad))


def load_side(name: str, locations: Iterable[str | Path]) -> pd.DataFrame:
    """The rows of one side's runs (run folders or CSVs), in the order given (a case's rows then
    come in run order), refused when they mix machines."""
    frames = [records.load(location) for location in locations]
    if not frames:
        raise ValueError(f"{name}: no run to read")
    rows = pd.concat(frames, ignore_index=True)
    machines = metrics.machine_of(rows).unique()
    if len(machines) > 1:  # a case id would stand for several machines' times
        raise ValueError(f"{name} has rows of {len(machines)} machines ({'; '.join(machines)});"
                         " compare runs of one machine each")
    return rows


def compare_runs(base: str | Path, new: str | Path, threshold: float,
                 alpha: float = 0.01) -> Comparison:
    """Compare two runs (directories or CSVs) case by case on their rounds."""
    return compare_frames(load_side("BASE", [base]), load_side("NEW", [new]), threshold, alpha)
