"""The counting conventions: which traced aten op contributes which multiply-adds, and why.

Unit: one multiply-add (MAC) = 1, fvcore's convention ("one fused multiply-add as one flop").
Hu et al., "Local Relation Networks for Image Recognition", arXiv:1904.11491 (the counted layer).

Every implementation of the op emits different aten ops for the same arithmetic; these rules are
chosen so that each one's traced graph maps onto the closed-form terms of SPEC section 4 exactly:

- composability, one MAC per logit: the one multiplicative/non-linear op of phi (``square`` or
  ``pow`` for sqdiff, ``abs`` for absdiff, ``mul`` for mult) counts one per output element; the
  subtraction ``q - k``, the sign flip and the ``+ prior`` are the additive half of that
  multiply-add and count zero (fvcore likewise counts a conv's multiply and its add as one).
- softmax, one MAC per logit: ``softmax`` counts one per element (the exponential; the sum and
  the division are its accumulate and normalise).
- aggregation, one MAC per channel and neighbour: a broadcast ``mul`` counts one per output
  element and the ``sum`` that follows counts zero (it is the add of those multiply-adds); a
  matrix product counts ``numel(out) * K`` for contraction length ``K``.
- convolutions and linear layers: ``numel(out) * C_in/groups * prod(kernel)``; biases zero.
- the fused custom ops (``lrbench::fused_*``): the op's closed form, :func:`op_macs`.
- elementwise arithmetic whose result is not floating point (index and shape arithmetic on
  integer or boolean tensors, traced scalars) counts zero.

Batch norm, ReLU, pooling and the residual add count zero in the main count (the paper's and
fvcore's usual "conv + fc" convention; batch norm folds into the preceding conv at inference);
:mod:`lrbench.complexity.gaps` counts them separately as variants.
"""

from __future__ import annotations

# Ops counted one MAC per element of their floating-point output.
PER_OUTPUT_ELEMENT: dict[str, str] = {
    "aten::mul": "a product: composability of phi='mult', or the aggregation's multiply",
    "aten::mul_": "in-place product, as aten::mul",
    "aten::square": "phi='sqdiff': (q - k)^2, one multiply per logit",
    "aten::pow": "phi='sqdiff' when square is traced as pow(., 2)",
    "aten::abs": "phi='absdiff': |q - k|, phi's one non-linear op per logit",
    "aten::softmax": "the softmax term: one exponential per logit",
    "aten::_softmax": "as aten::softmax",
}

# Ops that count zero, each with the reason.
ZERO_COST: dict[str, str] = {
    # additive halves of multiply-adds counted elsewhere
    "aten::add": "additive half of a counted multiply-add (+ prior); scalars: shape arithmetic",
    "aten::add_": "in-place add: the residual connection, zero in the conv+fc convention",
    "aten::sub": "q - k: additive half of phi's multiply-add; scalars: shape arithmetic",
    "aten::rsub": "as aten::sub",
    "aten::neg": "sign flip of phi ('sqdiff', 'absdiff'), folded into its multiply-add",
    "aten::sum": "accumulation: the adds of the aggregation's multiply-adds",
    # layers outside the conv + fc convention (counted as variants in gaps.py)
    "aten::batch_norm": "folds into the preceding conv at inference; variant in gaps.py",
    "aten::relu": "a comparison, not a multiply-add; variant in gaps.py",
    "aten::relu_": "as aten::relu",
    "aten::max_pool2d": "comparisons, not multiply-adds; variant in gaps.py",
    "aten::adaptive_avg_pool2d": "additions only (one divide per channel); variant in gaps.py",
    # data movement and layout
    "aten::im2col": "F.unfold: copies neighbourhoods, no arithmetic",
    "aten::pad": "zero padding of borders: data movement",
    "aten::constant_pad_nd": "as aten::pad",
    "aten::index": "gather by precomputed indices (im2col, channel-to-group map)",
    "aten::stack": "concatenation of per-offset results",
    "aten::cat": "concatenation of channel blocks",
    "aten::slice": "view",
    "aten::select": "view",
    "aten::view": "view",
    "aten::reshape": "view or copy, no arithmetic",
    "aten::flatten": "view",
    "aten::permute": "view",
    "aten::transpose": "view",
    "aten::expand": "view",
    "aten::squeeze": "view",
    "aten::unsqueeze": "view",
    "aten::contiguous": "copy",
    "aten::to": "dtype cast",
    "aten::detach": "autograd bookkeeping",
    "aten::masked_fill": "sets out-of-image logits to -inf: a selection, no arithmetic",
    # masks, index and shape arithmetic (integer or boolean results)
    "aten::size": "shape query",
    "aten::Int": "scalar conversion",
    "aten::ScalarImplicit": "scalar conversion",
    "aten::floor_divide": "integer index arithmetic (channel c uses map c // m)",
    "aten::arange": "index construction",
    "aten::new_ones": "mask construction",
    "aten::new_zeros": "buffer construction",
    "aten::ones": "mask construction",
    "aten::zeros": "buffer construction",
    "aten::gt": "boolean mask",
    "aten::ge": "boolean mask",
    "aten::lt": "boolean mask",
    "aten::__and__": "boolean mask",
    "aten::bitwise_not": "boolean mask",
}

# Ops with their own shape-based handle (see fvcore_count.py).
MATRIX_OPS: dict[str, str] = {
    "aten::_convolution": "numel(out) * C_in/groups * prod(kernel); bias not counted",
    "aten::linear": "numel(out) * in_features; bias not counted",
    "aten::addmm": "numel(out) * K; the added matrix not counted",
    "aten::mm": "numel(out) * K",
    "aten::bmm": "numel(out) * K",
    "aten::matmul": "numel(out) * K (batch dimensions broadcast)",
    "aten::einsum": "product of the sizes of all indices (exact integer; fvcore's rounds)",
}
