"""The Markdown report of a run: summary tables and PNG plots, all from the run's CSV.

The headline tables are those of the fused-kernel issue: each implementation against the
matrix's baseline on the op (forward and forward+backward speedups, peak memory beside the
baseline's and the output's size; the baseline is read from the rows) and the
``LocalRelation2d`` layer against the 3x3 convolution it replaces in ResNet-50
(Hu et al., ICCV 2019, arXiv:1904.11491).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lrbench.bench.comparison.ratios import INTERVAL_NOTE
from lrbench.bench.pages import html
from lrbench.bench.pages.document import Block, Heading, Image, Text, section, to_markdown
from lrbench.bench.results import conditions, fits, plots, records
from lrbench.bench.results.metrics import impl_of, machine_of, shape_of
from lrbench.bench.sections import accuracy
from lrbench.bench.sections.backward import backward_cost
from lrbench.bench.sections.floor import floor_table
from lrbench.bench.sections.peers import against_the_peers
from lrbench.files import atomic_write

MIB = 2**20
MATCH = ["B", "H", "W", "stride", "dtype", "device", "pass", "memory_format"]  # layer <-> conv3x3


def _get(row: pd.Series | None, column: str, scale: float = 1.0) -> float | None:
    return None if row is None else row[column] * scale


def versus_baseline(frame: pd.DataFrame) -> pd.DataFrame:
    """Op cases: each implementation's forward and forward+backward time and speedup against
    the case's baseline (the ``baseline`` column), and forward peak memory beside the
    baseline's and beside the output's size."""
    rows = plots.timed(frame)
    rows = rows.assign(label=rows["case_id"].map(impl_of))  # unfold, unfold@inductor, ...
    out = []
    for (shape, dtype, device, baseline), group in rows.groupby(
            [rows["case_id"].map(shape_of), "dtype", "device", "baseline"], sort=False):
        by = {(r["label"], r["pass"]): r for _, r in group.iterrows()}
        baseline_fwd = by.get((baseline, "fwd"))
        for impl in [i for i in group["label"].unique() if i != baseline]:
            fwd, both = by.get((impl, "fwd")), by.get((impl, "fwd_bwd"))
            out.append({
                "shape": shape, "dtype": dtype, "device": device, "impl": impl,
                "baseline": baseline,
                "fwd ms": _get(fwd, "median_s", 1e3),
                "fwd speedup": _get(fwd, "speedup_vs_baseline"),
                "fwd+bwd ms": _get(both, "median_s", 1e3),
                "fwd+bwd speedup": _get(both, "speedup_vs_baseline"),
                "fwd peak MiB": _get(fwd, "peak_bytes", 1 / MIB),
                "baseline fwd peak MiB": _get(baseline_fwd, "peak_bytes", 1 / MIB),
                "output MiB": _get(fwd, "output_bytes", 1 / MIB),
            })
    return pd.DataFrame(out)


def layer_vs_conv(frame: pd.DataFrame) -> pd.DataFrame:
    """Each layer case beside the 3x3 conv case at the same batch, size, stride, dtype, device
    and pass (the conv has ResNet-50's width at that stage)."""
    layers, convs = plots.timed(frame, "layer"), plots.timed(frame, "conv3x3")
    if layers.empty or convs.empty:
        return pd.DataFrame()
    paired = layers.merge(convs, on=MATCH, suffixes=("", "_conv"))
    return pd.DataFrame({
        "layer": paired["case_id"].map(shape_of), "impl": paired["impl"], "pass": paired["pass"],
        "layer ms": paired["median_s"] * 1e3,
        "conv3x3": paired["case_id_conv"].map(shape_of),
        "conv3x3 ms": paired["median_s_conv"] * 1e3,
        "layer / conv3x3": paired["median_s"] / paired["median_s_conv"],
    })


def networks(frame: pd.DataFrame) -> pd.DataFrame:
    """Whole-network cases: time per batch, images per second, closed-form GMAC/s."""
    rows = plots.timed(frame, None)
    rows = rows[rows["target"].isin(["lrnet50", "resnet50"])]
    return pd.DataFrame({
        "case": rows["case_id"], "median ms": rows["median_s"] * 1e3,
        "images/s": rows["items_per_s"], "GMAC/s": rows["gmacs_per_s"],
        "% of peak": rows["pct_of_peak"], "memory format": rows["memory_format"],
        "peak MiB": rows["peak_bytes"] / MIB,
    })


def all_timed(frame: pd.DataFrame) -> pd.DataFrame:
    rows = plots.timed(frame, None)
    return pd.DataFrame({
        "case": rows["case_id"], "median ms": rows["median_s"] * 1e3,
        "IQR ms": rows["iqr_s"] * 1e3, "min ms": rows["min_s"] * 1e3, "rounds": rows["rounds"],
        "GMAC/s": rows["gmacs_per_s"],
        "% of peak": rows["pct_of_peak"], "MAC/byte": rows["intensity_macs_per_byte"],
        "% of roofline": rows["pct_of_roofline"], "bound": rows["roofline_bound"],
        "baseline": rows["baseline"],
        "speedup vs baseline": rows["speedup_vs_baseline"],
        "peak MiB": rows["peak_bytes"] / MIB, "max abs err": rows["max_abs_err"],
        "compile s": rows["compile_s"],
    })


def _machine(frame: pd.DataFrame) -> str:
    lines = []
    for column in ("cpu", "gpu", "threads", "torch", "triton", "fvcore", "python", "git_rev",
                   "allocator"):
        values = sorted({str(v) for v in frame[column].dropna() if str(v)})
        empty = "not recorded" if column == "allocator" else "none"  # runs from before the column
        lines.append(f"- {column}: {', '.join(values) or empty}")
    load = pd.concat([frame["load_1m"], frame["load_1m_after"]]).dropna()
    if not load.empty:
        cpus = int(pd.to_numeric(frame["cpus"], errors="coerce").max()
                   if frame["cpus"].notna().any() else os.cpu_count() or 1)
        lines.append(f"- 1-minute load average during the run: {load.min():.1f} to "
                     f"{load.max():.1f} on {cpus} logical CPUs (the run's own threads count)")
    lines += conditions.roofs_lines(frame)
    lines += conditions.summary_lines(frame)
    for warning in (conditions.busy_warning(frame), conditions.throttled_warning(frame),
                    conditions.above_peak_warning(frame), *conditions.mixed_setups(frame)):
        if warning:
            lines.append(f"\n**Warning**: {warning}.")
    return "\n".join(lines)


def _section(level: str, title: str, intro: str, table: pd.DataFrame) -> list[Block]:
    """One heading (``level`` "##" or "###"), its explanation and its table; nothing when the
    table is empty."""
    return section(len(level), title, intro, table)


SCALING = (
    "Each implementation's median time over the size sweep (H = W, the rest fixed), fitted as "
    "`t = t0 + c * MACs^b` with the closed-form MACs (`b` = 1: time in proportion to the work). "
    "`fixed share at largest` = t0 over the fitted time at the largest size. Where the fixed term "
    "is half of it or more, the sizes are too small for the fit to say how the op scales: the "
    "verdict says `fixed term dominates` and no exponent is given. `uncertain`: the 95% bootstrap "
    "interval of `b` (medians redrawn from the rounds) is wider than 0.5, or fewer than 4 sizes. "
    "The size-sweep preset's fit comes first when the run has it (the rule: docs/benchmarking.md, "
    "\"Scaling fits\").")


def _tables(frame: pd.DataFrame, drawn: list[str], level: str) -> list[Block]:
    """The tables (and plots) of one machine's rows, under headings of ``level`` ("##")."""
    versus = versus_baseline(frame)
    baselines = ", ".join(sorted(versus["baseline"].unique())) if not versus.empty else ""
    parts = [
        *_section(level, f"Op: each implementation against the baseline ({baselines})",
                  "Speedup = the baseline's median / the implementation's median on the same "
                  "case; the baseline is the one the matrix named for the case.", versus),
        *_section(level, "Against the peers",
                  "Per stage, what a user would otherwise run (compiled PyTorch, FlexAttention, "
                  "NATTEN, the 3x3 conv) beside our fastest implementation on the same stage, "
                  "dtype, device and pass. Our speedup = the peer's median / ours. Every "
                  "timed row passed its gate (NATTEN: against a float64 implementation of its "
                  "own clamped-window op). A peer that was not timed shows its reason.",
                  against_the_peers(frame)),
        *_section(level, "The backward against the forward",
                  "Per op case timed forward and backward: `(fwd+bwd) / fwd` = the `fwd_bwd` "
                  "pass (forward with autograd, then backward) over the `fwd` pass (forward "
                  "without autograd), what a training step pays for the op against inference; "
                  "`bwd / fwd` = the backward alone over the forward. " + INTERVAL_NOTE +
                  " `LR-Net-50 layer`: the layer whose shape it is (the `layers` preset runs "
                  "all of them).",
                  backward_cost(frame)),
        *_section(level, "The layer against the 3x3 convolution it replaces",
                  "`LocalRelation2d` (key/query projections, prior, op, final 1x1) beside "
                  "ResNet-50's 3x3 conv at the same stage.", layer_vs_conv(frame)),
        *_section(level, "Scaling with input size", SCALING, fits.scaling(frame)),
        *_section(level, "Whole networks",
                  "`fwd`: eval-mode forward without autograd; `train`: forward, cross-entropy, "
                  "backward and an SGD step. `floor`: LR-Net-50 with the op replaced by a free "
                  "stand-in (a strided slice of x: the same convolutions, batch norms and "
                  "projections, no op), the fastest any op could make it.", networks(frame)),
        *_section(level, "LR-Net against ResNet-50 and its floor",
                  "Per pass, each network in its faster memory format. `floor / ResNet-50`: "
                  "what the architecture costs whatever the op; `op share %` = (LR-Net - "
                  "floor) / LR-Net, the part of LR-Net's time that a faster op could remove. "
                  + INTERVAL_NOTE + " A bound such as 'at most 1.45x' holds where the whole "
                  "interval lies below it.",
                  floor_table(frame)),
        *([Heading(len(level), "Plots"),
           Text("Medians with their quartile range (bars or bands); speedups with the 95% "
                "bootstrap interval of the rounds where the run kept them. Each plot's bottom "
                "line: the command that drew it, the machine and the date of the data.")]
          if drawn else []),
        *[Image(name) for name in drawn],
        *_section(level, "All timed cases",
                  "Efficiency: `% of peak` = achieved GMAC/s (the pass's closed-form MACs, "
                  "backward = 2x forward, / median) over the GEMM peak measured in the same "
                  "run; `MAC/byte` = closed-form MACs over the minimal bytes (inputs read "
                  "once, output written once); `% of roofline` = achieved over "
                  "min(peak, MAC/byte x measured copy bandwidth), `bound` the roof that binds "
                  "(roofline.png). Above 100% of peak: either some library reaches more than "
                  "the routes the peak is measured by (the machine section says so), or the "
                  "closed form counts more than the case does (neighbours outside a small "
                  "image, the backward's 2x convention).",
                  all_timed(frame)),
        *_section(level, "Accuracy gate",
                  accuracy.INTRO + "\n\n" + accuracy.loosening_text(frame),
                  accuracy.worst_over_limit(frame)),
        *_section(level, "Cases not timed", "",
                  frame[frame["status"] != "ok"][["case_id", "status", "reason"]]),
    ]
    return parts


def build_document(frame: pd.DataFrame, run_dir: Path,
                   drawn: list[str] | dict[str, list[str]]) -> list[Block]:
    """The report as blocks. Rows of several machines
    (:func:`lrbench.bench.results.metrics.machine_of`) get one section each; ``drawn`` is then the
    plots per machine label."""
    counts = frame["status"].value_counts()
    parts: list[Block] = [
        Heading(1, f"Benchmark report: `{run_dir}`"),
        Text(f"Written by `lrbench report {run_dir}` from `results.csv`: {len(frame)} cases ("
             + ", ".join(f"{n} {status}" for status, n in counts.items()) + ")."),
        Text("Times are pytest-benchmark medians of calibrated rounds after warm-up (spread: IQR). "
        "MACs: one multiply-add = 1 (fvcore's convention), forward closed form; GMAC/s is "
        "given for forward passes only. Peak memory: extra bytes at the peak of one call "
        "(CUDA allocator peak on GPU; PyTorch profiler allocation events on CPU). Every timed "
        "case passed the accuracy gate first (`max abs err` against the float64 oracle; the limits "
        "and how close each implementation came to them: \"Accuracy gate\"). "
        "`impl@inductor`: the implementation compiled with `torch.compile` (inductor); its first "
        "call (compilation included) is in `compile s`, never in the median."),
    ]
    machines = machine_of(frame)
    if machines.nunique() <= 1:
        return [*parts, Heading(2, "Machine"), Text(_machine(frame)),
                *_tables(frame, list(drawn), "##")]
    labels = list(dict.fromkeys(machines))
    parts.append(Text(f"These rows come from {len(labels)} machines (CPU model / GPU model / "
                 "threads). Each has its own section below; every speedup and ratio is "
                 "between times of one machine, never across machines.\n\n"
                 + "\n".join(f"{i}. {label}: {int((machines == label).sum())} cases"
                                  for i, label in enumerate(labels, start=1))))
    for i, label in enumerate(labels, start=1):
        rows = frame[machines == label]
        plots_here = drawn.get(label, []) if isinstance(drawn, dict) else []
        parts += [Heading(2, f"Machine {i}: {label}"), Text(_machine(rows)),
                  *_tables(rows, plots_here, "###")]
    return parts


def build_markdown(frame: pd.DataFrame, run_dir: Path, drawn: list[str] | dict[str, list[str]]
                   ) -> str:
    """The report as Markdown (:func:`build_document`)."""
    return to_markdown(build_document(frame, run_dir, drawn))


def write_report(run_dir: str | Path, html_page: bool = False) -> Path:
    """Write ``report.md`` and the plots into ``run_dir`` from its ``results.csv``, and with
    ``html_page`` also ``report.html``, the same report as one self-contained page; returns the
    path of the last written (the page, when asked for)."""
    run_dir = Path(run_dir)
    csv_path = records.results_path(run_dir)
    out_dir = csv_path.parent
    frame = records.load(csv_path)
    command = f"lrbench report {run_dir}" + (" --html" if html_page else "")
    machines = machine_of(frame)
    if machines.nunique() <= 1:
        drawn = plots.draw(frame, out_dir, command)
        kept = set(drawn)
    else:  # one set of plots per machine: machine-1-time_vs_k.png, ...
        drawn, kept = {}, set()
        for i, label in enumerate(dict.fromkeys(machines), start=1):
            drawn[label] = plots.draw(frame[machines == label], out_dir, command,
                                      prefix=f"machine-{i}-")
            kept.update(drawn[label])
    for stale in [*plots.FIGURES, *plots.RETIRED, *(p.name for p in out_dir.glob("machine-*-*.png"))]:
        if stale not in kept:
            (out_dir / stale).unlink(missing_ok=True)
    blocks = build_document(frame, out_dir, drawn)
    path = atomic_write(out_dir / "report.md", to_markdown(blocks))
    if html_page:
        path = atomic_write(out_dir / "report.html",
                            html.render(blocks, f"Benchmark report: {out_dir}", out_dir))
    return path
