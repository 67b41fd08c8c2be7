"""Closed form vs fvcore vs FlopCounterMode, per LR layer and per network (SPEC section 4).

Unit: one multiply-add = 1 MAC; FlopCounterMode reports FLOPs = 2 x MACs.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrbench import LocalRelation2d, registry
from lrbench.complexity import lr_layer_terms, op_macs, secondary_formula
from lrbench.complexity.conventions import MATRIX_OPS, PER_OUTPUT_ELEMENT, ZERO_COST
from lrbench.complexity.fvcore_count import count_macs, custom_op_names, handles
from lrbench.complexity.gaps import VARIANTS, best_variants, gap_rows
from lrbench.complexity.layer_terms import secondary_excess
from lrbench.complexity.network import network_layers, network_macs
from lrbench.complexity.torch_counter import cross_check
from lrbench.inputs import Shape, make_inputs
from lrbench.models import CONFIGS, build
from tests.helpers import OpCall, unfold_trace_macs
from tests.impls import INTERPRETED, runnable_on_cpu

IMPLS = runnable_on_cpu(include_reference=True)
# (C, m): m divides C; C=100, m=8 leaves a last block of 4 channels; m=1; m=C (one map).
CHANNELS = [(16, 4), (100, 8), (6, 1), (12, 12)]
LAYER_CASES = [(k, s, C, m) for k in (3, 5, 7) for s in (1, 2) for C, m in CHANNELS]


def _layer_cases(impl):
    # The Triton interpreter is slow: a light subset that still covers k, stride and C % m (20 % 8:
    # a last block of 4 channels, as 100 % 8, in 3 maps rather than 13).
    if impl in INTERPRETED:
        return [(3, 1, 16, 4), (7, 2, 20, 8)]
    return LAYER_CASES


CASES = [pytest.param(impl, *case, id=f"{impl}-k{case[0]}-s{case[1]}-C{case[2]}-m{case[3]}")
         for impl in IMPLS for case in _layer_cases(impl)]


def test_layer_terms_by_hand():
    C, m, k, H, W, s = 16, 4, 3, 8, 6, 2
    G, Ho, Wo = 4, 4, 3
    terms = lr_layer_terms(C, H, W, k, m, s, B=2)
    assert terms == {
        "key": 2 * C * G * H * W, "query": 2 * C * G * Ho * Wo,
        "composability": 2 * G * k * k * Ho * Wo, "softmax": 2 * G * k * k * Ho * Wo,
        "aggregation": 2 * C * k * k * Ho * Wo, "final": 2 * C * C * Ho * Wo,
        "prior": (2 * G + G * G) * k * k,
    }


@pytest.mark.parametrize("impl,k,stride,C,m", CASES)
def test_fvcore_counts_every_implementation_exactly(impl, k, stride, C, m):
    H, W, B = 11, 10, 2
    layer = LocalRelation2d(C, k, stride=stride, m=m, impl=impl)
    x = torch.randn(B, C, H, W)
    result = count_macs(layer, (x,))
    terms = lr_layer_terms(C, H, W, k, m, stride, B=B)
    assert result.unsupported == {}
    assert result.total == sum(terms.values())
    convs = terms["key"] + terms["query"] + terms["final"] + terms["prior"]
    assert result.by_operator["_convolution"] == convs
    for part in ("key", "query", "final", "prior"):  # each projection module counts its own term
        assert result.by_module[part] == terms[part], part


@pytest.mark.parametrize("phi", ["absdiff", "mult"])
@pytest.mark.parametrize("impl", [i for i in IMPLS if i not in INTERPRETED])
def test_fvcore_counts_every_phi(impl, phi):
    layer = LocalRelation2d(20, 5, stride=2, m=8, phi=phi, impl=impl)
    result = count_macs(layer, (torch.randn(1, 20, 9, 7),))
    assert result.unsupported == {}
    assert result.total == sum(lr_layer_terms(20, 9, 7, 5, 8, 2).values())


@pytest.mark.parametrize("prior", ["direct", "none"])
def test_prior_kinds_count_no_prior_network(prior):
    layer = LocalRelation2d(16, 3, m=4, prior=prior, impl="unfold")
    result = count_macs(layer, (torch.randn(1, 16, 6, 6),))
    terms = lr_layer_terms(16, 6, 6, 3, 4, 1, prior=prior)
    assert terms["prior"] == 0
    assert result.total == sum(terms.values())


@pytest.mark.parametrize("impl", IMPLS)
def test_flop_counter_mode_is_twice_fvcore_on_the_ops_it_sees(impl):
    C, H, W, k, m, s = 20, 9, 8, 3, 8, 2
    layer = LocalRelation2d(C, k, stride=s, m=m, impl=impl)
    x = torch.randn(1, C, H, W)
    check = cross_check(layer, (x,), count_macs(layer, (x,)))
    assert check.ok, check
    terms = lr_layer_terms(C, H, W, k, m, s)
    convs = terms["key"] + terms["query"] + terms["final"] + terms["prior"]
    # What FlopCounterMode can see depends on how the implementation aggregates.
    G, Ho, Wo = math.ceil(C / m), 5, 4
    seen_by_impl = {"im2col_matmul": terms["aggregation"],
                    **{name: op_macs(1, C, G, k, Ho, Wo) for name in ("fused_cpu", "fused_triton",
                                                                   "fused_triton_det")}}
    assert check.flops == 2 * (convs + seen_by_impl.get(impl, 0))


# Implementations that emit a custom op: fvcore cannot see inside it, so the op's count comes from
# the handle's closed form (op_macs). Checked against an independent count: the same call through
# unfold, whose trace fvcore counts op by op (unfold, mul, sub, softmax, sum, ...).
CUSTOM = [i for i in IMPLS if registry.get(i).custom_ops]
OP_SHAPES = [Shape(B=2, C=16, H=7, W=6, k=3, m=4), Shape(B=1, C=20, H=9, W=8, k=5, m=8, stride=2)]


@pytest.mark.parametrize("shape", OP_SHAPES, ids=Shape.label)
@pytest.mark.parametrize("impl", CUSTOM)
def test_a_custom_ops_count_equals_fvcores_count_of_the_unfold_trace(impl, shape):
    inputs = tuple(make_inputs(shape, seed=1).args())
    fused = count_macs(OpCall(impl, shape), inputs)
    unfolded = count_macs(OpCall("unfold", shape), inputs)
    assert fused.unsupported == {} and unfolded.unsupported == {}
    assert len(fused.by_operator) == 1  # the custom op, and nothing else
    assert unfolded.total > 0 and fused.total == unfolded.total


@pytest.mark.parametrize("impl", [i for i in CUSTOM if i not in INTERPRETED])
def test_a_network_of_custom_ops_counts_as_its_unfold_trace(impl):
    x = torch.randn(1, 3, 32, 32)
    torch.manual_seed(0)
    fused = count_macs(build("lrnet26", impl=impl).eval(), (x,))
    torch.manual_seed(0)
    unfolded = count_macs(build("lrnet26", impl="unfold").eval(), (x,))
    assert fused.unsupported == {} and fused.total == unfolded.total
    assert fused.by_module == unfolded.by_module  # every LR layer, every block, the whole
    # the op's share: what the unfold trace spends outside the convolutions and the classifier
    outside = {"_convolution", "linear"}
    assert set(fused.by_operator) == outside | {impl}
    assert fused.by_operator[impl] == sum(v for op, v in unfolded.by_operator.items()
                                          if op not in outside) > 0


def test_unsupported_op_is_reported_not_ignored():
    class Clamped(nn.Module):  # aten::clamp is in fvcore's default ignore list, not in ours
        def forward(self, x):
            return torch.clamp(x, 0, 1)

    result = count_macs(Clamped(), (torch.randn(2, 3),))
    assert result.unsupported == {"aten::clamp": 1}


def test_einsum_is_counted_exactly():
    class Einsum(nn.Module):
        def forward(self, a, b):
            return torch.einsum("bij,bjk->bik", a, b)

    b, i, j, k = 3, 1001, 997, 7
    result = count_macs(Einsum(), (torch.randn(b, i, j), torch.randn(b, j, k)))
    assert result.total == b * i * j * k


def test_custom_ops_of_registered_implementations_get_the_op_closed_form():
    @torch.library.custom_op("lrbench_test::toy_lr", mutates_args=())
    def toy_lr(x: torch.Tensor, query: torch.Tensor, key: torch.Tensor, prior: torch.Tensor,
               kernel_size: int, stride: int, phi: str) -> torch.Tensor:
        return registry.get("reference").fn(x, query, key, prior, kernel_size, stride, phi)

    toy = registry.Implementation(name="toy_custom", fn=torch.ops.lrbench_test.toy_lr,
                                  summary="test", devices=("cpu",), dtypes=(torch.float32,),
                                  custom_ops=("lrbench_test::toy_lr",))
    with registry.registered(toy):
        assert "lrbench_test::toy_lr" in custom_op_names()
        assert "lrbench_test::toy_lr" in handles()

        class Call(nn.Module):
            def forward(self, x, q, k, p):
                return torch.ops.lrbench_test.toy_lr(x, q, k, p, 5, 2, "sqdiff")

        B, C, G, H, W, k = 2, 12, 3, 9, 8, 5
        inputs = (torch.randn(B, C, H, W), torch.randn(B, G, 5, 4), torch.randn(B, G, H, W),
                  torch.randn(G, k, k))
        result = count_macs(Call(), inputs)
        assert result.unsupported == {}
        assert result.total == op_macs(B, C, G, k, 5, 4)
        # and the closed form against fvcore's own count of the same call through unfold
        assert result.total == unfold_trace_macs(Shape(B, C, H, W, k=k, m=C // G, stride=2),
                                                 inputs)


@pytest.mark.parametrize("C,H,W,k,m", [(64, 8, 8, 7, 8), (96, 12, 6, 3, 4), (32, 4, 10, 5, 32)])
def test_secondary_formula_agrees_at_stride_1_and_overcounts_at_stride_2(C, H, W, k, m):
    def terms_without_prior(s):
        t = lr_layer_terms(C, H, W, k, m, s)
        return sum(t.values()) - t["prior"]

    assert secondary_formula(C, H, W, k, m, 1) == terms_without_prior(1)
    excess = secondary_formula(C, H, W, k, m, 2) - terms_without_prior(2)
    assert excess == secondary_excess(C, H, W, k, m, 2) > 0
    # the over-count is the k^2 term: (s^2 - 1) * G * k^2 * Ho * Wo, three times G k^2 Ho Wo
    assert excess == 3 * (C // m) * k * k * (H // 2) * (W // 2)


@pytest.mark.parametrize("name", ["resnet26", "lrnet26"])
def test_network_fvcore_total_equals_the_closed_form_sum(name):
    size = 64
    kwargs = {"impl": "unfold"} if CONFIGS[name].spatial == "lr" else {}
    model = build(name, **kwargs).eval()
    result = count_macs(model, (torch.randn(1, 3, size, size),))
    layers = network_layers(CONFIGS[name], size, size)
    assert result.unsupported == {}
    assert result.total == network_macs(CONFIGS[name], size, size)
    for layer in layers:
        if layer.kind in ("lr", "conv", "fc"):
            assert result.by_module[layer.name] == layer.total, layer.name


def test_resnet50_lands_in_the_usual_range_not_at_the_papers_4_3():
    macs = network_macs(CONFIGS["resnet50"])
    assert 4.08e9 < macs < 4.12e9  # the usual conv+fc count: a few per cent under 4.3G


def test_gap_variants_change_the_count_as_described():
    config = CONFIGS["resnet50"]
    layers = network_layers(config)
    counts = {v.name: v.count(config) for v in VARIANTS}
    base = counts["conv+fc (as specified)"]
    bn = sum(layer.elements for layer in layers if layer.kind == "bn")
    assert counts["+ batch norm"] == base + bn
    assert counts["v1 stride"] < base  # striding before the 3x3 quarters its cost
    assert counts["LR without elementwise terms"] == base  # no LR layer in ResNet
    rows = gap_rows(("resnet50",))
    best = best_variants(rows)["resnet50"]
    assert abs(best["gap %"]) == min(abs(r["gap %"]) for r in rows)
    as_specified = best_variants(rows, architecture_as_specified=True)["resnet50"]
    assert not as_specified["changes architecture"]
    assert abs(as_specified["gap %"]) == min(abs(r["gap %"]) for r in rows
                                             if not r["changes architecture"])


def test_conventions_are_explicit_and_disjoint():
    tables = (PER_OUTPUT_ELEMENT, ZERO_COST, MATRIX_OPS)
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(tables[a]) & set(tables[b])
    assert all(reason.strip() for table in tables for reason in table.values())
