"""``lrbench list``."""

from __future__ import annotations

import click

from lrbench.commands import options


@click.command("list")
@options.plugin_option
def list_cmd(plugins) -> None:
    """Show each implementation, what it supports, whether it can run here (and why not), and
    any looser accuracy limits it declared (with the reason)."""
    from lrbench.listing import implementation_rows, plugin_errors

    options.load_plugins(plugins)
    for row in implementation_rows():
        click.echo(f"{row['name']:<15} {row['runs here']:<16} devices={row['devices']:<9} "
                   f"dtypes={row['dtypes']}")
        click.echo(f"{'':<15} {row['summary']}")
        if row["why not"]:
            click.echo(f"{'':<15} why not: {row['why not']}")
        for line in row["looser limits"]:
            click.echo(f"{'':<15} looser limits, {line}")
    from lrbench.bench.matrix.presets import PRESETS

    click.echo("\npresets (lrbench run --preset NAME):")
    for name, preset in PRESETS.items():
        click.echo(f"{name:<15} {preset['description']}")
    errors = plugin_errors()
    if errors:
        click.echo("\nplugins that could not be loaded (entry point group lrbench.implementations):")
        for origin, error in errors.items():
            click.echo(f"{origin}: {error}")


command = list_cmd
