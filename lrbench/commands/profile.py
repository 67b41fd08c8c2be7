"""``lrbench profile``."""

from __future__ import annotations

import shlex

import click


def command_line(ctx: click.Context) -> str:
    """The command that reproduces this profile: its argument and every option not at its
    default, in the options' order."""
    words = ["lrbench", "profile", ctx.params["network"]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if not isinstance(param, click.Option) or value is None or value is False:
            continue
        if param.is_flag:
            words.append(param.opts[0])
        elif value != param.default:
            words += [param.opts[0], str(value)]
    return " ".join(shlex.quote(word) for word in words)


@click.command("profile")
@click.argument("network")
@click.option("--train", is_flag=True, help="Profile a training step (forward, loss, backward) "
              "instead of an eval forward.")
@click.option("--impl", default=None, metavar="NAME",
              help="The LR layers' implementation, or 'floor' (the op replaced by a free "
                   "stand-in)  [default: the fastest usable]")
@click.option("--channels-last", is_flag=True, help="Model and images in channels_last.")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--size", type=click.IntRange(min=1), default=224, show_default=True,
              help="Image height and width.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Profiled passes (medians reported), after one warm-up pass.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads  [default: torch's current count]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for profile.md/.csv/.png  [default: reports/profile/NETWORK-PASS-FORMAT-IMPL]")
def profile_cmd(network, train, impl, channels_last, batch, size, rounds, threads,
                out_dir) -> None:
    """Where NETWORK's pass spends its time (lrnet50, resnet50, ...): per kind of module (1x1
    conv, LR op, batch norm, ...) and per LR layer, forward and backward, as a table (printed
    and in profile.md) and a PNG."""
    from lrbench import registry
    from lrbench.bench.matrix.cases import FLOOR
    from lrbench.bench.measure.profile import ProfileConfig, run_profile
    from lrbench.bench.results.profile_report import kind_rows, write_profile
    from lrbench.tables import markdown_table

    if impl is not None and impl != FLOOR:
        try:
            registry.get(impl)
        except ValueError as err:
            raise click.BadParameter(f"{err} (or {FLOOR!r})", param_hint="--impl") from err
    try:
        config = ProfileConfig(network=network, train=train, impl=impl,
                               channels_last=channels_last, batch=batch, size=size,
                               rounds=rounds, threads=threads)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    if out_dir is None:
        parts = [network, "train" if train else "fwd",
                 "channels_last" if channels_last else "contiguous", impl or "default"]
        out_dir = f"reports/profile/{'-'.join(parts)}"
    result = run_profile(config)
    command = command_line(click.get_current_context())
    path = write_profile(result, out_dir, command)
    click.echo(markdown_table(kind_rows(result)))
    click.echo(f"pass: {result.plain_ms:,.1f} ms without the profiler, "
               f"{result.profiled_ms:,.1f} ms under it")
    click.echo(f"wrote {path}")


command = profile_cmd
