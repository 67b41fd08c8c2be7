"""The ``lrbench`` command line: a thin click layer that parses, calls :mod:`lrbench`, and prints."""

from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lrbench")
def main() -> None:
    """Benchmark and verify the local relation layer of LR-Net (Hu et al., ICCV 2019)."""


@main.command("list")
def list_cmd() -> None:
    """Show each implementation, what it supports, and whether it can run here (and why not)."""
    from lrbench.listing import implementation_rows

    for row in implementation_rows():
        click.echo(f"{row['name']:<15} {row['runs here']:<16} devices={row['devices']:<9} "
                   f"dtypes={row['dtypes']}")
        click.echo(f"{'':<15} {row['summary']}")
        if row["why not"]:
            click.echo(f"{'':<15} why not: {row['why not']}")


@main.command("check")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True, help="dtype the implementations run in (oracle: float64).")
def check_cmd(dtype: str) -> None:
    """Check every implementation that runs here against the float64 reference (outputs and grads)."""
    import torch

    from lrbench.listing import quick_check

    results = quick_check(dtype=getattr(torch, dtype))
    for r in results:
        status = "ok  " if r.ok else "FAIL"
        click.echo(f"{status} {r.impl:<15} {r.label:<32} max abs err {r.worst:.2e}"
                   + ("" if r.ok else "  " + "; ".join(r.failures)))
    failed = [r for r in results if not r.ok]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
