"""Correctness gate: compare one implementation with the float64 reference, outputs and gradients.

Used by the tests, by ``lrbench check`` and by the benchmark before anything is timed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lrbench import registry
from lrbench.inputs import Inputs, Shape, make_inputs, to_layout
from lrbench.op import local_relation


@dataclass
class CheckResult:
    """Max absolute error per tensor (``y`` and the four gradients) and whether all are in tolerance."""

    impl: str
    dtype: torch.dtype
    label: str = ""
    max_abs_err: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> float:
        return max(self.max_abs_err.values(), default=float("nan"))


def run_with_grads(inputs: Inputs, *, impl, kernel_size, stride, phi, grad_out):
    """Forward and backward of the op; returns ``{"y": y, "x": dx, ...}`` (detached)."""
    leaves = inputs.map(lambda t: t.detach().requires_grad_(True))  # keeps strides
    y = local_relation(*leaves, kernel_size=kernel_size, stride=stride, phi=phi, impl=impl)
    y.backward(grad_out.to(y.dtype))
    out = {"y": y.detach()}
    out.update({n: t.grad.detach() for n, t in leaves.items()})
    return out


def check_against_reference(
    impl: str,
    shape: Shape,
    *,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    phi: str = "sqdiff",
    seed: int = 0,
    backward: bool = True,
    oracle: str = "reference",
    layout: str = "contiguous",
) -> CheckResult:
    """Run ``impl`` in ``dtype`` and ``oracle`` in float64 on the same fresh inputs and compare.

    ``oracle="unfold"`` (float64) stands in for the reference on shapes too large for it.
    ``layout`` ("contiguous", "channels_last", "noncontiguous") applies to ``impl``'s inputs only.
    """
    inputs = make_inputs(shape, dtype=torch.float64, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    grad_out = torch.randn((shape.B, shape.C, shape.Ho, shape.Wo), generator=gen,
                           dtype=torch.float64)
    kwargs = dict(kernel_size=shape.k, stride=shape.stride, phi=phi)
    cast = inputs.map(lambda t: to_layout(t.to(device, dtype), layout))
    if backward:
        expected = run_with_grads(inputs, impl=oracle, grad_out=grad_out, **kwargs)
        got = run_with_grads(cast, impl=impl, grad_out=grad_out.to(device), **kwargs)
    else:
        with torch.no_grad():
            expected = {"y": local_relation(*inputs, impl=oracle, **kwargs)}
            got = {"y": local_relation(*cast, impl=impl, **kwargs)}
    atol, rtol = registry.get(impl).tolerance(dtype)
    result = CheckResult(impl=impl, dtype=dtype, label=f"{shape.label()} {phi}")
    for name, ref in expected.items():
        value = got[name].double().cpu()
        err = (value - ref).abs()
        result.max_abs_err[name] = err.max().item() if err.numel() else 0.0
        if not torch.isfinite(value).all() or (err > atol + rtol * ref.abs()).any():
            result.failures.append(
                f"{name}: max abs err {result.max_abs_err[name]:.3g} > atol {atol:g} + rtol {rtol:g}*|ref|"
            )
    return result
