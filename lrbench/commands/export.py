"""``lrbench export``."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("run", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["github-action-benchmark"]), required=True,
              help="github-action-benchmark: its customSmallerIsBetter JSON (median in ms).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write to FILE (atomically)  [default: standard output]")
def export_cmd(run, fmt, out) -> None:
    """Write a run's timed rows (a run folder or CSV) in another tool's format."""
    from lrbench.bench.results import records
    from lrbench.bench.results.export import export
    from lrbench.files import atomic_write

    text = export(records.load(run), fmt)
    if out is None:
        click.echo(text, nl=False)
    else:
        atomic_write(out, text)
        click.echo(f"{fmt}: {out}", err=True)


command = export_cmd
