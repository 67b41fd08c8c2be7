"""``lrbench status``."""

from __future__ import annotations

import click


@click.command("status")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def status_cmd(run_dir) -> None:
    """Per shard of RUN_DIR: planned cases, rows recorded (ok, failed, error, skipped), pending,
    and the job's state; works while the run is going and after."""
    from lrbench.bench.results.status import render, run_status

    manifest, shards = run_status(run_dir)
    click.echo(render(run_dir, manifest, shards))


command = status_cmd
