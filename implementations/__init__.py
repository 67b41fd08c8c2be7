"""Implementations of the local relation op, one file each; importing this package registers them.

Each module calls :func:`lrbench.registry.register` with an :class:`Implementation` that
states the devices and dtypes it supports and why it cannot run elsewhere. The order below is
the order ``lrbench list`` shows: the oracle first, then from plainest to most fused.
"""

import importlib

MODULES = ("reference", "unfold", "im2col_matmul", "fused_cpu", "fused_triton")

for _module in MODULES:
    importlib.import_module(f"implementations.{_module}")
