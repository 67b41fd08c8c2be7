"""``lrbench merge``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("merge")
@click.argument("pieces", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Directory for the merged results.csv (not needed for one sharded run).")
def merge_cmd(pieces, out) -> None:
    """Join runs (shards, or runs of several machines) into one results.csv: one row per case
    id and machine. `lrbench merge OUT` merges the shards of a --executor run into OUT."""
    from lrbench.bench.results import conditions
    from lrbench.bench.results.records import merge_runs, write

    if out is None:
        if len(pieces) != 1 or not (Path(pieces[0]) / "shards").is_dir():
            raise click.UsageError("--out is required, except for one folder of a sharded run "
                                   "(lrbench merge OUT)")
        from lrbench.bench.cluster.merge import merge_shards
        from lrbench.bench.results.status import run_status

        path, merged = merge_shards(pieces[0])
        pending = sum(s.pending for s in run_status(pieces[0])[1])
        click.echo(f"{len(merged)} rows from the shards of {pieces[0]} -> {path}"
                   + (f" ({pending} case(s) still pending)" if pending else ""))
    else:
        merged = merge_runs(list(pieces))
        path = write(merged, out)
        click.echo(f"{len(merged)} cases from {len(pieces)} runs -> {path}")
    for warning in conditions.mixed_setups(merged):
        click.echo(f"warning: {warning}", err=True)


command = merge_cmd
