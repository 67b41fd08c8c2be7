"""Which registered implementations the tests run, filtered at collection.

Implementations that cannot run here (no CUDA, no compiler, no Triton) are left out with their
reason visible in ``lrbench list``. Implementations running under Triton's CPU interpreter are
slow, so they get only the light cases (``INTERPRETED``).
"""

from __future__ import annotations

import os

import torch

import lrbench
from lrbench import registry

INTERPRETED = (
    {"fused_triton", "fused_triton_det"}
    if os.environ.get("TRITON_INTERPRET") == "1" and not torch.cuda.is_available()
    else set()
)
# Under the interpreter the registry-wide tests leave these out: fused_triton_det runs
# fused_triton's forward, and tests/test_fused_triton.py checks its backward (DET_CASES); each
# interpreted case costs seconds.
INTERPRETED_VARIANTS = {"fused_triton_det"} & INTERPRETED


def runnable_on_cpu(*, include_reference: bool = False, include_interpreted: bool = True,
                    needs_backward: bool = True) -> list[str]:
    """Implementations the CPU tests run; ``needs_backward=False`` adds those whose backward is
    refused on CPU (a registry reason, e.g. FlexAttention), for tests of the forward only."""
    names = []
    tiny = lrbench.Shape(1, 2, 3, 3, k=1, m=1)
    for name in lrbench.implementations():
        impl = registry.get(name)
        if impl.unavailable_reason() is not None or "cpu" not in impl.devices:
            continue
        if all(impl.why_not(tiny.spec(dtype=dtype), backward=needs_backward)
               for dtype in (torch.float64, torch.float32)):
            continue
        if name == "reference" and not include_reference:
            continue
        if (name in INTERPRETED and not include_interpreted) or name in INTERPRETED_VARIANTS:
            continue
        names.append(name)
    return names


def supports(name: str, dtype: torch.dtype) -> bool:
    return dtype in registry.get(name).dtypes
