"""Real noise, known change: how often `lrbench compare` calls a planted slowdown, and anything else.

    python scripts/compare_power.py PAIRS_DIR [--factor 2.0] [--impl unfold] [--pairs 10]

PAIRS_DIR holds the runs of ``scripts/same_commit_pairs.sh`` (``a1``, ``b1``, ... : the same commit
run twice, one after the other). In each pair, NEW's rounds of the ``--impl`` cases are multiplied
by ``--factor``, every pass alike, and the two runs are compared as ``lrbench compare`` does
(``compare_frames``, threshold 10%, alpha 0.01): the planted cases it calls ``slower`` show its
power on this machine's own noise; any other case it calls ``slower`` or ``faster`` is a false call.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lrbench.bench.comparison.compare import compare_frames
from lrbench.bench.results import records


def planted(rows, impl: str, factor: float):
    """``rows`` with the ``ok`` rows of ``impl`` slowed by ``factor`` (every round of every pass)."""
    rows = rows.copy()
    target = rows["status"].eq("ok") & rows["impl"].eq(impl)
    for index in rows.index[target]:
        passes = records.parse_passes(rows.at[index, "rounds_s"])
        rows.at[index, "rounds_s"] = records.format_passes([[t * factor for t in p] for p in passes])
        rows.at[index, "median_s"] = rows.at[index, "median_s"] * factor
    return rows, set(rows.loc[target, "case_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs_dir", type=Path)
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--impl", default="unfold")
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    caught = planted_total = false_calls = 0
    for i in range(1, args.pairs + 1):
        base = records.load(args.pairs_dir / f"a{i}")
        new, slowed = planted(records.load(args.pairs_dir / f"b{i}"), args.impl, args.factor)
        table = compare_frames(base, new, 0.10).table
        hit = table["case_id"].isin(slowed)
        caught += int(table[hit]["verdict"].eq("slower").sum())
        planted_total += int(hit.sum())
        false_calls += int(table[~hit]["verdict"].isin(["slower", "faster"]).sum())
    print(f"x{args.factor} on {args.impl}: {caught} of {planted_total} planted cases called slower; "
          f"{false_calls} other case(s) called slower or faster, over {args.pairs} pairs")


if __name__ == "__main__":
    main()
