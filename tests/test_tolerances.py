"""The gate's limits are the suite's: per dtype from eps and reduction length, loosened only with a
reason and at most 4x, recorded on every gated row; a 1%-wrong implementation is refused."""

from __future__ import annotations

import math

import pytest
import torch

from lrbench import Implementation, Loosening, registry
from lrbench.accuracy import limits
from lrbench.bench.matrix.cases import Case
from lrbench.bench.measure.gate import Gate
from lrbench.check import check_against_reference
from lrbench.inputs import Shape
from lrbench.op import local_relation

SHAPE = Shape(B=1, C=4, H=5, W=5, k=3, m=2)


class _ShiftGrad(torch.autograd.Function):
    """Identity forward; adds ``shift`` to the incoming gradient (a wrong backward on purpose)."""

    @staticmethod
    def forward(ctx, x, shift):
        ctx.shift = shift
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad + ctx.shift, None


def _reference(x, query, key, prior, kernel_size, stride, phi):
    return local_relation(x, query, key, prior, kernel_size=kernel_size, stride=stride, phi=phi,
                          impl="reference")


def scaled(factor: float, name: str, **declared) -> Implementation:
    """The reference with its output multiplied by ``factor`` (1.01: one percent wrong)."""
    def fn(*args):
        return _reference(*args) * factor

    return Implementation(name=name, fn=fn, summary="scaled reference", devices=("cpu",),
                          dtypes=(torch.float32,), **declared)


def grad_off_by(shift: float, name: str, **declared) -> Implementation:
    def fn(x, *rest):
        return _reference(_ShiftGrad.apply(x, shift), *rest)

    return Implementation(name=name, fn=fn, summary="reference with grad_x off by a constant",
                          devices=("cpu",), dtypes=(torch.float32,), **declared)


def test_a_one_percent_wrong_plugin_with_loose_declared_tolerances_is_refused():
    with pytest.raises(ValueError, match=r"'one_pct'.*float32.*4x"):
        registry.register(scaled(1.01, "one_pct", tolerances={torch.float32: (1.0, 1.0)},
                                 grad_tolerances={torch.float32: (1.0, 1.0)}))
    assert "one_pct" not in registry.implementations()


def test_a_one_percent_wrong_plugin_fails_the_gate_even_loosened_to_the_ceiling():
    loose = {torch.float32: Loosening("test", forward=limits.CEILING, backward=limits.CEILING)}
    with registry.registered(scaled(1.01, "one_pct_loose", loosened=loose)):
        result = check_against_reference("one_pct_loose", SHAPE, seed=1)
    assert not result.ok and result.failures[0].startswith("y:")
    assert result.limit_source == "implementation" and result.err_over_limit > 1


@pytest.mark.parametrize("declared, match", [
    (Loosening("slow exp", forward=4.5), r"'too_loose', dtype float32: forward factor 4.5.*4x"),
    (Loosening("", backward=2.0), r"'too_loose', dtype float32: a looser limit needs a stated reason"),
    ((2.0, 2.0), r"'too_loose', dtype float32: expected a Loosening"),
])
def test_register_refuses_loosenings_past_the_ceiling_or_without_a_reason(declared, match):
    with pytest.raises(ValueError, match=match):
        registry.register(scaled(1.0, "too_loose", loosened={torch.float32: declared}))
    assert "too_loose" not in registry.implementations()


def test_limits_grow_with_eps_and_the_square_root_of_the_reduction():
    small, large = limits.suite_limit(torch.float32, 49), limits.suite_limit(torch.float32, 4 * 49)
    assert large.atol == pytest.approx(2 * small.atol) and large.rtol == small.rtol
    half = limits.suite_limit(torch.bfloat16, 49)
    ratio = torch.finfo(torch.bfloat16).eps / torch.finfo(torch.float32).eps
    assert half.atol == pytest.approx(ratio * small.atol) and half.rtol == pytest.approx(ratio * small.rtol)
    # the prior's gradient sums every output pixel: its limit grows with B*Ho*Wo, y's does not
    n = {v: limits.reduction_length(v, k=7, m=8, pixels=8 * 56 * 56) for v in limits.VALUES}
    assert n == {"y": 49, "x": 49, "query": 784, "key": 784, "prior": 2 * 8 * 56 * 56 * 8}
    assert limits.suite_limit(torch.bfloat16, n["prior"]).atol == pytest.approx(
        limits.ATOL_SCALE * 2**-7 * math.sqrt(n["prior"]))


def test_a_dtype_without_a_declaration_gets_the_suites_limit_and_one_with_gets_its_factor():
    impl = scaled(1.0, "t", loosened={torch.float16: Loosening("fp16 accumulation", backward=3)})
    suite = limits.suite_limit(torch.float32, 9)
    assert impl.limit(torch.float32, "x", 9) == suite  # float32 not declared
    assert impl.limit(torch.float16, "y", 9) == limits.suite_limit(torch.float16, 9)  # forward 1x
    loose = impl.limit(torch.float16, "x", 9)
    base = limits.suite_limit(torch.float16, 9)
    assert (loose.atol, loose.rtol, loose.source) == (3 * base.atol, 3 * base.rtol, "implementation")


def test_a_wrong_gradient_fails_and_names_the_gradient_and_its_limit():
    with registry.registered(grad_off_by(0.5, "grad_off_a_lot")):
        result = check_against_reference("grad_off_a_lot", SHAPE, seed=1)
    assert [f.split(":")[0] for f in result.failures] == ["x"]
    assert result.worst_value == "x" and result.err_over_limit > 1
    assert result.over_limit["y"] <= 1
    limit = result.limits["x"]
    assert f"atol {limit.atol:.3g}" in result.failures[0]


def test_gated_rows_record_their_limit():
    case = {"target": "op", "B": SHAPE.B, "C": SHAPE.C, "H": SHAPE.H, "W": SHAPE.W, "k": SHAPE.k,
            "m": SHAPE.m, "stride": 1, "dtype": "float32", "device": "cpu", "pass_": "fwd_bwd"}
    with registry.registered(grad_off_by(0.0, "exact"), grad_off_by(0.5, "large_off")):
        good = Gate()(Case(impl="exact", **case))
        bad = Gate()(Case(impl="large_off", **case))
    assert good.ok and 0 <= good.err_over_limit <= 1 and good.limit_source == "suite"
    assert not bad.ok and bad.err_over_limit > 1 and bad.reason.startswith("x:")
    n = limits.reduction_length("x", k=SHAPE.k, m=SHAPE.m, pixels=SHAPE.Ho * SHAPE.Wo)
    assert (bad.atol, bad.rtol) == (limits.suite_limit(torch.float32, n).atol,
                                    limits.suite_limit(torch.float32, n).rtol)
    assert set(bad.row()) >= {"atol", "rtol", "limit_source", "err_over_limit", "max_abs_err"}


def test_an_implementation_is_never_its_own_oracle():
    with pytest.raises(ValueError, match="own oracle"):
        check_against_reference("unfold", SHAPE, oracle="unfold")


def test_gradients_through_a_logit_are_held_to_terms_of_size_sqrt_m():
    assert limits.term_size("y", m=16) == limits.term_size("x", m=16) == 1.0
    for value in ("query", "key", "prior"):
        assert limits.term_size(value, m=16) == 4.0
    base = limits.suite_limit(torch.float32, 9 * 24)
    sized = limits.suite_limit(torch.float32, 9 * 24, limits.term_size("query", m=24))
    assert sized.atol == pytest.approx(base.atol * 24**0.5) and sized.rtol == base.rtol
    with pytest.raises(ValueError, match="value"):
        limits.term_size("z", m=4)
