"""A comparison as text: the terminal table of ``lrbench compare`` / ``lrbench ab`` and the Markdown
of ``--markdown`` (a pull-request comment)."""

from __future__ import annotations

import math

import pandas as pd

from lrbench.bench.comparison.compare import Comparison
from lrbench.bench.results.stats import UNSTABLE_MAD

DRIFT_NOTE = ("BASE and NEW were run separately: machine drift between two runs (other load, "
              "clocks, heat) shows in no round of one pass, so verdicts here rest on the spread "
              "of each run's passes over its matrix (`lrbench run --passes N`; one pass a side "
              "gives none), and drift lasting a whole run can still pass for the code. For a "
              "verdict on two revisions, run them interleaved: `lrbench ab BASE_REV NEW_REV`.")


def method(comparison: Comparison) -> str:
    """How the verdicts were reached, in one paragraph."""
    t = comparison.threshold
    if comparison.paired:
        basis = ("ratio = NEW median / BASE median over every round; 95% interval: the t-interval "
                 "of the interleaved pairs' ratios (run medians, log scale), which widens with the "
                 "drift between runs; p: the larger of the two-sided Mann-Whitney U on all rounds "
                 "and the t-test of the pairs' log ratios")
    else:
        basis = ("ratio = NEW median / BASE median over every round; 95% interval: Welch's "
                 "t-interval of the passes' medians (log scale), which widens with the drift "
                 "between passes (one pass a side: the bootstrap interval on the rounds, and no "
                 "slower/faster); p: the larger of the two-sided Mann-Whitney U on all rounds "
                 "and Welch's t-test on the passes")
    return (f"{basis}; p adjusted over the {len(comparison.table)} cases (Benjamini-Hochberg). "
            f"slower/faster: beyond {t:.0%} (ratio > {1 + t:.2f} or < {1 / (1 + t):.2f}), "
            f"the interval wholly beyond 1 and adjusted p < {comparison.alpha:g}; unchanged: the whole "
            f"interval within {t:.0%} both ways; unsure: neither. unstable: a side's median "
            f"absolute deviation is {UNSTABLE_MAD:.0%} of its median or more.")


def summary(comparison: Comparison) -> str:
    counts = comparison.counts()
    parts = [f"{n} {verdict}" for verdict, n in counts.items()]
    unstable = int(comparison.table["unstable"].sum()) if not comparison.table.empty else 0
    return (f"{len(comparison.table)} cases on both sides: {', '.join(parts)} ({unstable} "
            f"unstable); {len(comparison.broken)} broken; {len(comparison.only_base)} only in "
            f"BASE, {len(comparison.only_new)} only in NEW")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g}"


def _cells(row) -> dict[str, str]:
    interval = f"[{row.low:.3f}, {row.high:.3f}]" if math.isfinite(row.low) else ""
    return {"verdict": row.verdict + (" (unstable)" if row.unstable else ""),
            "case": row.case_id, "BASE ms": _ms(row.base_s), "NEW ms": _ms(row.new_s),
            "ratio": f"{row.ratio:.3f}", "95% interval": interval, "p": f"{row.p_adjusted:.2g}",
            "rounds": f"{row.base_rounds}/{row.new_rounds}"
            + (f" in {row.pairs} pairs" if row.pairs else "")
            + (f" in {row.passes}+ passes" if row.passes >= 2 else ""), "note": row.note}


def terminal_lines(comparison: Comparison, *, all_cases: bool = True) -> list[str]:
    """One line per case (or only those not ``unchanged``), then the broken cases."""
    lines = []
    table = comparison.table if all_cases else comparison.table[
        comparison.table["verdict"] != "unchanged"]
    for row in table.itertuples():
        c = _cells(row)
        lines.append(f"{c['verdict']:<20} {c['ratio']:>7}x {c['95% interval']:<16} "
                     f"p={c['p']:<7} {c['BASE ms']:>9} -> {c['NEW ms']:>9} ms  {row.case_id}"
                     + (f"  ({row.note})" if row.note else ""))
    lines += [f"BROKEN {case}: timed in BASE, failed or raised in NEW" for case in comparison.broken]
    return lines


def _markdown_rows(table: pd.DataFrame) -> list[str]:
    header = ["verdict", "case", "BASE ms", "NEW ms", "ratio", "95% interval", "p", "rounds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.itertuples():
        c = _cells(row)
        c["case"] = f"`{c['case']}`" + (f" ({c['note']})" if c["note"] else "")
        lines.append("| " + " | ".join(c[h] for h in header) + " |")
    return lines


def markdown(comparison: Comparison, title: str, notes: list[str] = ()) -> str:
    """The comparison for a pull-request comment: summary, the cases that need a look, every
    other case folded away."""
    failed = comparison.failed
    head = ("**Regression**" if failed else "**No regression**") + ": " + summary(comparison)
    parts = [f"### {title}", head, *[f"> {note}" for note in notes], method(comparison)]
    table = comparison.table
    attention = table[table["verdict"] != "unchanged"]
    if comparison.broken:
        parts.append("Broken (timed in BASE, failed or raised in NEW): "
                     + ", ".join(f"`{case}`" for case in comparison.broken))
    if not attention.empty:
        parts.append("\n".join(_markdown_rows(attention)))
    rest = table[table["verdict"] == "unchanged"]
    if not rest.empty:
        parts.append(f"<details><summary>{len(rest)} unchanged</summary>\n\n"
                     + "\n".join(_markdown_rows(rest)) + "\n\n</details>")
    return "\n\n".join(parts) + "\n"
