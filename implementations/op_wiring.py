"""What every fused implementation's custom operators share: fake impls, autograd, FLOP formulas.

A fused implementation registers two ``torch.library`` operators, the op
``(x, query, key, prior, kernel_size, stride, phi) -> y`` (or ``-> (y, stats)``) and its backward
``(grad_y, x, query, key, prior, [y | stats,] kernel_size, stride, phi) -> (gx, gquery, gkey,
gprior)``, and hands both to :func:`wire`.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import register_flop_formula

from lrbench.complexity.op_terms import op_macs_from_shapes

SAVES = ("output", "stats")


def wire(forward_op, backward_op, *, saves: str, keeps_memory_format: bool = False) -> None:
    """Give ``forward_op``/``backward_op`` fake impls, autograd and FLOP formulas.

    Args:
        forward_op, backward_op: the custom operators (``torch.library.custom_op`` results).
        saves: what the backward takes after ``prior`` besides the inputs: ``"output"`` ``y``;
            ``"stats"``: the op returns ``(y, stats)``, ``stats`` a non-differentiable
            ``(2, B, G, Ho, Wo)`` tensor of per-pixel softmax statistics.
        keeps_memory_format: whether ``y`` comes in x's memory format (channels_last x gives a
            channels_last y), else ``y`` is contiguous.

    FLOPs: forward ``2 x op_macs`` (:func:`lrbench.complexity.op_macs`: composability, softmax,
    aggregation); backward ``4 x op_macs``, twice the forward, the usual convention for a backward
    pass: the weights recomputed (1 x the logit terms), the softmax backward and the query/key
    gradients (1 x), and two aggregations (``dL/dw`` and ``grad_x``, 2 x the aggregation term).
    """

    if saves not in SAVES:
        raise ValueError(f"saves must be one of {SAVES}, got {saves!r}")

    def x_format(x):
        channels_last = (keeps_memory_format and not x.is_contiguous()
                         and x.is_contiguous(memory_format=torch.channels_last))
        return torch.channels_last if channels_last else torch.contiguous_format

    @forward_op.register_fake
    def _(x, query, key, prior, kernel_size, stride, phi):
        B, C = x.shape[:2]
        G, Ho, Wo = query.shape[-3:]
        y = x.new_empty((B, C, Ho, Wo)).contiguous(memory_format=x_format(x))  # x's format
        return (y, x.new_empty((2, B, G, Ho, Wo))) if saves == "stats" else y

    @backward_op.register_fake
    def _(grad_y, x, query, key, prior, *rest):
        # grad_x in the format y has; the small gradients contiguous, whatever their inputs' strides
        return (x.new_empty(x.shape).contiguous(memory_format=x_format(x)),
                query.new_empty(query.shape), key.new_empty(key.shape), prior.new_empty(prior.shape))

    def setup_context(ctx, inputs, output):
        x, query, key, prior, kernel_size, stride, phi = inputs
        extra = (output,) if saves == "output" else output[1:]
        if saves == "stats":
            ctx.mark_non_differentiable(output[1])
        # The stats get no gradient: autograd's default would fill a (2, B, G, Ho, Wo) tensor of
        # zeros for it at every backward (6.4 MB at LR-Net-50's stem, batch 8).
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, query, key, prior, *extra)
        ctx.args = (kernel_size, stride, phi)

    def backward(ctx, grad_y, *grad_stats):  # grad_stats: none, or None for the stats
        if grad_y is None:  # not materialized: gradcheck hands None (tests/test_fused_cpu.py)
            return (None,) * 7
        grads = backward_op(grad_y, *ctx.saved_tensors, *ctx.args)
        return (*grads, None, None, None)

    forward_op.register_autograd(backward, setup_context=setup_context)

    # FLOP formulas receive the tensors' shapes; k is the last dimension of prior (G, k, k).
    @register_flop_formula(_packet(forward_op))
    def forward_flops(x_shape, query_shape, key_shape, prior_shape, *args, **kwargs) -> int:
        return 2 * op_macs_from_shapes(x_shape, query_shape, key_shape, prior_shape[-1])

    @register_flop_formula(_packet(backward_op))
    def backward_flops(grad_y_shape, x_shape, query_shape, key_shape, prior_shape, *args,
                       **kwargs) -> int:
        return 4 * op_macs_from_shapes(x_shape, query_shape, key_shape, prior_shape[-1])


def _packet(op):
    """``torch.ops.<namespace>.<name>`` of a ``torch.library.custom_op`` result."""
    namespace, name = op._qualname.split("::")
    return getattr(getattr(torch.ops, namespace), name)
