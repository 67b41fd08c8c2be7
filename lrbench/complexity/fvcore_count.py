"""Count multiply-adds of a real traced graph with fvcore, using this project's handles only.

Unit: one multiply-add = 1 (fvcore's convention). The rules are those of
:mod:`lrbench.complexity.conventions`; fvcore's own defaults (including its einsum handle, which
rounds through ``numpy.einsum_path``, and its silent ignore list) are replaced, so that any op
without a rule shows up in :attr:`FvcoreCount.unsupported` and is a failure, never a silent zero.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from lrbench import registry
from lrbench.complexity.conventions import MATRIX_OPS, PER_OUTPUT_ELEMENT, ZERO_COST
from lrbench.complexity.op_terms import op_macs

with warnings.catch_warnings():
    # fvcore 0.1.5 calls torch.jit.script at import time, which torch marks as deprecated.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated",
                            category=FutureWarning, module=r"torch\.jit\._script")
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

Handle = Callable[[list, list], int]
FLOAT_TYPES = {"Float", "Double", "Half", "BFloat16"}


def _shape(value) -> list[int]:
    shape = get_shape(value)
    if shape is None:
        raise ValueError(f"fvcore: no complete shape for traced value {value}")
    return list(shape)


def _is_float(value) -> bool:
    return value.isCompleteTensor() and value.type().scalarType() in FLOAT_TYPES


def per_output_element(inputs: list, outputs: list) -> int:
    """One MAC per element of a floating-point output; index arithmetic counts zero."""
    out = outputs[0]
    return math.prod(_shape(out)) if _is_float(out) else 0


def zero_cost(inputs: list, outputs: list) -> int:
    return 0


def conv_handle(inputs: list, outputs: list) -> int:
    """``aten::_convolution(x, w, bias, stride, padding, dilation, transposed, ...)``."""
    x, w = _shape(inputs[0]), _shape(inputs[1])
    if inputs[6].toIValue():  # transposed: every input pixel meets the whole kernel
        return x[0] * math.prod(x[2:]) * math.prod(w)
    return math.prod(_shape(outputs[0])) * math.prod(w[1:])  # w: (C_out, C_in/groups, kh, kw)


def contraction_handle(k_input: int) -> Handle:
    """``numel(out) * K`` where ``K`` is the last dimension of input ``k_input``."""
    def handle(inputs: list, outputs: list) -> int:
        return math.prod(_shape(outputs[0])) * _shape(inputs[k_input])[-1]
    return handle


def einsum_handle(inputs: list, outputs: list) -> int:
    """Exact count of ``aten::einsum(equation, [operands])``: product of all index sizes."""
    equation = inputs[0].toIValue().replace(" ", "").split("->")[0]
    operands = list(inputs[1].node().inputs())
    sizes: dict[str, int] = {}
    for letters, operand in zip(equation.split(","), operands, strict=True):
        sizes.update(zip(letters, _shape(operand), strict=True))
    return math.prod(sizes.values())


def lr_custom_op_handle(inputs: list, outputs: list) -> int:
    """A fused op ``(x, query, key, prior, kernel_size, stride, phi)``: :func:`op_macs`."""
    B, C, _, _ = _shape(inputs[0])
    _, G, Ho, Wo = _shape(inputs[1])
    k = _shape(inputs[3])[-1]
    return op_macs(B, C, G, k, Ho, Wo)


MATRIX_HANDLES: dict[str, Handle] = {
    "aten::_convolution": conv_handle,
    "aten::linear": lambda i, o: math.prod(_shape(o[0])) * _shape(i[1])[-1],
    "aten::addmm": contraction_handle(1),
    "aten::mm": contraction_handle(0),
    "aten::bmm": contraction_handle(0),
    "aten::matmul": contraction_handle(0),
    "aten::einsum": einsum_handle,
}
assert set(MATRIX_HANDLES) == set(MATRIX_OPS)


def custom_op_names() -> list[str]:
    """Every ``torch.library`` op listed in a registered implementation's ``custom_ops``."""
    names = [op for name in registry.implementations() for op in registry.get(name).custom_ops]
    return sorted(set(names))


def handles() -> dict[str, Handle]:
    """The complete handle table: every op this project can count, and nothing else."""
    table: dict[str, Handle] = {op: zero_cost for op in ZERO_COST}
    table.update({op: per_output_element for op in PER_OUTPUT_ELEMENT})
    table.update(MATRIX_HANDLES)
    table.update({op: lr_custom_op_handle for op in custom_op_names()})
    return table


@dataclass
class FvcoreCount:
    """The result of counting one model on one input.

    Attributes:
        total: MACs of the whole model.
        by_module: MACs per submodule name (``""`` is the whole model).
        by_operator: MACs per operator (short names, as fvcore reports them).
        unsupported: ops that had no handle, with how often they occurred (must be empty).
    """

    total: int
    by_module: dict[str, int]
    by_operator: dict[str, int]
    unsupported: dict[str, int] = field(default_factory=dict)


def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> FvcoreCount:
    """Trace ``model(*inputs)`` with fvcore and count it with :func:`handles`.

    Raises nothing for unsupported ops: they are returned in ``unsupported`` for the caller to
    report as a failure.
    """
    analysis = FlopCountAnalysis(model, inputs)
    analysis.clear_op_handles()
    # fvcore keeps a private default set of silently ignored ops (relu, cat, ...); empty it, so
    # that only the explicit ZERO_COST list above is ignored and anything else is unsupported.
    analysis._ignored_ops = set()
    analysis.set_op_handle(**handles())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    # The op's input validation branches on shapes in Python; the trace is per input shape anyway.
    analysis.tracer_warnings("none")
    with torch.no_grad():
        by_module = {name: int(v) for name, v in analysis.by_module().items()}
    return FvcoreCount(
        total=int(analysis.total()),
        by_module=by_module,
        by_operator={op: int(v) for op, v in analysis.by_operator().items()},
        unsupported=dict(analysis.unsupported_ops()),
    )
