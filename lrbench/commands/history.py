"""``lrbench history``."""

from __future__ import annotations

import click

from lrbench.commands import options


@click.command("history")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for index.html and its PNG plots.")
@click.option("--threshold", default="10%", show_default=True, callback=options.threshold,
              help="The smallest change between two runs that a verdict calls slower or faster.")
@click.option("--alpha", default=0.01, show_default=True, type=click.FloatRange(0, 1, min_open=True,
              max_open=True), help="Significance level of the rank test behind a verdict.")
def history_cmd(run_dirs, out, threshold, alpha) -> None:
    """Write OUT/index.html: every case's median and spread over RUN_DIRS (one folder per run),
    the runs in the time order of their data, one machine's runs apart from another's, and the
    verdict of each change between consecutive runs. Static: no server, no network."""
    from lrbench.bench.pages.history import build

    command = "lrbench history " + " ".join(run_dirs) + f" --out {out}"
    try:
        path = build(list(run_dirs), out, threshold=threshold, alpha=alpha, command=command)
    except (ValueError, FileNotFoundError) as err:
        raise click.UsageError(str(err)) from err
    click.echo(f"wrote {path}")


command = history_cmd
