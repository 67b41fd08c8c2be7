"""The ``lrbench`` command line: a thin click group; each command lives in :mod:`lrbench.commands`.

Nothing heavy is imported here or in the command modules at import time (torch, pandas and the
harness are imported inside each command), so ``lrbench --help`` starts at once.
"""

from __future__ import annotations

import importlib

import click

# The commands in the order ``lrbench --help`` lists them; lrbench/commands/NAME.py defines
# ``command``.
COMMANDS = ("list", "check", "verify", "run", "status", "merge", "report", "history", "compare",
            "ab", "export", "machine", "profile")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lrbench")
def main() -> None:
    """Benchmark and verify the local relation layer of LR-Net (Hu et al., ICCV 2019)."""
    import warnings

    # The flex_attention implementation runs eager on purpose (compiled, it is the compile axis's
    # inductor row); torch would say so on every call, interleaved with the progress lines.
    warnings.filterwarnings("ignore", message="flex_attention called without torch.compile",
                            category=UserWarning)


for _name in COMMANDS:
    main.add_command(importlib.import_module(f"lrbench.commands.{_name}").command)
