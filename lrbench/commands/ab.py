"""``lrbench ab``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lrbench.commands import options


@click.command("ab")
@click.argument("base_rev")
@click.argument("new_rev", default="HEAD")
@click.option("--preset", default="quick", show_default=True,
              help="Named matrix (see `lrbench list`).")
@options.axis_options
@click.option("--out", type=click.Path(file_okay=False), default="reports/ab", show_default=True,
              help="Folder of both sides' runs (OUT/base/I, OUT/new/I) and the comparison "
                   "(OUT/comparison.csv, OUT/comparison.md).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per side, interleaved base, new, base, new ...")
@click.option("--min-rounds", type=click.IntRange(min=1), default=None,
              help="Minimum timed rounds per case and run (default: the preset's).")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Target seconds of timed rounds per case and run (default: the preset's).")
@click.option("--passes", type=click.IntRange(min=1), default=None,
              help="Passes over the matrix in each run (default: the preset's; passed on only "
                   "when given, so both revisions must know `lrbench run --passes`). The A/B's "
                   "unit is the run: 1 is enough.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch intra-op threads in both sides' runs (default: torch's choice).")
@options.verdict_options
@options.plugin_option
def ab_cmd(base_rev, new_rev, preset, out, repeats, min_rounds, max_time, passes, threads, threshold,
           alpha, markdown, plugins, **axes) -> None:
    """Benchmark two revisions of the git repository here, interleaved, and compare them.

    Each revision (as committed: uncommitted changes belong to neither) is checked out in a
    temporary git worktree and run with its own code in this Python environment, in separate
    processes: base, new, base, new ... (--repeats each), so that the machine's drift hits both
    sides alike. Every round of every run goes into the statistics of `lrbench compare`.
    NEW_REV defaults to HEAD. Exit 0: no confirmed regression; 1: a case significantly slower
    beyond --threshold, or broken (named); 2: bad input (an unknown revision, an option), or a
    side that could not run.
    """
    from lrbench.bench.ab.interleave import ABPlan, SideFailed, run_ab
    from lrbench.bench.ab.revisions import RevisionError, repository, resolve
    from lrbench.bench.matrix.plan import make_plan
    from lrbench.bench.matrix.presets import preset_names

    if preset not in preset_names():
        raise click.BadParameter(f"unknown preset {preset!r}; choose from {preset_names()}",
                                 param_hint="--preset")
    overrides = {name.removesuffix("_axis"): value for name, value in axes.items()}
    try:  # the options checked here once, not in each child
        cases = make_plan(preset, overrides, None, min_rounds, max_time, passes).cases
        repo = repository(Path.cwd())
        base, new = resolve(repo, base_rev), resolve(repo, new_rev)
    except ValueError as err:  # RevisionError included
        raise click.UsageError(str(err)) from err
    run_args = ["--preset", preset]
    for name, value in overrides.items():
        if value is not None:
            run_args += [f"--{name}", value]
    for flag, value in (("--min-rounds", min_rounds), ("--max-time", max_time),
                        ("--passes", passes), ("--threads", threads)):
        if value is not None:
            run_args += [flag, str(value)]
    for plugin in plugins:  # a .py path made absolute: the children run in the checkouts
        run_args += ["--plugin", str(Path(plugin).resolve()) if plugin.endswith(".py") else plugin]
    out = Path(out).resolve()
    click.echo(f"A/B: {base_rev} ({base.short}) vs {new_rev} ({new.short}), {len(cases)} cases "
               f"({preset}), {repeats} run(s) a side, interleaved -> {out}")
    try:
        plan = ABPlan(base=base, new=new, run_args=run_args, repeats=repeats, out=out,
                      threshold=threshold, alpha=alpha)
        result = run_ab(plan, repo, on_event=click.echo)
    except (ValueError, RevisionError) as err:
        raise click.UsageError(str(err)) from err
    except SideFailed as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    click.echo(f"runs: base {result.seconds['base']:.0f} s, new {result.seconds['new']:.0f} s; "
               f"comparison: {out / 'comparison.csv'}, {out / 'comparison.md'}")
    options.report_comparison(result.comparison, f"lrbench ab {base_rev} {new_rev}",
                              result.notes, markdown)
    sys.exit(1 if result.comparison.failed else 0)


command = ab_cmd
