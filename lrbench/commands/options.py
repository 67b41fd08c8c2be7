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
    from lrbench.bench.comparison.compare import parse_threshold

    try:
        return parse_threshold(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err


def alpha(ctx, param, value):
    if not 0 < value < 1:
        raise click.BadParameter(f"expected a significance level between 0 and 1, got {value}")
    return value


def verdict_options(command):
    """``--threshold``, ``--alpha``, ``--markdown FILE``: what a comparison needs to decide."""
    command = click.option(
        "--markdown", type=click.Path(dir_okay=False), default=None, metavar="FILE",
        help="Also write the table as Markdown to FILE (a pull-request comment).")(command)
    command = click.option(
        "--alpha", type=float, default=0.01, show_default=True, callback=alpha,
        help="Significance level of the rank test (Mann-Whitney U) behind slower/faster.")(command)
    return click.option(
        "--threshold", default="10%", show_default=True, callback=threshold,
        help="The smallest change that matters: slower beyond 1 + T, faster below 1 / (1 + T)."
    )(command)


def report_comparison(result, title: str, notes: list[str], markdown: str | None) -> None:
    """Print a comparison (notes on stderr), write its Markdown when asked, say the outcome."""
    from lrbench.bench.comparison import verdict_table
    from lrbench.files import atomic_write

    click.echo(verdict_table.summary(result))
    for line in verdict_table.terminal_lines(result):
        click.echo(line)
    click.echo(verdict_table.method(result))
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if markdown:
        atomic_write(markdown, verdict_table.markdown(result, title, notes))
        click.echo(f"markdown: {markdown}")
    if result.failed:
        names = ", ".join([*result.regressions["case_id"], *result.broken])
        click.echo(f"{len(result.regressions)} regression(s) beyond {result.threshold:.0%} "
                   f"(p < {result.alpha:g}), {len(result.broken)} broken: {names}", err=True)
    else:
        click.echo(f"no confirmed regression beyond {result.threshold:.0%}")
