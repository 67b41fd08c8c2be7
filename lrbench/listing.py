"""What ``lrbench list`` and ``lrbench check`` show: the registry as rows, and a quick agreement check."""

from __future__ import annotations

import torch

from lrbench import registry
from lrbench.check import CheckResult, check_against_reference
from lrbench.inputs import Shape

# Small shapes that still hit the edge cases: borders, stride 2, C not divisible by m, k=1.
QUICK_CHECK_SHAPES = (
    Shape(B=2, C=20, H=9, W=7, k=5, m=8, stride=1),
    Shape(B=1, C=100, H=11, W=10, k=7, m=8, stride=2),
    Shape(B=2, C=6, H=3, W=5, k=1, m=2, stride=1),
)


def implementation_rows() -> list[dict[str, str]]:
    """One row per registered implementation: devices, dtypes, and whether it can run here."""
    rows = []
    for name in registry.implementations():
        impl = registry.get(name)
        reason = impl.unavailable_reason()
        here = impl.devices_here()
        if reason is None and not here:
            reason = f"none of its devices {list(impl.devices)} is present"
        rows.append({
            "name": name,
            "runs here": "yes (" + ", ".join(here) + ")" if reason is None else "no",
            "devices": ",".join(impl.devices),
            "dtypes": ",".join(str(d).removeprefix("torch.") for d in impl.dtypes),
            "why not": reason or "",
            "summary": impl.summary,
            "looser limits": [
                f"{str(dtype).removeprefix('torch.')}: forward {loose.forward:g}x, backward "
                f"{loose.backward:g}x the suite's: {loose.reason}"
                for dtype, loose in impl.loosened.items()],
        })
    return rows


def quick_check(dtype: torch.dtype = torch.float32, device: str = "cpu",
                impls: list[str] | None = None) -> list[CheckResult]:
    """Every implementation (or those in ``impls``) that can run here, against the float64
    reference, on ``QUICK_CHECK_SHAPES``."""
    results = []
    for name in impls or registry.implementations():
        impl = registry.get(name)
        for shape in QUICK_CHECK_SHAPES:
            for phi in ("sqdiff", "absdiff", "mult"):
                if impl.why_not(shape.spec(phi=phi, dtype=dtype, device=device)):
                    continue
                try:
                    result = check_against_reference(name, shape, dtype=dtype, device=device,
                                                     phi=phi)
                except Exception as err:  # a broken (e.g. plugin) implementation: a failure
                    result = CheckResult(impl=name, dtype=dtype, label=f"{shape.label()} {phi}",
                                         failures=[f"raised {type(err).__name__}: {err}"])
                results.append(result)
    return results


def plugin_errors() -> dict[str, str]:
    """Entry points of the group ``lrbench.implementations`` that could not be loaded, and why."""
    registry.implementations()  # loads them
    return dict(registry.PLUGIN_ERRORS)

