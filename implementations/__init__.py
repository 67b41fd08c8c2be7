"""Implementations of the local relation op, one file each; importing this package registers them.

Each module calls :func:`lrbench.registry.register` with an :class:`Implementation` that
states the devices and dtypes it supports and why it cannot run elsewhere.
"""

from implementations import reference  # noqa: F401  (first: the oracle)
from implementations import unfold  # noqa: F401
from implementations import im2col_matmul  # noqa: F401
from implementations import fused_cpu  # noqa: F401
from implementations import fused_triton  # noqa: F401
