"""Render and write the tables of :func:`lrbench.complexity.verify.verify` (CSV and Markdown)."""

from __future__ import annotations

from pathlib import Path

from lrbench.complexity.network import STAGES
from lrbench.files import atomic_write
from lrbench.models import CONFIGS, stage_rows
from lrbench.tables import markdown_table, write_csv

UNITS = ("Units: MACs = multiply-adds (fvcore convention: one multiply-add = 1); "
         "FLOPs = 2 x MACs where `torch.utils.flop_counter.FlopCounterMode` is compared. "
         "The paper's \"GFLOPs\" are multiply-adds and are compared with GMACs. Input 224x224, "
         "batch 1.")
SUMMARY_COLUMNS = ["network", "params", "params paper (M)", "params gap %", "GMACs fvcore",
                   "GMACs closed form", "GFLOPs paper", "FLOPs gap %", "FlopCounterMode GFLOPs",
                   "fvcore == closed form"]


def stage_comparison(report, left: str = "resnet50", right: str = "lrnet50") -> list[dict]:
    """Per stage, the layers and the fvcore MACs of two networks side by side."""
    rows = {(r["network"], r["stage"]): r for r in report.stages}
    text = {name: {r["stage"]: r for r in stage_rows(CONFIGS[name])} for name in (left, right)}
    table = []
    for s in STAGES:
        row = {"stage": s, "output size": text[left][s]["output size"]}
        for name in (left, right):
            counted = rows.get((name, s), {})
            row[f"{name} layers"] = text[name][s]["layers"]
            row[f"{name} params (M)"] = counted.get("closed form params", 0) / 1e6
            row[f"{name} GMACs"] = counted.get("fvcore MACs", 0) / 1e9
        table.append(row)
    return table


def gap_findings(rows: list[dict]) -> str:
    """Per network: the nearest variant, and the nearest with the architecture as specified."""
    from lrbench.complexity.gaps import best_variants

    def line(row: dict) -> str:
        return (f"\"{row['variant']}\" {row['GMACs']:.3f} GMACs vs the paper's "
                f"{row['paper GFLOPs']} ({row['gap %']:+.1f}%)")

    conventions = best_variants(rows, architecture_as_specified=True)
    return "".join(f"- {name}: nearest overall {line(row)}; nearest counting convention on the "
                   f"network as specified {line(conventions[name])}\n"
                   for name, row in best_variants(rows).items())


def render_markdown(report) -> str:
    """The whole report as Markdown."""
    parts = ["# Complexity verification (`lrbench verify`)\n", UNITS + "\n",
             "## Networks: ours vs the paper\n", markdown_table(report.summary, SUMMARY_COLUMNS)]
    names = {r["network"] for r in report.summary}
    if {"resnet50", "lrnet50"} <= names:
        parts += ["\n## Per stage: ResNet-50 vs LR-Net-50 (closed-form params, fvcore GMACs)\n",
                  markdown_table(stage_comparison(report))]
    lr_rows = [r for r in report.lr_layers if r["network"] == "lrnet50"] or report.lr_layers
    if lr_rows:
        parts += [f"\n## LR layers of {lr_rows[0]['network']}: term by term (MACs)\n",
                  "`secondary formula` is the seed article's ((1+s^2)/m + 1) C (C+k^2) HW/s^2 "
                  "(no prior term); `predicted excess` is (s^2-1) C k^2 HW/(m s^2).\n\n",
                  markdown_table([{k: v for k, v in r.items() if k != "network"}
                                  for r in lr_rows])]
    if report.gaps:
        parts += ["\n## The FLOP gap: counted variants (GMACs vs the paper's GFLOPs)\n",
                  markdown_table(report.gaps), "\n", gap_findings(report.gaps)]
    parts += ["\n## Checks\n", "\n".join(f"- FAILED {f}" for f in report.failures)
              or "All checks passed.", "\n"]
    return "".join(parts)


def write_reports(report, out_dir: Path) -> list[Path]:
    """Write ``summary.csv``, ``stages.csv``, ``lr_layers.csv``, ``gaps.csv`` and ``verify.md``."""
    tables = {"summary": report.summary, "stages": report.stages,
              "lr_layers": report.lr_layers, "gaps": report.gaps}
    files = [write_csv(out_dir / f"{name}.csv", rows) for name, rows in tables.items() if rows]
    md = out_dir / "verify.md"
    atomic_write(md, render_markdown(report))
    return [*files, md]


def render_summary(report) -> str:
    """What ``lrbench verify`` prints: the networks table, the gap findings and the checks."""
    lines = [UNITS, "", markdown_table(report.summary, SUMMARY_COLUMNS)]
    if report.gaps:
        lines += ["FLOP gap, counted variants nearest the paper:", gap_findings(report.gaps)]
    lines += [f"FAILED {f}" for f in report.failures] or ["All checks passed."]
    lines.append("Seconds per network: " + ", ".join(f"{n} {t:.1f}" for n, t in
                                                    report.seconds.items()))
    return "\n".join(lines)
