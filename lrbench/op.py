"""The public entry point of the local relation op (SPEC.md section 1).

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
"""

from __future__ import annotations

import torch

from lrbench import registry
from lrbench.spec import OpSpec, validate


class _EmptyBatch(torch.autograd.Function):
    """``B = 0``: the empty ``(0, C, Ho, Wo)`` output, and zero gradients of each input's shape
    (the prior's is a real ``(G, k, k)`` zero: a sum over no samples), as torch's own layers do
    for an empty batch (a data loader's last batch can be empty after filtering)."""

    @staticmethod
    def forward(ctx, x, query, key, prior, Ho: int, Wo: int):
        B, C, H, W = x.shape  # B == 0
        ctx.shapes = [(t.shape, t.dtype, t.device) for t in (x, query, key, prior)]
        return x.new_empty((B, C, Ho, Wo))

    @staticmethod
    def backward(ctx, grad_y):
        grads = [torch.zeros(shape, dtype=dtype, device=device) for shape, dtype, device in ctx.shapes]
        return (*grads, None, None)


def _empty_batch(x, query, key, prior, spec: OpSpec) -> torch.Tensor:
    return _EmptyBatch.apply(x, query, key, prior, spec.Ho, spec.Wo)


def local_relation(
    x: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    prior: torch.Tensor,
    *,
    kernel_size: int,
    stride: int = 1,
    phi: str = "sqdiff",
    impl: str | None = None,
) -> torch.Tensor:
    """Aggregate ``x`` over k x k neighbourhoods with weights from keys, queries and a prior.

    For each batch ``b``, group ``g`` and output pixel ``p'`` centred on input pixel
    ``p' * stride``, the weights are ``softmax_p(phi(query[b,g,p'], key[b,g,p]) + prior[g, p-p'])``
    over the in-image neighbours ``p`` (out-of-image neighbours are excluded, not zero-padded),
    and ``y[b, c, p'] = sum_p w[b, c // m, p', p] * x[b, c, p]`` with ``m = ceil(C / G)``.

    Args:
        x: values, ``(B, C, H, W)``.
        query: one scalar per group and output pixel, ``(B, G, Ho, Wo)``.
        key: one scalar per group and input pixel, ``(B, G, H, W)``.
        prior: geometric prior logits, ``(G, k, k)``.
        kernel_size: odd ``k >= 1``.
        stride: ``>= 1``; ``Ho = (H - 1) // stride + 1``.
        phi: ``"sqdiff"`` (``-(q-k)^2``), ``"absdiff"`` (``-|q-k|``) or ``"mult"`` (``q*k``).
        impl: implementation name (see :func:`lrbench.implementations`), or ``None`` for the
            fastest one that can run these inputs.

    Returns:
        ``(B, C, Ho, Wo)``, same dtype and device as ``x``; for ``B = 0`` an empty output (and
        zero gradients), whichever implementation is named, without calling it.
    """
    spec = validate(x, query, key, prior, kernel_size, stride, phi)
    backward = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, query, key, prior))
    # B = 0 too: an unknown name or an unusable implementation still fails
    implementation = registry.resolve(impl, spec, backward=backward)
    if spec.B == 0:
        return _empty_batch(x, query, key, prior, spec)
    return implementation.fn(x, query, key, prior, kernel_size, stride, phi)
