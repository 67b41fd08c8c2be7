"""``lrbench report``."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--html", "html_page", is_flag=True,
              help="Also write RUN_DIR/report.html: the same report as one self-contained page "
                   "(sortable tables, plots embedded; opens offline).")
def report_cmd(run_dir, html_page) -> None:
    """Write RUN_DIR/report.md and its PNG plots from RUN_DIR/results.csv."""
    from lrbench.bench.results.report import write_report

    path = write_report(run_dir, html_page=html_page)
    click.echo(f"wrote {path}")


command = report_cmd
