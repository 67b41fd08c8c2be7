"""``lrbench compare``."""

from __future__ import annotations

import sys

import click

from lrbench.commands import options


@click.command("compare")
@click.argument("base", type=click.Path(exists=True))
@click.argument("new", type=click.Path(exists=True))
@click.option("--threshold", default="10%", show_default=True, callback=options.threshold,
              help="A case regressed when NEW's median exceeds BASE's by more than this.")
def compare_cmd(base, new, threshold) -> None:
    """Compare two runs (directories or CSVs) case by case; exit 1 if any case regressed."""
    from lrbench.bench.results.compare import compare_runs

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


command = compare_cmd
