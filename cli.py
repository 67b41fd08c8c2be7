"""The ``lrbench`` command line: a thin click layer that parses, calls :mod:`lrbench`, and prints."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lrbench")
def main() -> None:
    """Benchmark and verify the local relation layer of LR-Net (Hu et al., ICCV 2019)."""
    import warnings

    # The flex_attention implementation runs eager on purpose (compiled, it is the compile axis's
    # inductor row); torch would say so on every call, interleaved with the progress lines.
    warnings.filterwarnings("ignore", message="flex_attention called without torch.compile",
                            category=UserWarning)


def _plugin_option(command):
    return click.option(
        "--plugin", "plugins", multiple=True, metavar="MODULE",
        help="Import MODULE (dotted name on sys.path, or a .py file) that registers "
             "implementations; repeatable.")(command)


def _load_plugins(plugins: tuple[str, ...]) -> None:
    """Load each ``--plugin``; one that cannot be loaded is a usage error (exit code 2)."""
    import lrbench
    from lrbench.registry import PluginError

    for module in plugins:
        try:
            names = lrbench.load_plugin(module)
        except PluginError as err:
            raise click.UsageError(str(err)) from err
        click.echo(f"plugin {module}: {', '.join(names) or 'already loaded'}", err=True)


def _warn_plugin_errors() -> None:
    from lrbench.listing import plugin_errors

    for origin, error in plugin_errors().items():
        click.echo(f"warning: {origin} could not be loaded: {error}", err=True)


@main.command("list")
@_plugin_option
def list_cmd(plugins) -> None:
    """Show each implementation, what it supports, and whether it can run here (and why not)."""
    from lrbench.listing import implementation_rows, plugin_errors

    _load_plugins(plugins)
    for row in implementation_rows():
        click.echo(f"{row['name']:<15} {row['runs here']:<16} devices={row['devices']:<9} "
                   f"dtypes={row['dtypes']}")
        click.echo(f"{'':<15} {row['summary']}")
        if row["why not"]:
            click.echo(f"{'':<15} why not: {row['why not']}")
    from lrbench.bench.presets import PRESETS

    click.echo("\npresets (lrbench run --preset NAME):")
    for name, preset in PRESETS.items():
        click.echo(f"{name:<15} {preset['description']}")
    errors = plugin_errors()
    if errors:
        click.echo("\nplugins that could not be loaded (entry point group lrbench.implementations):")
        for origin, error in errors.items():
            click.echo(f"{origin}: {error}")


@main.command("check")
@click.option("--dtype", type=click.Choice(["float32", "float64", "float16", "bfloat16"]),
              default="float32", show_default=True,
              help="dtype the implementations run in (oracle: float64).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="device the implementations run on (the float64 oracle too, where it can).")
@click.option("--impl", "impls", default=None, metavar="LIST",
              help="Comma-separated implementations to check (default: all).")
@_plugin_option
def check_cmd(dtype: str, device: str, impls: str | None, plugins) -> None:
    """Check every implementation that runs here against the float64 reference (outputs and grads)."""
    import torch

    from lrbench import registry
    from lrbench.listing import quick_check
    from lrbench.registry import device_present

    _load_plugins(plugins)
    _warn_plugin_errors()
    names = [name.strip() for name in impls.split(",") if name.strip()] if impls else None
    unknown = [name for name in names or [] if name not in registry.implementations()]
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from "
                                 f"{', '.join(registry.implementations())}", param_hint="--impl")
    if not device_present(device):
        click.echo(f"no {device} device here: no implementation can run {dtype} on {device} here")
        sys.exit(1)
    results = quick_check(dtype=getattr(torch, dtype), device=device, impls=names)
    if not results:
        click.echo(f"no implementation can run {dtype} on {device} here (see `lrbench list`)")
        sys.exit(1)
    for r in results:
        status = "ok  " if r.ok else "FAIL"
        click.echo(f"{status} {r.impl:<15} {r.label:<32} max abs err {r.worst:.2e}"
                   + ("" if r.ok else "  " + "; ".join(r.failures))
                   + (f"  (output only: {r.unchecked})" if r.unchecked else ""))
    failed = [r for r in results if not r.ok]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


def _axis_options(command):
    """One ``--NAME LIST`` option per axis of the matrix (:data:`lrbench.bench.axes.AXES`)."""
    from lrbench.bench.axes import AXES

    for axis in reversed(AXES):
        command = click.option(f"--{axis.name}", axis.name.replace("-", "_") + "_axis",
                               default=None, metavar="LIST",
                               help=f"Comma-separated {axis.help} (replaces the preset's).")(command)
    return command


@main.command("run")
@click.option("--preset", default="quick", show_default=True,
              help="Named matrix (see `lrbench list`).")
@_axis_options
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
@_plugin_option
def run_cmd(preset, out, resume, shard_spec, min_rounds, max_time, threads, executor, nodes,
            partition, gpus_per_node, time_limit, slurm_args, plugins, **axes) -> None:
    """Run a benchmark matrix: gate each case against the reference, time it, record one CSV row.

    Every row is written as soon as its case finishes; a case that cannot run, fails the accuracy
    gate or raises becomes a row with its status and reason, and the run goes on. One run per
    --out folder: a second run into a folder in use is refused.
    """
    import torch

    from lrbench.bench.plan import make_plan
    from lrbench.bench.presets import preset_names
    from lrbench.bench.runner import run_matrix

    if preset not in preset_names():
        raise click.BadParameter(f"unknown preset {preset!r}; choose from {preset_names()}",
                                 param_hint="--preset")
    _load_plugins(plugins)
    _warn_plugin_errors()
    overrides = {name.removesuffix("_axis"): value for name, value in axes.items()}
    try:
        plan = make_plan(preset, overrides, shard_spec, min_rounds, max_time)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    if threads is not None:
        torch.set_num_threads(threads)
    out = out or f"reports/runs/{preset}"
    cluster = {"--nodes": nodes, "--partition": partition, "--gpus-per-node": gpus_per_node,
               "--time": time_limit, "--slurm-arg": slurm_args or None}
    if executor is not None or any(v is not None for v in cluster.values()):
        _run_sharded(plan, out, resume, threads, executor, shard_spec, cluster, plugins)
        return
    stream = sys.stdout  # the progress lines; pytest's own output goes to the run's log
    click.echo(f"{len(plan.cases)} cases ({plan.label}), {torch.get_num_threads()} threads, "
               f"-> {out}")

    def progress(index: int, total: int, row: dict) -> None:
        detail = (f"{row['median_s'] * 1e3:10.3f} ms" if row["status"] == "ok"
                  else row["reason"][:80])
        click.echo(f"[{index:>4}/{total}] {row['status']:<7} {row['case_id']:<60} {detail}",
                   file=stream)

    from lrbench.bench.runlock import FolderInUse

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
    if summary.interrupted:
        click.echo("interrupted; continue with --resume", err=True)
        sys.exit(130)


def _run_sharded(plan, out, resume, threads, executor, shard_spec, cluster, plugins) -> None:
    """``lrbench run --executor local|slurm``: shards through submitit, then the merge."""
    from lrbench.bench.cluster import run_sharded
    from lrbench.bench.cluster_options import make_options
    from lrbench.bench.runlock import FolderInUse

    given = [name for name, value in cluster.items() if value is not None]
    if executor is None:
        raise click.UsageError(f"{', '.join(given)} need(s) --executor local or slurm")
    if shard_spec is not None:
        raise click.UsageError("--shard and --executor exclude each other: --executor shards "
                               "the run itself (--nodes N)")
    try:
        options = make_options(executor, cluster["--nodes"], cluster["--partition"],
                               cluster["--gpus-per-node"], cluster["--time"],
                               cluster["--slurm-arg"] or ())
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


@main.command("machine")
@click.option("--device", "devices", default=None, metavar="LIST",
              help="Devices, e.g. cpu,cuda  [default: cpu, and cuda when present]")
@click.option("--dtype", "dtypes", default="float32", show_default=True, metavar="LIST",
              help="Dtypes of the GEMM peak, e.g. float32,float64,bfloat16.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads  [default: torch's current count]")
def machine_cmd(devices, dtypes, threads) -> None:
    """The machine and its measured limits: peak GEMM rate and copy bandwidth (the roofs of
    every run's roofline), a second or two per device and dtype."""
    import torch

    from lrbench.bench.limits import machine_report

    if devices is None:
        devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    try:
        text = machine_report([d.strip() for d in devices.split(",") if d.strip()],
                              [d.strip() for d in dtypes.split(",") if d.strip()], threads)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    click.echo(text)


@main.command("status")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def status_cmd(run_dir) -> None:
    """Per shard of RUN_DIR: planned cases, rows recorded (ok, failed, error, skipped), pending,
    and the job's state; works while the run is going and after."""
    from lrbench.bench.status import render, run_status

    manifest, shards = run_status(run_dir)
    click.echo(render(run_dir, manifest, shards))


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True))
def report_cmd(run_dir) -> None:
    """Write RUN_DIR/report.md and its PNG plots from RUN_DIR/results.csv."""
    from lrbench.bench.report import write_report

    path = write_report(run_dir)
    click.echo(f"wrote {path}")


def _threshold(ctx, param, value):
    from lrbench.bench.compare import parse_threshold

    try:
        return parse_threshold(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err


@main.command("compare")
@click.argument("base", type=click.Path(exists=True))
@click.argument("new", type=click.Path(exists=True))
@click.option("--threshold", default="10%", show_default=True, callback=_threshold,
              help="A case regressed when NEW's median exceeds BASE's by more than this.")
def compare_cmd(base, new, threshold) -> None:
    """Compare two runs (directories or CSVs) case by case; exit 1 if any case regressed."""
    from lrbench.bench.compare import compare_runs

    try:
        result = compare_runs(base, new, threshold)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    click.echo(f"{len(result.table)} cases in both runs; {len(result.only_base)} only in BASE, "
               f"{len(result.only_new)} only in NEW")
    for row in result.regressions.itertuples():
        click.echo(f"REGRESSED {row.case_id}: {row.base_s * 1e3:.3f} ms -> "
                   f"{row.new_s * 1e3:.3f} ms ({row.ratio:.2f}x)")
    for case_id in result.broken:
        click.echo(f"BROKEN {case_id}: timed in BASE, failed or raised in NEW")
    if len(result.regressions) or result.broken:
        click.echo(f"{len(result.regressions)} regression(s) beyond {threshold:.0%}, "
                   f"{len(result.broken)} broken case(s)", err=True)
        sys.exit(1)
    click.echo(f"no regression beyond {threshold:.0%}")


@main.command("merge")
@click.argument("pieces", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Directory for the merged results.csv (not needed for one sharded run).")
def merge_cmd(pieces, out) -> None:
    """Join runs (shards, or runs of several machines) into one results.csv: one row per case
    id and machine. `lrbench merge OUT` merges the shards of a --executor run into OUT."""
    from lrbench.bench.records import merge_runs, write

    if out is None:
        if len(pieces) != 1 or not (Path(pieces[0]) / "shards").is_dir():
            raise click.UsageError("--out is required, except for one folder of a sharded run "
                                   "(lrbench merge OUT)")
        from lrbench.bench.cluster import merge_shards
        from lrbench.bench.status import run_status

        path, rows = merge_shards(pieces[0])
        pending = sum(s.pending for s in run_status(pieces[0])[1])
        click.echo(f"{rows} rows from the shards of {pieces[0]} -> {path}"
                   + (f" ({pending} case(s) still pending)" if pending else ""))
        return
    merged = merge_runs(list(pieces))
    path = write(merged, out)
    click.echo(f"{len(merged)} cases from {len(pieces)} runs -> {path}")


@main.command("verify")
@click.option("--out", default="reports/verify", show_default=True,
              type=click.Path(file_okay=False), help="Directory for the CSV and Markdown files.")
@click.option("--impl", default="unfold", show_default=True,
              help="Implementation the LR layers are traced with (all count the same).")
@click.option("--size", default=224, show_default=True, help="Input height and width.")
@click.option("--network", "networks", multiple=True,
              help="Only this network (repeatable); default: all six.")
@click.option("--no-flop-counter", is_flag=True, help="Skip the FlopCounterMode cross-check.")
def verify_cmd(out, impl, size, networks, no_flop_counter) -> None:
    """Count params and multiply-adds of ResNet/LR-Net three ways; compare with the paper."""
    from lrbench.complexity.verify import verify
    from lrbench.complexity.verify_report import render_summary

    kwargs = {"names": tuple(networks)} if networks else {}
    try:
        report = verify(**kwargs, size=size, impl=impl, out_dir=out,
                        flop_counter=not no_flop_counter)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    click.echo(render_summary(report))
    for path in report.files:
        click.echo(f"wrote {path}")
    if report.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
