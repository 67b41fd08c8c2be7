"""Options and helpers that several commands share: ``--plugin``, the matrix axes, ``--threshold``."""

from __future__ import annotations

import click


def plugin_option(command):
    return click.option(
        "--plugin", "plugins", multiple=True, metavar="MODULE",
        help="Import MODULE (dotted name on sys.path, or a .py file) that registers "
             "implementations; repeatable.")(command)


def load_plugins(plugins: tuple[str, ...]) -> None:
    """Load each ``--plugin``; one that cannot be loaded is a usage error (exit code 2)."""
    import lrbench
    from lrbench.registry import PluginError

    for module in plugins:
        try:
            names = lrbench.load_plugin(module)
        except PluginError as err:
            raise click.UsageError(str(err)) from err
        click.echo(f"plugin {module}: {', '.join(names) or 'already loaded'}", err=True)


def warn_plugin_errors() -> None:
    from lrbench.listing import plugin_errors

    for origin, error in plugin_errors().items():
        click.echo(f"warning: {origin} could not be loaded: {error}", err=True)


def axis_options(command):
    """One ``--NAME LIST`` option per axis of the matrix (:data:`lrbench.bench.matrix.axes.AXES`)."""
    from lrbench.bench.matrix.axes import AXES

    for axis in reversed(AXES):
        command = click.option(f"--{axis.name}", axis.name.replace("-", "_") + "_axis",
                               default=None, metavar="LIST",
                               help=f"Comma-separated {axis.help} (replaces the preset's).")(command)
    return command


def threshold(ctx, param, value):
    from lrbench.bench.results.compare import parse_threshold

    try:
        return parse_threshold(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
