"""``lrbench check``."""

from __future__ import annotations

import sys

import click

from lrbench.commands import options


@click.command("check")
@click.option("--dtype", type=click.Choice(["float32", "float64", "float16", "bfloat16"]),
              default="float32", show_default=True,
              help="dtype the implementations run in (oracle: float64).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="device the implementations run on (the float64 oracle too, where it can).")
@click.option("--impl", "impls", default=None, metavar="LIST",
              help="Comma-separated implementations to check (default: all).")
@options.plugin_option
def check_cmd(dtype: str, device: str, impls: str | None, plugins) -> None:
    """Check every implementation that runs here against the float64 reference (outputs and grads)."""
    import torch

    from lrbench import registry
    from lrbench.listing import quick_check
    from lrbench.registry import device_present

    options.load_plugins(plugins)
    options.warn_plugin_errors()
    names = [name.strip() for name in impls.split(",") if name.strip()] if impls else None
    unknown = [name for name in names or [] if name not in registry.implementations()]
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from "
                                 f"{', '.join(registry.implementations())}", param_hint="--impl")
    if not device_present(device):
        click.echo(f"no {device} device here: no implementation can run {dtype} on {device} here")
        sys.exit(1)
    results = quick_check(dtype=getattr(torch, dtype), device=device, impls=names)
    if not results:
        click.echo(f"no implementation can run {dtype} on {device} here (see `lrbench list`)")
        sys.exit(1)
    for r in results:
        status = "ok  " if r.ok else "FAIL"
        click.echo(f"{status} {r.impl:<15} {r.label:<32} max abs err {r.worst:.2e}, "
                   f"{r.err_over_limit:.2f} of its limit ({r.limit_source})"
                   + ("" if r.ok else "  " + "; ".join(r.failures))
                   + (f"  (output only: {r.unchecked})" if r.unchecked else ""))
    failed = [r for r in results if not r.ok]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


command = check_cmd
