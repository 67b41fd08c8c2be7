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
    unchecked: str = ""  # why the gradients were not compared (the implementation has no backward)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> float:
        return max(self.max_abs_err.values(), default=float("nan"))


class BadOutput(ValueError):
    """An implementation returned something that cannot be compared (wrong shape, no gradient)."""


def _checked_output(y: object, expected_shape: torch.Size) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise BadOutput(f"y: expected a tensor, got {type(y).__name__}")
    if y.shape != expected_shape:
        raise BadOutput(f"y: shape {tuple(y.shape)}, expected {tuple(expected_shape)}")
    return y


def run_with_grads(inputs: Inputs, *, impl, kernel_size, stride, phi, grad_out):
    """Forward and backward of the op; returns ``{"y": y, "x": dx, ...}`` (detached).

    Raises:
        BadOutput: ``y`` has the wrong shape, or an input got no gradient.
    """
    leaves = inputs.map(lambda t: t.detach().requires_grad_(True))  # keeps strides
    y = local_relation(*leaves, kernel_size=kernel_size, stride=stride, phi=phi, impl=impl)
    y = _checked_output(y, grad_out.shape)
    y.backward(grad_out.to(y.dtype))
    out = {"y": y.detach()}
    for name, leaf in leaves.items():
        if leaf.grad is None:
            raise BadOutput(f"{name}: no gradient (the output does not depend on it through autograd)")
        out[name] = leaf.grad.detach()
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
    The oracle runs on ``device`` too when it supports it there in float64 (a GPU's float64
    is still float64, and it keeps the gate of a large CUDA case from waiting on the CPU).
    Where ``impl`` refuses the backward pass of this call (a registry reason), only the output is
    compared and ``unchecked`` says why.
    """
    spec = shape.spec(phi=phi, dtype=dtype, device=device)
    implementation = registry.get(impl)
    no_backward = (implementation.why_not(spec, backward=True)
                   if backward and not implementation.why_not(spec) else [])
    backward = backward and not no_backward
    inputs = make_inputs(shape, dtype=torch.float64, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    grad_out = torch.randn((shape.B, shape.C, shape.Ho, shape.Wo), generator=gen,
                           dtype=torch.float64)
    kwargs = dict(kernel_size=shape.k, stride=shape.stride, phi=phi)
    cast = inputs.map(lambda t: to_layout(t.to(device, dtype), layout))
    result = CheckResult(impl=impl, dtype=dtype, label=f"{shape.label()} {phi}",
                         unchecked="; ".join(no_backward))
    oracle_device = device if not registry.get(oracle).why_not(
        shape.spec(phi=phi, dtype=torch.float64, device=device)) else "cpu"
    exact = inputs.map(lambda t: t.to(oracle_device))
    if backward:
        expected = run_with_grads(exact, impl=oracle, grad_out=grad_out.to(oracle_device),
                                  **kwargs)
    else:
        with torch.no_grad():
            expected = {"y": local_relation(*exact, impl=oracle, **kwargs)}
    expected = {n: t.cpu() for n, t in expected.items()}
    try:
        if backward:
            got = run_with_grads(cast, impl=impl, grad_out=grad_out.to(device), **kwargs)
        else:
            with torch.no_grad():
                got = {"y": _checked_output(local_relation(*cast, impl=impl, **kwargs),
                                            grad_out.shape)}
    except BadOutput as err:
        result.failures.append(str(err))
        return result
    for name, ref in expected.items():
        # the output against the forward tolerance, the four gradients against the backward one
        atol, rtol = (implementation.tolerance(dtype) if name == "y"
                      else implementation.grad_tolerance(dtype))
        value = got[name].double().cpu()
        err = (value - ref).abs()
        result.max_abs_err[name] = err.max().item() if err.numel() else 0.0
        if not torch.isfinite(value).all() or (err > atol + rtol * ref.abs()).any():
            result.failures.append(
                f"{name}: max abs err {result.max_abs_err[name]:.3g} > atol {atol:g} + rtol {rtol:g}*|ref|"
            )
    return result
