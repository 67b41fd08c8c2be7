"""``lrbench run``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lrbench.commands import options


@click.command("run")
@click.option("--preset", default="quick", show_default=True,
              help="Named matrix (see `lrbench list`).")
@options.axis_options
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (CSV, pytest-benchmark JSON, log)  [default: reports/runs/PRESET]")
@click.option("--resume", is_flag=True,
              help="Keep the directory's results.csv and skip the cases it has; without it the "
                   "CSV is replaced.")
@click.option("--shard", "shard_spec", default=None, metavar="I/N",
              help="Run only slice I of N (1-based); join the pieces with `lrbench merge`.")
@click.option("--min-rounds", type=click.IntRange(min=1), default=None,
              help="Minimum timed rounds per case, CPU (pytest-benchmark) or CUDA (events) "
                   "(default: the preset's).")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Target seconds of timed rounds per case (default: the preset's).")
@click.option("--passes", type=click.IntRange(min=1), default=None,
              help="Times over the matrix: the first gates, times and records each case, each "
                   "further one times it again, in an order of its own (its rounds kept as a pass "
                   "of the row); `lrbench compare` needs 2 or more a side for a verdict "
                   "(default: the preset's).")
@click.option("--limits/--no-limits", default=True, show_default=True, envvar="LRBENCH_LIMITS",
              help="Measure the machine's limits (peak GEMM rate, copy bandwidth: 1 to 2 s per "
                   "device, dtype and thread count) for the roofline columns; --no-limits leaves "
                   "them empty (`lrbench ab` runs its sides so, with LRBENCH_LIMITS=0).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch intra-op threads (default: torch's choice); recorded in every row.")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default=None,
              help="Split the run into --nodes shards run through submitit (extra "
                   "lrbench[cluster]): one Slurm job array, a node to each shard, or locally one "
                   "shard after another. Shards in OUT/shards/I, merged into OUT/results.csv.")
@click.option("--nodes", type=int, default=None, help="Shards (one node each)  [default: 1]")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--gpus-per-node", type=int, default=None, help="GPUs per node (Slurm).")
@click.option("--time", "time_limit", default=None, metavar="TIME",
              help="Time limit per shard job, e.g. 90, 1:30:00, 1-00:00:00 (required with "
                   "--executor slurm).")
@click.option("--slurm-arg", "slurm_args", multiple=True, metavar="KEY=VALUE",
              help="Any other submitit Slurm parameter, e.g. qos=high (repeatable).")
@click.option("--grace", "grace_s", type=float, default=None, metavar="SECONDS",
              help="After Slurm's preemption or time-limit signal, how long the case in flight "
                   "may go on before it is recorded as stopped and the shard requeued; keep it "
                   "below the partition's GraceTime  [default: 20]")
@options.plugin_option
def run_cmd(preset, out, resume, shard_spec, min_rounds, max_time, passes, limits, threads, executor,
            nodes, partition, gpus_per_node, time_limit, slurm_args, grace_s, plugins, **axes) -> None:
    """Run a benchmark matrix: gate each case against the reference, time it, record one CSV row.

    Every row is written as soon as its case finishes; a case that cannot run, fails the accuracy
    gate or raises becomes a row with its status and reason, and the run goes on. One run per
    --out folder: a second run into a folder in use is refused.
    """
    import torch

    from lrbench.bench.matrix.plan import make_plan
    from lrbench.bench.matrix.presets import preset_names
    from lrbench.bench.measure.runner import run_matrix

    if preset not in preset_names():
        raise click.BadParameter(f"unknown preset {preset!r}; choose from {preset_names()}",
                                 param_hint="--preset")
    options.load_plugins(plugins)
    options.warn_plugin_errors()
    overrides = {name.removesuffix("_axis"): value for name, value in axes.items()}
    try:
        plan = make_plan(preset, overrides, shard_spec, min_rounds, max_time, passes,
                         limits=limits)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    if threads is not None:
        torch.set_num_threads(threads)
    out = out or f"reports/runs/{preset}"
    cluster = {"--nodes": nodes, "--partition": partition, "--gpus-per-node": gpus_per_node,
               "--time": time_limit, "--slurm-arg": slurm_args or None, "--grace": grace_s}
    if executor is not None or any(v is not None for v in cluster.values()):
        _run_sharded(plan, out, resume, threads, executor, shard_spec, cluster, plugins)
        return
    stream = sys.stdout  # the progress lines; pytest's own output goes to the run's log
    click.echo(f"{len(plan.cases)} cases ({plan.label}), {plan.timing.passes} pass(es), "
               f"{torch.get_num_threads()} threads, -> {out}")

    from lrbench.bench.measure.progress import progress_line

    def progress(index: int, total: int, row: dict) -> None:
        click.echo(progress_line(index, total, row), file=stream)

    from lrbench.bench.results.runlock import FolderInUse

    try:
        summary = run_matrix(plan.cases, out, resume=resume, timing=plan.timing,
                             on_case=progress, label=plan.label)
    except FolderInUse as err:
        raise click.ClickException(str(err)) from err
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.statuses.items()))
    click.echo(f"done: {counts or 'nothing to run'}"
               + (f" ({summary.already_done} already in the CSV)" if summary.already_done else ""))
    click.echo(f"rows: {summary.csv_path}  pytest-benchmark JSON: {summary.json_path}  "
               f"log: {summary.log_path}")
    if summary.csv_path.exists():
        from lrbench.bench.results import conditions, records

        rows = records.load(summary.csv_path)
        for warning in (conditions.busy_warning(rows), conditions.throttled_warning(rows)):
            if warning:
                click.echo(f"warning: {warning}", err=True)
    if summary.interrupted:
        click.echo("interrupted; continue with --resume", err=True)
        sys.exit(130)


def _run_sharded(plan, out, resume, threads, executor, shard_spec, cluster, plugins) -> None:
    """``lrbench run --executor local|slurm``: shards through submitit, then the merge."""
    from lrbench.bench.cluster.options import make_options
    from lrbench.bench.cluster.submit import run_sharded
    from lrbench.bench.results.runlock import FolderInUse

    given = [name for name, value in cluster.items() if value is not None]
    if executor is None:
        raise click.UsageError(f"{', '.join(given)} need(s) --executor local or slurm")
    if shard_spec is not None:
        raise click.UsageError("--shard and --executor exclude each other: --executor shards "
                               "the run itself (--nodes N)")
    try:
        options = make_options(executor, cluster["--nodes"], cluster["--partition"],
                               cluster["--gpus-per-node"], cluster["--time"],
                               cluster["--slurm-arg"] or (), grace_s=cluster["--grace"])
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    except RuntimeError as err:  # submitit missing
        raise click.ClickException(str(err)) from err
    click.echo(f"{len(plan.cases)} cases ({plan.label}) in {options.nodes} shard(s), "
               f"executor {executor}, -> {out}")
    try:
        # the shards load the same plugins (a .py path made absolute for the job's folder)
        shipped = tuple(str(Path(p).resolve()) if p.endswith(".py") else p for p in plugins)
        summary = run_sharded(plan, out, options, resume=resume, threads=threads,
                              on_event=click.echo, plugins=shipped)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    except (FolderInUse, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
    except KeyboardInterrupt:
        click.echo(f"stopped waiting; submitted jobs may still run: `lrbench status {out}`, "
                   f"then `lrbench merge {out}`; or rerun with --resume", err=True)
        sys.exit(130)
    click.echo(f"merged {summary.merged} rows -> {summary.csv_path}  (submitit logs: "
               f"{summary.submitit_dir})")
    if not summary.complete:
        left = ", ".join(f"shard {i}: {n}" for i, n in summary.pending.items() if n)
        click.echo(f"cases still pending ({left}); see `lrbench status {out}`, continue with "
                   "--resume", err=True)
        sys.exit(1)


command = run_cmd
