"""The one-screen summary at the end of scripts/gpu.sh: each part's outcome, each run's rows.

    python scripts/gpu_summary.py reports/gpu-<model>

Reads ``parts.tsv`` (written by gpu.sh) and each run directory's ``results.csv``; prints Markdown.
Fused-vs-unfold speedups are read from the rows (forward, op target), never computed elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

STATUSES = ("ok", "skipped", "failed", "error")


def parts_table(out: Path) -> list[str]:
    path = out / "parts.tsv"
    if not path.exists():
        return ["(no parts.tsv)"]
    parts = pd.read_csv(path, sep="\t", dtype=str)
    lines = ["| part | status | seconds | budget |", "|---|---|---:|---:|"]
    lines += [f"| {r.part} | {r.status} | {r.seconds} | {r.budget_s} |"
              for r in parts.itertuples()]
    return lines


def runs_table(out: Path) -> list[str]:
    lines = ["| run | " + " | ".join(STATUSES) + " | timer |", "|---|" + "---:|" * 4 + "---|"]
    for csv in sorted(out.glob("*/results.csv")):
        rows = pd.read_csv(csv, dtype=str, on_bad_lines="skip")
        counts = rows["status"].value_counts() if "status" in rows else pd.Series(dtype=int)
        timers = ",".join(sorted(rows["timer"].dropna().unique())) if "timer" in rows else "?"
        lines.append(f"| {csv.parent.name} | "
                     + " | ".join(str(counts.get(s, 0)) for s in STATUSES) + f" | {timers} |")
    return lines


def fused_table(out: Path) -> list[str]:
    """Median forward time of each implementation of the op per shape (ms), from the rows."""
    lines = []
    for csv in sorted(out.glob("*/results.csv")):
        rows = pd.read_csv(csv, on_bad_lines="skip")
        ok = rows[(rows.get("status") == "ok") & (rows.get("target") == "op")
                  & (rows.get("pass") == "fwd")]
        if ok.empty:
            continue
        formats = (ok["memory_format"].fillna("").astype(str) if "memory_format" in ok
                   else pd.Series("", index=ok.index))  # CSVs from before the format axis: NCHW
        # lrbench's own rule (figures.rows.format_words), not imported: the summary must print
        # even where lrbench failed to install
        suffix = formats.map(lambda f: f" {f}" if f and f != "contiguous" else "")
        shape = ("B" + ok["B"].astype(str) + " C" + ok["C"].astype(str) + " " + ok["H"].astype(str)
                 + "x" + ok["W"].astype(str) + " k" + ok["k"].astype(str) + " s"
                 + ok["stride"].astype(str) + suffix)
        ok = ok.assign(shape=shape, ms=ok["median_s"] * 1e3)
        table = ok.pivot_table(index="shape", columns="impl", values="ms", aggfunc="first")
        lines += ["", f"{csv.parent.name}: op forward, median ms", "",
                  table.round(3).to_markdown()]
    return lines


def main(out: str) -> int:
    root = Path(out)
    lines = [f"# GPU run: {root}", "", *parts_table(root), "", *runs_table(root)]
    try:
        lines += fused_table(root)
    except ImportError:  # to_markdown needs tabulate (installed with fvcore's wheels)
        lines += ["", "(op table needs tabulate)"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "reports"))
