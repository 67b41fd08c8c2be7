"""The key and query projections of ``LocalRelation2d``'s fast path, with a backward by GEMMs.

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491:
``key = W_k x`` over every input pixel and ``query = W_q x`` over every ``stride``-th one, two
1x1 convolutions ``C -> G`` (SPEC.md section 3, step 1).

Why not autograd's convolution backward: ``G`` is small (``C / 8``) and ``x`` large (the stem's
is ``8 x 64 x 224 x 224``), so both passes are memory-bound, and the conv backward spent its time
around the arithmetic: single-threaded 1x1 convolutions of a batch under 16 take ATen's slow
(im2col) path, whose backward zero-fills ``grad_x``; the op's ``(B, G, ., .)`` NCHW gradients
meet a channels_last ``x``; and the strided query of an NCHW ``x`` (a 1x1 conv of
``x[:, :, ::s, ::s]``) went back through two slice backwards, each a zero-filled ``x``-sized
tensor, and one more ``x``-sized addition. Here the backward writes ``grad_x`` once, in ``x``'s
memory format, by one batched product with the gradients (``x``'s pixel matrix ``(B, C, H*W)`` is
a view in either format), adds the strided query's part into its ``::s`` view, and sums the
weights' gradients inside matrix products (one ``mm`` over ``B*H*W`` pixels for channels_last,
one ``addmm`` per image for NCHW). The forward is the convolutions as before (what counters see
is unchanged; FLOP totals of the backward too: the products do the convolutions' multiply-adds),
its outputs in the same layouts as before (the op makes them contiguous where its kernels need it,
and the benchmark's floor, whose stand-in op reads neither, pays no copy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _channels_last(x: Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _pixels(x: Tensor) -> Tensor:
    """``(B, C, H*W)`` view of a contiguous or channels_last ``(B, C, H, W)`` tensor (no copy)."""
    return x.flatten(2)  # (B, C, P): strides (C*P, P, 1) or (P*C, 1, C)


def _input_grad(weight: Tensor, grad: Tensor, channels_last: bool) -> Tensor:
    """``weight^T grad`` per pixel: ``(B, C, h, w)`` from ``weight`` ``(n, C)`` and ``grad``
    ``(B, n, h, w)`` contiguous, in the memory format asked for, written once (one ``bmm``, whose
    output is that layout: ``matmul`` would fold the batch into one ``mm`` and transpose after)."""
    B, n, h, w = grad.shape
    C = weight.shape[1]
    g = grad.view(B, n, h * w)  # (B, n, P)
    if channels_last:
        out = torch.bmm(g.transpose(1, 2), weight.expand(B, n, C))  # (B, P, C) contiguous
        return out.view(B, h, w, C).permute(0, 3, 1, 2)  # (B, C, h, w), channels_last
    return torch.bmm(weight.t().expand(B, C, n), g).view(B, C, h, w)  # (B, C, h, w)


def _weight_grad(grad: Tensor, x: Tensor, channels_last: bool) -> Tensor:
    """``sum_b grad_b x_b^T``: ``(n, C)`` from ``grad`` ``(B, n, h, w)`` and ``x`` ``(B, C, h, w)``,
    summed inside the products (no ``(B, n, C)`` in between: at res5 it outweighs the work). A
    strided view is copied once, in its own memory format (a transposing copy is slow)."""
    B, n = grad.shape[:2]
    C = x.shape[1]
    x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if channels_last:  # x is a (B*P, C) matrix: one product, after a copy of the small grad
        g = grad.flatten(2).transpose(1, 2).reshape(-1, n)  # (B*P, n)
        return torch.mm(g.t(), x.permute(0, 2, 3, 1).reshape(-1, C))  # (n, C)
    g, xp = grad.flatten(2), x.flatten(2)  # (B, n, P), (B, C, P)
    out = grad.new_zeros(n, C)
    for b in range(B):  # NCHW: batch and pixels do not merge into one matrix dimension
        out = torch.addmm(out, g[b], xp[b].t())  # not addmm_: FlopCounterMode counts addmm only
    return out


class _KeyQuery(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w_key: Tensor, w_query: Tensor, stride: int):
        G = w_key.shape[0]
        if stride == 1:  # one conv for both
            both = F.conv2d(x, torch.cat([w_key, w_query]))  # (B, 2G, H, W)
            key, query = both.split(G, dim=1)  # (B, G, H, W) each, views
        elif _channels_last(x):
            key = F.conv2d(x, w_key)  # (B, G, H, W)
            query = F.conv2d(x, w_query, stride=stride)  # (B, G, Ho, Wo)
        else:  # NCHW: a 1x1 conv of the subsampled input, not a strided conv (oneDNN's is slow)
            key = F.conv2d(x, w_key)
            subsampled = x[:, :, ::stride, ::stride].contiguous()  # (B, C, Ho, Wo), kept
            query = F.conv2d(subsampled, w_query)
        # The NCHW subsampled input is kept for the query's weight gradient (a quarter of x at
        # stride 2), not copied again there; channels_last copies it in the backward.
        ctx.save_for_backward(x, w_key, w_query, *(() if stride == 1 or _channels_last(x)
                                                   else (subsampled,)))
        ctx.stride = stride
        return key, query

    @staticmethod
    def backward(ctx, grad_key: Tensor | None, grad_query: Tensor | None):
        x, w_key, w_query, *subsampled = ctx.saved_tensors
        s = ctx.stride
        G, C = w_key.shape[:2]
        if grad_key is None:
            grad_key = x.new_zeros(x.shape[0], G, *x.shape[2:])
        if grad_query is None:
            grad_query = x.new_zeros(x.shape[0], G, *_strided(x.shape[2:], s))
        grad_key, grad_query = grad_key.contiguous(), grad_query.contiguous()
        channels_last = _channels_last(x)
        if not (x.is_contiguous() or channels_last):
            x = x.contiguous()
        wk, wq = w_key.view(G, C), w_query.view(G, C)
        need_x, need_k, need_q = ctx.needs_input_grad[:3]
        grad_x = grad_wk = grad_wq = None
        if s == 1:  # both gradients as one (B, 2G, H, W): one product for grad_x and the weights
            grads = torch.cat([grad_key, grad_query], dim=1)  # (B, 2G, H, W)
            if need_x:
                grad_x = _input_grad(torch.cat([wk, wq]), grads, channels_last)
            if need_k or need_q:
                grad_wk, grad_wq = _weight_grad(grads, x, channels_last).split(G)  # (G, C) each
        else:
            if need_x:
                grad_x = _input_grad(wk, grad_key, channels_last)  # (B, C, H, W)
                grad_x[:, :, ::s, ::s] += _input_grad(wq, grad_query, channels_last)
            if need_k:
                grad_wk = _weight_grad(grad_key, x, channels_last)
            if need_q:
                # create_graph (grad mode on here): the slice of x, whose graph reaches x
                kept = subsampled and not torch.is_grad_enabled()
                xs = subsampled[0] if kept else x[:, :, ::s, ::s]  # (B, C, Ho, Wo)
                grad_wq = _weight_grad(grad_query, xs, channels_last)
        grad_wk = None if grad_wk is None or not need_k else grad_wk.view_as(w_key)
        grad_wq = None if grad_wq is None or not need_q else grad_wq.view_as(w_query)
        return grad_x, grad_wk, grad_wq, None


def _strided(hw: torch.Size, s: int) -> tuple[int, int]:
    H, W = hw
    return (H - 1) // s + 1, (W - 1) // s + 1


def key_query(x: Tensor, w_key: Tensor, w_query: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """``(key, query)``, ``(B, G, H, W)`` and ``(B, G, Ho, Wo)``: the 1x1 convolutions
    ``w_key`` and ``w_query`` (``(G, C, 1, 1)``, no bias) of ``x`` (``(B, C, H, W)``), the query
    at ``stride``. Same values and gradients as two ``F.conv2d`` calls; see the module docstring.
    """
    return _KeyQuery.apply(x, w_key, w_query, stride)
