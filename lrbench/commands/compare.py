"""``lrbench compare``."""

from __future__ import annotations

import sys

import click

from lrbench.commands import options


@click.command("compare")
@click.argument("base", type=click.Path(exists=True))
@click.argument("new", type=click.Path(exists=True))
@options.verdict_options
def compare_cmd(base, new, threshold, alpha, markdown) -> None:
    """Compare two runs (directories or CSVs) case by case on their rounds: ratio of medians with
    a 95% bootstrap interval, a rank-test p-value and a verdict. Exit 1 only for a case
    significantly slower by more than --threshold, or one that broke."""
    from lrbench.bench.comparison import verdict_table
    from lrbench.bench.comparison.compare import compare_frames, load_side
    from lrbench.bench.results import conditions

    try:
        base_rows, new_rows = load_side("BASE", [base]), load_side("NEW", [new])
        result = compare_frames(base_rows, new_rows, threshold, alpha)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    notes = [verdict_table.DRIFT_NOTE, *conditions.side_notes(base_rows, new_rows)]
    options.report_comparison(result, f"lrbench compare {base} {new}", notes, markdown)
    sys.exit(1 if result.failed else 0)


command = compare_cmd
