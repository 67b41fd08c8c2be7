"""Tolerances per pass: the output against the forward tolerance, gradients against the backward one."""

from __future__ import annotations

import pytest
import torch

from lrbench import Implementation, registry
from lrbench.bench.matrix.cases import Case
from lrbench.bench.measure.gate import Gate
from lrbench.check import check_against_reference
from lrbench.inputs import Shape
from lrbench.op import local_relation

SHAPE = Shape(B=1, C=4, H=5, W=5, k=3, m=2)
FORWARD = {torch.float32: (1e-5, 1e-5)}
BACKWARD = {torch.float32: (1e-2, 1e-2)}


class _ShiftGrad(torch.autograd.Function):
    """Identity forward; adds ``shift`` to the incoming gradient (a wrong backward on purpose)."""

    @staticmethod
    def forward(ctx, x, shift):
        ctx.shift = shift
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad + ctx.shift, None


def grad_off_by(shift: float, name: str, grad_tolerances=BACKWARD) -> Implementation:
    def fn(x, query, key, prior, kernel_size, stride, phi):
        return local_relation(_ShiftGrad.apply(x, shift), query, key, prior,
                              kernel_size=kernel_size, stride=stride, phi=phi, impl="reference")

    return Implementation(name=name, fn=fn, summary="reference with grad_x off by a constant",
                          devices=("cpu",), dtypes=(torch.float32,), tolerances=FORWARD,
                          grad_tolerances=grad_tolerances)


def test_backward_tolerance_defaults_to_the_forward_one():
    impl = grad_off_by(0.0, "t", grad_tolerances=None)
    assert impl.grad_tolerance(torch.float32) == impl.tolerance(torch.float32) == (1e-5, 1e-5)
    partial = grad_off_by(0.0, "t", grad_tolerances={torch.float16: (1.0, 1.0)})
    assert partial.grad_tolerance(torch.float32) == (1e-5, 1e-5)  # dtype not listed
    assert partial.grad_tolerance(torch.float16) == (1.0, 1.0)


def test_a_gradient_beyond_the_forward_but_within_the_backward_tolerance_passes():
    # 1e-3 on every grad_x element: 100x the forward atol, a tenth of the backward one.
    with registry.registered(grad_off_by(1e-3, "grad_off_a_little")):
        result = check_against_reference("grad_off_a_little", SHAPE, seed=1)
    assert result.ok, result.failures
    assert 1e-5 < result.max_abs_err["x"] < 1e-2
    assert result.max_abs_err["y"] < 1e-5


def test_a_gradient_beyond_the_backward_tolerance_fails_and_names_the_gradient():
    with registry.registered(grad_off_by(0.5, "grad_off_a_lot")):
        result = check_against_reference("grad_off_a_lot", SHAPE, seed=1)
    assert not result.ok
    assert [f.split(":")[0] for f in result.failures] == ["x"]
    assert "atol 0.01" in result.failures[0]


def test_the_bench_gate_uses_both_tolerances():
    case = {"target": "op", "B": SHAPE.B, "C": SHAPE.C, "H": SHAPE.H, "W": SHAPE.W, "k": SHAPE.k,
            "m": SHAPE.m, "stride": 1, "dtype": "float32", "device": "cpu", "pass_": "fwd_bwd"}
    with registry.registered(grad_off_by(1e-3, "small_off"), grad_off_by(0.5, "large_off")):
        assert Gate()(Case(impl="small_off", **case)).ok
        verdict = Gate()(Case(impl="large_off", **case))
    assert not verdict.ok and verdict.reason.startswith("x:")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_fused_triton_gradients_are_looser_than_its_output_in_half_precision(dtype):
    impl = registry.get("fused_triton")
    (atol, rtol), (gatol, grtol) = impl.tolerance(dtype), impl.grad_tolerance(dtype)
    assert gatol >= atol and grtol >= rtol and (gatol, grtol) != (atol, rtol)
    assert impl.grad_tolerance(torch.float32) == impl.tolerance(torch.float32)
