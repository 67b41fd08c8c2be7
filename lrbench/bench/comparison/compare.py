"""Comparing two runs case by case, on their raw rounds: is a case slower, faster, unchanged, or
can the data not tell?

Each case's rounds (``rounds_s``, every timed round of the case in seconds per call) of BASE and
NEW go to :func:`lrbench.bench.results.stats.compare_rounds`: ratio of medians, bootstrap
interval, rank test, verdict, unstable flag. When each side holds the same number (two or more) of
runs of a case, in the order run (``lrbench ab``'s interleaved repeats), run ``i`` of BASE and
run ``i`` of NEW are a pair and :func:`~lrbench.bench.results.stats.compare_pairs` decides, with
the run as the unit (drift between runs widens its interval). A run made before rounds were kept
has only its median; such a case is compared on the medians of its runs, and with fewer than
:data:`~lrbench.bench.results.stats.MIN_ROUNDS` of them (and no pairs) it is ``unsure``, with the
reason.
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
                 "p_value", "base_rounds", "new_rounds", "pairs", "note"]


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
            bootstrap interval [low, high], p_value of the Mann-Whitney U test, verdict (one of
            :data:`lrbench.bench.results.stats.VERDICTS`), unstable (either side's median absolute
            deviation >= 5% of its median), the samples per side, the pairs of runs behind the
            interval and p (0: the rounds of one run a side), a note (pairs, fallbacks).
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


def case_runs(rows: pd.DataFrame) -> tuple[list[list[float]], bool]:
    """One side's runs of one case (its ``ok`` rows, one per run, in run order): each run's rounds
    (and True), or, when any run lacks rounds, each run's median alone (and False)."""
    rounds = [records.parse_rounds(cell) for cell in rows["rounds_s"]]
    if rounds and all(rounds):
        return rounds, True
    return [[float(m)] for m in rows["median_s"]], False


def _compare_case(base: pd.DataFrame, new: pd.DataFrame, threshold: float, alpha: float) -> dict:
    (base_runs, base_has), (new_runs, new_has) = case_runs(base), case_runs(new)
    paired = len(base_runs) == len(new_runs) >= 2  # interleaved repeats (lrbench ab)
    if paired:
        change = stats.compare_pairs(base_runs, new_runs, threshold, alpha)
    else:
        change = stats.compare_rounds([t for run in base_runs for t in run],
                                      [t for run in new_runs for t in run], threshold, alpha)
    verdict, notes = change.verdict, []
    if not paired and max(len(base_runs), len(new_runs)) >= 2:  # repeats with a run missing: pairs broken
        verdict = "unsure" if verdict in ("slower", "faster") else verdict
        notes.append(f"{len(base_runs)} BASE and {len(new_runs)} NEW runs: not paired, no "
                     "slower/faster verdict on rounds alone")
    without = [side for side, has in (("BASE", base_has), ("NEW", new_has)) if not has]
    if without:
        notes.append(f"no rounds in {' or '.join(without)} (run made before rounds were kept): "
                     "compared on run medians")
        if not paired and min(change.base_rounds, change.new_rounds) < stats.MIN_ROUNDS:
            verdict = "unsure"  # a median or two: no interval, no test worth the name
            notes[-1] += f", fewer than {stats.MIN_ROUNDS} a side: no verdict"
    pooled = [t for run in base_runs for t in run], [t for run in new_runs for t in run]
    return {"verdict": verdict, "unstable": change.unstable,
            "base_s": float(pd.Series(pooled[0]).median()),
            "new_s": float(pd.Series(pooled[1]).median()),
            "ratio": change.ratio, "low": change.low, "high": change.high,
            "p_value": change.p_value, "base_rounds": change.base_rounds,
            "new_rounds": change.new_rounds, "pairs": change.pairs, "note": "; ".join(notes)}


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
