"""Correctness gate: compare one implementation with the float64 reference, outputs and gradients.

Used by the tests, by ``lrbench check`` and by the benchmark before anything is timed. Each value
is held to the suite's limit for its dtype and reduction length (:mod:`lrbench.accuracy.limits`),
loosened only where the implementation declared a reason. With ``part=True`` the float64
reference checks only the windows of :mod:`lrbench.accuracy.parts` (corners, edges, interior,
every channel block) of a case too large for it, while the implementation runs the whole case.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lrbench import registry
from lrbench.accuracy import parts
from lrbench.accuracy.limits import VALUES, Limit, reduction_length, term_size
from lrbench.inputs import Inputs, Shape, make_inputs, to_layout
from lrbench.op import local_relation


@dataclass
class CheckResult:
    """Per value (``y`` and the four gradients): the worst absolute error, the limit it was held
    to, and the worst error over that limit (at most 1 where the value passes)."""

    impl: str
    dtype: torch.dtype
    label: str = ""
    max_abs_err: dict[str, float] = field(default_factory=dict)
    over_limit: dict[str, float] = field(default_factory=dict)
    limits: dict[str, Limit] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    unchecked: str = ""  # why the gradients were not compared (the implementation has no backward)
    oracle: str = ""  # what the values were compared with

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> float:
        return max(self.max_abs_err.values(), default=float("nan"))

    @property
    def worst_value(self) -> str:
        """The value closest to (or furthest past) its limit; "" when nothing was compared."""
        return max(self.over_limit, key=self.over_limit.get, default="")

    @property
    def err_over_limit(self) -> float:
        """Worst ``|err| / (atol + rtol*|ref|)`` over every element compared (<= 1: in the limit)."""
        return self.over_limit.get(self.worst_value, float("nan"))

    @property
    def limit_source(self) -> str:
        """"implementation" if any value was held to a declared loosening, else "suite"."""
        sources = {limit.source for limit in self.limits.values()}
        return "implementation" if "implementation" in sources else ("suite" if sources else "")


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


def _oracle_values(inputs: Inputs, *, oracle: str, device: str, phi: str, grad_out, backward):
    """The oracle's output and gradients (float64, on the CPU) on ``inputs``."""
    shape = inputs.shape
    kwargs = dict(kernel_size=shape.k, stride=shape.stride, phi=phi)
    exact = inputs.map(lambda t: t.to(device))
    if backward:
        out = run_with_grads(exact, impl=oracle, grad_out=grad_out.to(device), **kwargs)
    else:
        with torch.no_grad():
            out = {"y": local_relation(*exact, impl=oracle, **kwargs)}
    return {n: t.cpu() for n, t in out.items()}


def _oracle_on_parts(inputs: Inputs, *, oracle: str, device: str, phi: str, grad_out, backward):
    """The oracle on each window's crop, gathered into full-size tensors: the output where the
    windows are (NaN elsewhere: not compared), the gradients summed over the crops."""
    shape = inputs.shape
    y = torch.full((shape.B, shape.C, shape.Ho, shape.Wo), float("nan"), dtype=torch.float64)
    grads = {name: torch.zeros_like(t, dtype=torch.float64) for name, t in inputs.items()}
    items = parts.batch_items(shape)
    for window in parts.windows(shape):
        piece = parts.crop(inputs, window)
        rows, cols = slice(*piece.out_rows), slice(*piece.out_cols)
        # the window's outputs inside the crop's output; only they send a gradient back (the
        # crop's other outputs are another window's, or lack part of their neighbourhood)
        wr = slice(window.rows[0] - piece.out_rows[0], window.rows[1] - piece.out_rows[0])
        wc = slice(window.cols[0] - piece.out_cols[0], window.cols[1] - piece.out_cols[0])
        crop_grad = torch.zeros_like(grad_out[items, :, rows, cols])
        crop_grad[:, :, wr, wc] = grad_out[items, :, rows, cols][:, :, wr, wc]
        got = _oracle_values(piece.inputs, oracle=oracle, device=device, phi=phi,
                             grad_out=crop_grad, backward=backward)
        for i, b in enumerate(items):
            y[b, :, slice(*window.rows), slice(*window.cols)] = got["y"][i, :, wr, wc]
            if backward:
                grads["x"][b, :, slice(*piece.rows), slice(*piece.cols)] += got["x"][i]
                grads["key"][b, :, slice(*piece.rows), slice(*piece.cols)] += got["key"][i]
                grads["query"][b, :, rows, cols] += got["query"][i]
        if backward:
            grads["prior"] += got["prior"]
    return {"y": y, **grads} if backward else {"y": y}


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
    part: bool = False,
) -> CheckResult:
    """Run ``impl`` in ``dtype`` and ``oracle`` in float64 on the same fresh inputs and compare.

    The inputs are made in ``dtype`` and given to the oracle exactly (as float64), so every
    difference is the implementation's own error; each value is held to
    ``implementation.limit(dtype, value, n)`` (:mod:`lrbench.accuracy.limits`).

    ``oracle`` must be another implementation than ``impl`` (the reference may check itself in a
    lower precision: it is the specification). ``part``: the oracle checks the windows of
    :mod:`lrbench.accuracy.parts` only (for shapes too large for it); ``impl`` runs the whole
    case, with its incoming gradient zero outside the windows.
    ``layout`` ("contiguous", "channels_last", "noncontiguous") applies to ``impl``'s inputs and
    incoming gradient only.
    The oracle runs on ``device`` too when it supports it there in float64 (a GPU's float64
    is still float64, and it keeps the gate of a large CUDA case from waiting on the CPU).
    Where ``impl`` refuses the backward pass of this call (a registry reason), only the output is
    compared and ``unchecked`` says why.
    """
    if oracle == impl and impl != "reference":
        raise ValueError(f"oracle: {impl!r} cannot be its own oracle; use 'reference' (float64, "
                         "with part=True on large shapes) or another implementation")
    spec = shape.spec(phi=phi, dtype=dtype, device=device)
    implementation = registry.get(impl)
    no_backward = (implementation.why_not(spec, backward=True)
                   if backward and not implementation.why_not(spec) else [])
    backward = backward and not no_backward
    # The oracle gets exactly what the implementation gets: the inputs and the incoming gradient
    # rounded to ``dtype`` (then held in float64), so the error is the implementation's own
    # rounding, not the inputs' (which flips absdiff's sign(q - k) near q = k, for one).
    inputs = make_inputs(shape, dtype=dtype, seed=seed).map(lambda t: t.double())
    gen = torch.Generator().manual_seed(seed + 1)
    grad_out = torch.randn((shape.B, shape.C, shape.Ho, shape.Wo), generator=gen,
                           dtype=torch.float64).to(dtype).double()
    pixels = shape.B * shape.Ho * shape.Wo  # output pixels whose gradient flows back
    if part:
        grad_out = grad_out * parts.grad_mask(shape)
        pixels = len(parts.batch_items(shape)) * parts.covered_pixels(shape)
    kwargs = dict(kernel_size=shape.k, stride=shape.stride, phi=phi)
    cast = inputs.map(lambda t: to_layout(t.to(device, dtype), layout))
    result = CheckResult(impl=impl, dtype=dtype, label=f"{shape.label()} {phi}",
                         unchecked="; ".join(no_backward),
                         oracle=f"{oracle} float64" + (" on corners, edges, interior" if part else ""))
    oracle_device = device if not registry.get(oracle).why_not(
        shape.spec(phi=phi, dtype=torch.float64, device=device)) else "cpu"
    run_oracle = _oracle_on_parts if part else _oracle_values
    expected = run_oracle(inputs, oracle=oracle, device=oracle_device, phi=phi,
                          grad_out=grad_out, backward=backward)
    try:
        if backward:
            got = run_with_grads(cast, impl=impl, grad_out=to_layout(grad_out.to(device), layout),
                                 **kwargs)
        else:
            with torch.no_grad():
                got = {"y": _checked_output(local_relation(*cast, impl=impl, **kwargs),
                                            grad_out.shape)}
    except BadOutput as err:
        result.failures.append(str(err))
        return result
    for name in VALUES:
        if name in expected:
            n = reduction_length(name, k=shape.k, m=shape.m, pixels=pixels)
            limit = implementation.limit(dtype, name, n, term_size(name, m=shape.m))
            compare_value(result, name, got[name].double().cpu(), expected[name], limit)
    return result


def compare_value(result: CheckResult, name: str, value: torch.Tensor, ref: torch.Tensor,
             limit: Limit) -> None:
    """Record ``name``'s worst error and error over ``limit``; a failure if it exceeds it.
    Elements where ``ref`` is NaN are not compared (outside the checked windows)."""
    checked = ~torch.isnan(ref)
    value, ref = value[checked], ref[checked]
    err = (value - ref).abs()
    result.limits[name] = limit
    result.max_abs_err[name] = err.max().item() if err.numel() else 0.0
    finite = bool(torch.isfinite(value).all())
    ratio = (err / limit.bound(ref)).max().item() if err.numel() else 0.0
    result.over_limit[name] = ratio if finite else float("inf")
    if not finite or ratio > 1:
        result.failures.append(
            f"{name}: max abs err {result.max_abs_err[name]:.3g}, {result.over_limit[name]:.3g}x "
            f"its limit (atol {limit.atol:.3g} + rtol {limit.rtol:.3g}*|ref|, {limit.source})")
