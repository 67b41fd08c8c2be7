"""``lrbench verify``."""

from __future__ import annotations

import sys

import click


@click.command("verify")
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


command = verify_cmd
