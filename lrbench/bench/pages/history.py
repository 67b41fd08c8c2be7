"""``lrbench history``: how each case moved over a series of runs, as a static page.

Each run folder is read with :func:`lrbench.bench.results.records.load`; a folder holding rows of
several machines counts as one run per machine. Runs are kept apart by machine (a time of one
machine is never set beside another's) and ordered by the time of their data (the earliest
``timestamp``), so that commits measured one after the other read left to right. Between
consecutive runs, every case timed in both gets the verdict of
:func:`lrbench.bench.results.stats.compare_passes` on the two rows' passes (runs of one pass get at
most ``unsure``: their rounds cannot tell drift from code); a row without rounds (a CSV written
before they were kept) is not judged.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lrbench.bench.figures import canvas
from lrbench.bench.figures.history import case_history
from lrbench.bench.figures.rows import labelled, provenance
from lrbench.bench.matrix.cases import parse_case_id
from lrbench.bench.pages import html
from lrbench.bench.pages.document import Block, Heading, Image, Table, Text
from lrbench.bench.results import records, stats
from lrbench.bench.results.metrics import machine_of
from lrbench.files import atomic_write

NOT_JUDGED = "not judged (no rounds)"


@dataclass(frozen=True)
class Run:
    """The rows of one run folder on one machine."""

    source: str
    machine: str
    revision: str  # the most common git revision of its rows
    date: str  # the earliest timestamp of its rows
    rows: pd.DataFrame


def load_runs(locations: list[str | Path]) -> list[Run]:
    """Every (folder, machine) as a :class:`Run`, in order of their data's time."""
    if not locations:
        raise ValueError("RUN_DIR: history needs at least one run folder")
    runs = []
    for location in locations:
        frame = labelled(records.load(location))
        machines = machine_of(frame)
        for machine in dict.fromkeys(machines):
            rows = frame[machines == machine]
            revisions = Counter(r for r in rows["git_rev"] if r)
            stamps = sorted(t for t in rows["timestamp"] if t)
            runs.append(Run(source=str(location), machine=machine,
                            revision=revisions.most_common(1)[0][0] if revisions else "unknown",
                            date=stamps[0] if stamps else "", rows=rows))
    return sorted(runs, key=lambda run: (run.date, run.source))


def _case(case_id: str) -> str:
    """The case without its implementation: what one history plot shows."""
    parts = parse_case_id(case_id)
    return f"{parts['target']} {parts['shape']} {parts['dtype']} {parts['device']} {parts['pass']}"


def series(runs: list[Run], threshold: float, alpha: float) -> pd.DataFrame:
    """One row per (run, timed case): the run's index, the case, the implementation, the time
    columns and the verdict against the same case id in the previous run that timed it."""
    out, last = [], {}
    for index, run in enumerate(runs):
        for _, row in run.rows[run.rows["status"] == "ok"].iterrows():
            verdict, ratio, low, high, p_value = "", None, None, None, None
            before = last.get(row["case_id"])
            if before is not None:
                a, b = records.parse_passes(before["rounds_s"]), records.parse_passes(row["rounds_s"])
                ratio = float(row["median_s"]) / float(before["median_s"])
                if a and b:
                    change = stats.compare_passes(a, b, threshold, alpha)
                    verdict = change.verdict + (", unstable" if change.unstable else "")
                    low, high, p_value = change.low, change.high, change.p_value
                else:
                    verdict = NOT_JUDGED
            last[row["case_id"]] = row
            out.append({"run": index, "case": _case(row["case_id"]), "case_id": row["case_id"],
                        "label": row["label"], "pass": row["pass"], "median_s": row["median_s"],
                        "iqr_s": row["iqr_s"], "rounds": row["rounds"], "rounds_s": row["rounds_s"],
                        "ratio": ratio, "low": low, "high": high, "p": p_value,
                        "verdict": verdict})
    return pd.DataFrame(out)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _run_table(runs: list[Run]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": i, "revision": run.revision, "date": run.date, "machine": run.machine,
        "folder": run.source, "timed cases": int((run.rows["status"] == "ok").sum()),
    } for i, run in enumerate(runs)])


def build(locations: list[str | Path], out: str | Path, threshold: float = 0.10,
          alpha: float = 0.01, command: str = "") -> Path:
    """Write ``out/index.html`` and one PNG per (machine, case); returns the page's path."""
    out = Path(out)
    runs = load_runs(locations)
    blocks: list[Block] = [
        Heading(1, "Benchmark history"),
        Text(f"Written by `{command or 'lrbench history'}`. Each plot: one case, one line per "
             "implementation, the median of each run with its quartile range (band), runs left to "
             "right in the order of their data's time. Between consecutive runs a change is "
             f"marked where `compare_passes` finds it (threshold {threshold:.0%}, alpha {alpha} a "
             "case; runs of one pass get no marks: their rounds cannot tell drift from code): "
             "a red triangle up for `slower`, a green triangle down for `faster`; rows without "
             "rounds are not judged. Runs of different machines are kept apart."),
    ]
    machines = list(dict.fromkeys(run.machine for run in runs))
    for m, machine in enumerate(machines, start=1):
        mine = [run for run in runs if run.machine == machine]
        table = series(mine, threshold, alpha)
        blocks += [Heading(2, f"Machine {m}: {machine}"), Heading(3, "Runs"), Table(_run_table(mine))]
        if table.empty:
            continue
        changes = table[table["verdict"] != ""]
        if not changes.empty:
            blocks += [Heading(3, "Changes between consecutive runs"),
                       Text("`ratio` = this run's median / the previous run's, with its 95% "
                            "interval `low` to `high` (Welch's on the passes' medians; the "
                            "bootstrap's on the rounds for runs of one pass); `p`: the larger of "
                            "Mann-Whitney U on the rounds and Welch's t on the passes; the "
                            "verdict is `compare_passes` on the two runs' passes."),
                       Table(pd.DataFrame({
                           "case_id": changes["case_id"], "from run": changes["run"] - 1,
                           "to run": changes["run"], **{c: changes[c] for c in
                                                        ("ratio", "low", "high", "p", "verdict")}}))]
        blocks.append(Heading(3, "Cases"))
        caption = provenance(pd.concat([run.rows for run in mine]), command)
        ticks = [f"{i}: {run.revision[:10]}\n{run.date[:10]}" for i, run in enumerate(mine)]
        for case, rows in table.groupby("case", sort=True):
            name = f"m{m}-{_slug(case)}.png"
            canvas.save(case_history(rows, case, ticks), out / name, caption)
            blocks.append(Image(name, case))
    return atomic_write(out / "index.html", html.render(blocks, "Benchmark history", out))
