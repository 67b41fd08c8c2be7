"""Which registered implementations the tests run, filtered at collection.

Implementations that cannot run here (no CUDA, no compiler, no Triton) are left out with their
reason (:func:`left_out`; every test run ends with one line listing them). Missing is a failure
where it is required: with ``CI=true`` every implementation with a device present here must run,
and ``LRBENCH_REQUIRE=name,...`` names more (:func:`required`); tests/test_required.py then fails
with the reason instead of the tests being skipped. Implementations running under Triton's CPU
interpreter are slow, so they get only the light cases (``INTERPRETED``).
"""

from __future__ import annotations

import os

import pytest
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


def required() -> list[str]:
    """Implementations that must run here: ``LRBENCH_REQUIRE``'s names, and with ``CI=true``
    every registered implementation with a device present on this machine."""
    names = [n.strip() for n in os.environ.get("LRBENCH_REQUIRE", "").split(",") if n.strip()]
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        names += [n for n in lrbench.implementations() if registry.get(n).devices_here()]
    return list(dict.fromkeys(names))


def why_missing(name: str) -> str | None:
    """Why ``name`` cannot run on this machine (``None``: it can)."""
    if name not in lrbench.implementations():
        return f"no implementation {name!r} is registered (have {lrbench.implementations()})"
    impl = registry.get(name)
    reason = impl.unavailable_reason()
    if reason is None and not impl.devices_here():
        reason = f"none of its devices {list(impl.devices)} is present"
    return reason


def left_out() -> dict[str, str]:
    """Registered implementations the tests leave out here, with the reason."""
    out = {name: why_missing(name) for name in lrbench.implementations()}
    out = {name: reason for name, reason in out.items() if reason}
    for name in INTERPRETED_VARIANTS:
        out.setdefault(name, "interpreted: its forward is fused_triton's, its backward is checked "
                             "in tests/test_fused_triton.py only")
    return out


def skip_or_fail(name: str) -> None:
    """In a test: skip it if ``name`` cannot run here, or fail with the reason if it is required."""
    reason = why_missing(name)
    if reason is None:
        return
    if name in required():
        pytest.fail(f"{name} is required here (CI=true or LRBENCH_REQUIRE) but cannot run: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")


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
