"""Cross-check with ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs = 2 x MACs).

``FlopCounterMode`` counts only matrix-type ops (convolutions, ``mm``/``addmm``/``bmm``, attention)
plus the custom ops that register a formula (the fused kernels register ``2 * op_macs``). So it
sees an LR layer's key/query projections, final 1x1, prior network, the aggregation when it is a
matrix product (``im2col_matmul``) and the whole op when it is a fused custom op; it does not see
composability, softmax, or an aggregation done by broadcast multiply and sum (``reference``,
``unfold``). The check compares it with 2 x fvcore's count of exactly the ops it sees.

The forward runs on fake tensors (``FakeTensorMode``, what ``torch.compile`` traces with): shapes
and dispatch only, no arithmetic, so the cross-check costs a fraction of a real forward. An op
without a fake kernel makes it fall back to a real forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from lrbench.complexity.conventions import MATRIX_OPS
from lrbench.complexity.fvcore_count import FvcoreCount, custom_op_names


def short_name(op: str) -> str:
    """``"aten::_convolution"`` -> ``"_convolution"``, as fvcore's ``by_operator`` names ops."""
    return op.split("::", 1)[-1]


def seen_by_flop_counter() -> list[str]:
    """fvcore operator names whose work ``FlopCounterMode`` also counts."""
    return sorted({short_name(op) for op in (*MATRIX_OPS, *custom_op_names())})


@dataclass
class FlopCounterCheck:
    """``FlopCounterMode``'s total FLOPs beside 2 x fvcore's MACs of the ops it sees."""

    flops: int
    by_op: dict[str, int]
    expected_flops: int

    @property
    def ok(self) -> bool:
        return self.flops == self.expected_flops


def flop_counter_flops(model: nn.Module, inputs: Sequence[torch.Tensor],
                       fake: bool = True) -> tuple[int, dict]:
    """Total FLOPs and FLOPs per aten op of one forward of ``model(*inputs)``.

    ``fake``: run on fake tensors (no arithmetic); falls back to a real forward if that fails.
    """
    mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else nullcontext()
    try:
        with torch.no_grad(), mode, FlopCounterMode(display=False) as counter:
            model(*inputs)
    except Exception:  # an op without a fake kernel: count a real forward instead
        if not fake:
            raise
        return flop_counter_flops(model, inputs, fake=False)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def cross_check(model: nn.Module, inputs: Sequence[torch.Tensor],
                fv: FvcoreCount) -> FlopCounterCheck:
    """Run ``FlopCounterMode`` and compare with ``2 *`` fvcore's MACs of the ops it sees."""
    flops, by_op = flop_counter_flops(model, inputs)
    seen = set(seen_by_flop_counter())
    expected = 2 * sum(n for op, n in fv.by_operator.items() if op in seen)
    return FlopCounterCheck(flops=flops, by_op=by_op, expected_flops=expected)
