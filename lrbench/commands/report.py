"""``lrbench report``."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True))
def report_cmd(run_dir) -> None:
    """Write RUN_DIR/report.md and its PNG plots from RUN_DIR/results.csv."""
    from lrbench.bench.results.report import write_report

    path = write_report(run_dir)
    click.echo(f"wrote {path}")


command = report_cmd
