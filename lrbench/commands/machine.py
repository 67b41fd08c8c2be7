"""``lrbench machine``."""

from __future__ import annotations

import click


@click.command("machine")
@click.option("--device", "devices", default=None, metavar="LIST",
              help="Devices, e.g. cpu,cuda  [default: cpu, and cuda when present]")
@click.option("--dtype", "dtypes", default="float32", show_default=True, metavar="LIST",
              help="Dtypes of the GEMM peak, e.g. float32,float64,bfloat16.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads  [default: torch's current count]")
def machine_cmd(devices, dtypes, threads) -> None:
    """The machine and its measured limits: peak GEMM rate and copy bandwidth (the roofs of
    every run's roofline), a second or two per device and dtype."""
    import torch

    from lrbench.bench.measure.limits import machine_report

    if devices is None:
        devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    try:
        text = machine_report([d.strip() for d in devices.split(",") if d.strip()],
                              [d.strip() for d in dtypes.split(",") if d.strip()], threads)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    click.echo(text)


command = machine_cmd
