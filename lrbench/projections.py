"""The key and query projections of ``LocalRelation2d``'s fast path, with a backward of its own.

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
weights' gradients by matrix products (one batched product over the images for channels_last,
then a sum of ``B`` small results; one ``addmm`` per image for NCHW). The forward is the
convolutions as before (what counters see is unchanged; FLOP totals of the backward too: the
products do the convolutions' multiply-adds), its outputs in the same layouts as before: views of
one ``(B, 2G, H, W)`` output at stride 1, channels_last where x is. Implementations take them as
they come (fused_cpu reads them through their strides; the others copy where they need to), and
the benchmark's floor, whose stand-in op reads neither, pays no copy.

Where many gradient channels are summed per pixel and ``x`` is small (LR-Net-50's res4 and res5 at
batch 8; :func:`_by_convolution`), the CPU's BLAS can be the slow part instead: the backward then
calls the 1x1 convolutions' own backward (``aten.convolution_backward``, oneDNN), which makes
``grad_x``'s part as a tensor of its own, added into the op's.

:func:`projected_relation` goes one step further for the layer: the projections and the op as one
autograd node, whose backward adds the projections' gradient of ``x`` into the op's in place
(``baddbmm`` with ``out=`` that gradient) instead of making a second ``x``-sized gradient for
autograd to add to the first (where the convolutions' backward runs, its part is such a tensor,
added in place). At the stem of LR-Net-50 (``x`` 103 MB) that second tensor was a fresh allocation
paying its pages' first-touch faults, and the sum read both and wrote one more
(docs/implementations.md has the measurement).
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


# Products per image (or row) where a matrix has this many pixels per gradient row at least
# (_weight_grad), and temporaries of the strided query's input gradient up to this size
# (_add_subsampled).
_PIXELS_PER_ROW = 8
_TEMPORARY_BYTES = 4 << 20
# The convolution library's backward (oneDNN on CPU) where x is at most this size and at least
# this many gradient channels are summed per pixel (see _by_convolution).
_CONV_MAX_BYTES = 32 << 20
_CONV_MIN_CONTRACTED = 64


def _by_convolution(x: Tensor, contracted: int) -> bool:
    """Whether this backward's products go through ``aten.convolution_backward`` (the 1x1
    convolutions' own backward: oneDNN on CPU) rather than BLAS products (``torch.bmm`` and kin:
    MKL on x86): on CPU, outside ``create_graph``, for an ``x`` of at most ``_CONV_MAX_BYTES`` and
    ``contracted`` (the gradient channels summed per pixel: 2G at stride 1, G at a larger stride) of
    at least ``_CONV_MIN_CONTRACTED``.

    Why: on an AMD EPYC (2 threads, float32, 2026-12-07) MKL's GEMM ran at 105-113 GMAC/s and
    oneDNN's at 249-259 (``lrbench machine``). At LR-Net-50's shapes where 100 or more gradient
    channels are summed (res4, res5.0, res5) the whole backward took 0.56-0.93x as long by the
    convolutions' backward, in both memory formats (three runs); where 50 are (res3, res4.0) the
    two came out alike in channels_last and the convolutions' up to 1.2x slower in NCHW; at the
    stem (x 103 MB, 8 channels summed) its weights' gradient alone took 6x as long
    (``scripts/time_projection_grads.py``; docs/implementations.md, "Inside the network").
    Measured on that CPU only."""
    return (x.device.type == "cpu" and not torch.is_grad_enabled()
            and contracted >= _CONV_MIN_CONTRACTED
            and x.numel() * x.element_size() <= _CONV_MAX_BYTES)


def _conv_backward(grad: Tensor, x: Tensor, weight: Tensor, stride: int, mask: list[bool]
                   ) -> tuple[Tensor | None, Tensor | None]:
    """``(grad_x, grad_weight)`` of ``F.conv2d(x, weight, stride=stride)`` (a 1x1 convolution,
    ``weight`` ``(n, C, 1, 1)``) for ``grad`` ``(B, n, h, w)``, those of ``mask`` only."""
    if mask[0]:  # its grad_x comes out in grad's memory format
        grad = grad.contiguous(memory_format=torch.channels_last if _channels_last(x)
                               else torch.contiguous_format)
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [stride, stride], [0, 0], [1, 1], False, [0, 0], 1,
        [mask[0], mask[1], False])
    return grad_x, grad_w


def _weight_grad(grad: Tensor, x: Tensor, channels_last: bool) -> Tensor:
    """``sum_b grad_b x_b^T``: ``(n, C)`` from ``grad`` ``(B, n, h, w)`` and ``x`` ``(B, C, h, w)``.

    channels_last, where the pixels are many next to ``n`` (at least ``_PIXELS_PER_ROW`` times):
    one product per image, ``(n, P) x (P, C)`` (x's pixel matrix a view; grad NCHW as it is), then
    the sum of the ``B`` small ``(n, C)`` results. A strided view of x (the strided query's pixels)
    is read in place the same way, as ``B * h`` row matrices, where its rows merge across images.
    One ``mm`` over all ``B * P`` pixels needs a transposing copy of grad (and of a strided x) and
    splits its long inner dimension poorly; it stays where the pixels are few (res4, res5), as
    there the ``B`` results outweigh the work (docs/implementations.md, "Inside the network").

    NCHW: one ``addmm`` per image (batch and pixels do not merge into one matrix dimension), a
    strided view copied once first (a transposing copy is slow); the sum inside the products.
    """
    B, n, h, w = grad.shape
    C = x.shape[1]
    if channels_last:
        pixels = x.permute(0, 2, 3, 1)  # (B, h, w, C), a view
        dense = pixels.is_contiguous()
        if dense and h * w >= _PIXELS_PER_ROW * n:
            return torch.bmm(grad.reshape(B, n, h * w), pixels.view(B, h * w, C)).sum(0)  # (n, C)
        sb, sh, sw, sc = pixels.stride()
        if not dense and sc == 1 and sb == h * sh and w >= _PIXELS_PER_ROW * n:
            rows = pixels.as_strided((B * h, w, C), (sh, sw, 1))  # (B*h, w, C): x's rows in place
            g = grad.transpose(1, 2).reshape(B * h, n, w)  # (B*h, n, w): a copy of the small grad
            return torch.bmm(g, rows).sum(0)  # (n, C)
        x = x.contiguous(memory_format=torch.channels_last)  # x is a (B*P, C) matrix
        g = grad.flatten(2).transpose(1, 2).reshape(-1, n)  # (B*P, n): a copy of the small grad
        return torch.mm(g.t(), x.permute(0, 2, 3, 1).reshape(-1, C))  # (n, C)
    x = x.contiguous()
    g, xp = grad.flatten(2), x.flatten(2)  # (B, n, P), (B, C, P)
    out = grad.new_zeros(n, C)
    for b in range(B):
        out = torch.addmm(out, g[b], xp[b].t())  # not addmm_: FlopCounterMode counts addmm only
    return out


def _project(x: Tensor, w_key: Tensor, w_query: Tensor, stride: int
             ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(key, query, subsampled)``: the two convolutions (no autograd), and the NCHW strided
    query's subsampled input, kept for its weight gradient (a quarter of x at stride 2, not copied
    again there; channels_last reads it in place in the backward), else None."""
    G = w_key.shape[0]
    if stride == 1:  # one conv for both
        both = F.conv2d(x, torch.cat([w_key, w_query]))  # (B, 2G, H, W)
        key, query = both.split(G, dim=1)  # (B, G, H, W) each, views
        return key, query, None
    if _channels_last(x):
        return F.conv2d(x, w_key), F.conv2d(x, w_query, stride=stride), None
    # NCHW: a 1x1 conv of the subsampled input, not a strided conv (oneDNN's is slow)
    subsampled = x[:, :, ::stride, ::stride].contiguous()  # (B, C, Ho, Wo)
    return F.conv2d(x, w_key), F.conv2d(subsampled, w_query), subsampled


def _add_input_grad(into: Tensor, weight: Tensor, grad: Tensor) -> bool:
    """``into += weight^T grad`` per pixel, in place, where ``into`` (``(B, C, h, w)``) is
    contiguous or channels_last (one ``baddbmm_`` on its pixel matrix); returns whether it could."""
    B, n, h, w = grad.shape
    C = weight.shape[1]
    g = grad.view(B, n, h * w)  # (B, n, P)
    # out= the input, not baddbmm_: FlopCounterMode counts baddbmm (and its out=) only
    if _channels_last(into):
        pixels = into.permute(0, 2, 3, 1).view(B, h * w, C)  # (B, P, C), a view
        torch.baddbmm(pixels, g.transpose(1, 2), weight.expand(B, n, C), out=pixels)
        return True
    if into.is_contiguous():
        pixels = into.view(B, C, h * w)  # (B, C, P)
        torch.baddbmm(pixels, weight.t().expand(B, C, n), g, out=pixels)
        return True
    return False


def _projection_grads(x: Tensor, w_key: Tensor, w_query: Tensor, subsampled: Tensor | None,
                      stride: int, grad_key: Tensor | None, grad_query: Tensor | None,
                      needs: tuple[bool, bool, bool], grad_x: Tensor | None = None
                      ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(grad_x, grad_w_key, grad_w_query)`` of the projections from the gradients of key and
    query (None: zero); ``needs``: whether each is wanted. ``grad_x``: a gradient of ``x`` from
    elsewhere that this one's is added into, in place (owned by the caller), or None for a new one.
    """
    G, C = w_key.shape[:2]
    if grad_key is None:
        grad_key = x.new_zeros(x.shape[0], G, *x.shape[2:])
    if grad_query is None:
        grad_query = x.new_zeros(x.shape[0], G, *_strided(x.shape[2:], stride))
    grad_key, grad_query = grad_key.contiguous(), grad_query.contiguous()
    channels_last = _channels_last(x)
    if not (x.is_contiguous() or channels_last):
        x = x.contiguous()
    need_x, need_k, need_q = needs
    grad_wk = grad_wq = None
    s = stride
    by_conv = _by_convolution(x, 2 * G if s == 1 else G)
    if s == 1:  # both gradients as one (B, 2G, H, W): one product for grad_x and the weights
        grads = torch.cat([grad_key, grad_query], dim=1)  # (B, 2G, H, W)
        w = torch.cat([w_key, w_query])  # (2G, C, 1, 1)
        need_w = need_k or need_q
        if by_conv and (need_x or need_w):
            part, both = _conv_backward(grads, x, w, 1, [need_x, need_w])
            grad_x = _add_part(grad_x, part)
        else:
            if need_x:
                grad_x = _accumulate(grad_x, w.view(2 * G, C), grads, channels_last)
            both = _weight_grad(grads, x, channels_last) if need_w else None
        if both is not None:
            grad_wk, grad_wq = both.view(2 * G, C).split(G)  # (G, C) each
    else:
        if by_conv and (need_x or need_k):
            part, grad_wk = _conv_backward(grad_key, x, w_key, 1, [need_x, need_k])
            grad_x = _add_part(grad_x, part)
        else:
            if need_x:
                grad_x = _accumulate(grad_x, w_key.view(G, C), grad_key, channels_last)
            if need_k:
                grad_wk = _weight_grad(grad_key, x, channels_last)
        if need_x:  # the strided query's part, into grad_x's ::s view
            _add_subsampled(grad_x, w_query.view(G, C), grad_query, s, channels_last)
        if need_q and by_conv:  # x read in place at the stride
            grad_wq = _conv_backward(grad_query, x, w_query, s, [False, True])[1]
        elif need_q:
            # create_graph (grad mode on here): the slice of x, whose graph reaches x
            kept = subsampled is not None and not torch.is_grad_enabled()
            xs = subsampled if kept else x[:, :, ::s, ::s]  # (B, C, Ho, Wo)
            grad_wq = _weight_grad(grad_query, xs, channels_last)
    grad_wk = None if grad_wk is None or not need_k else grad_wk.view_as(w_key)
    grad_wq = None if grad_wq is None or not need_q else grad_wq.view_as(w_query)
    return (grad_x if need_x else None), grad_wk, grad_wq


def _add_subsampled(into: Tensor, weight: Tensor, grad: Tensor, s: int, channels_last: bool) -> None:
    """``into[:, :, ::s, ::s] += weight^T grad``, a few images at a time: temporaries of
    ``_TEMPORARY_BYTES`` or less (one image's, where that is more), which the allocator hands back
    call after call; a batch-sized one was fresh memory, page faults, in every training step
    (docs/implementations.md, "Inside the network")."""
    B, C = into.shape[:2]
    per_image = C * grad.shape[2] * grad.shape[3] * grad.element_size()  # (C, Ho, Wo)
    step = max(1, _TEMPORARY_BYTES // max(1, per_image))
    for b in range(0, B, step):
        into[b:b + step, :, ::s, ::s] += _input_grad(weight, grad[b:b + step], channels_last)


def _add_part(into: Tensor | None, part: Tensor | None) -> Tensor | None:
    """``into + part`` in place (``into`` owned by the caller), ``part`` where ``into`` is None."""
    if part is None or into is None:
        return part if into is None else into
    return into.add_(part)


def _accumulate(into: Tensor | None, weight: Tensor, grad: Tensor, channels_last: bool) -> Tensor:
    """``into + weight^T grad`` (in place where ``into`` allows), or ``weight^T grad`` when
    ``into`` is None."""
    if into is None:
        return _input_grad(weight, grad, channels_last)
    if _add_input_grad(into, weight, grad):
        return into
    return into + _input_grad(weight, grad, channels_last)


class _KeyQuery(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w_key: Tensor, w_query: Tensor, stride: int):
        key, query, subsampled = _project(x, w_key, w_query, stride)
        ctx.save_for_backward(x, w_key, w_query, *(() if subsampled is None else (subsampled,)))
        ctx.stride = stride
        return key, query

    @staticmethod
    def backward(ctx, grad_key: Tensor | None, grad_query: Tensor | None):
        x, w_key, w_query, *subsampled = ctx.saved_tensors
        grads = _projection_grads(x, w_key, w_query, subsampled[0] if subsampled else None,
                                  ctx.stride, grad_key, grad_query, ctx.needs_input_grad[:3])
        return (*grads, None)


def _strided(hw: torch.Size, s: int) -> tuple[int, int]:
    H, W = hw
    return (H - 1) // s + 1, (W - 1) // s + 1


def key_query(x: Tensor, w_key: Tensor, w_query: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """``(key, query)``, ``(B, G, H, W)`` and ``(B, G, Ho, Wo)``: the 1x1 convolutions
    ``w_key`` and ``w_query`` (``(G, C, 1, 1)``, no bias) of ``x`` (``(B, C, H, W)``), the query
    at ``stride``. Same values and gradients as two ``F.conv2d`` calls; see the module docstring.
    """
    return _KeyQuery.apply(x, w_key, w_query, stride)


class _ProjectedRelation(torch.autograd.Function):
    """``op(x, query, key, prior)`` with ``key, query`` the projections of ``x``, as one node.

    Forward: the projections (no autograd), then ``op`` under autograd on detached copies of its
    four inputs (its own graph, kept for the backward). Backward: that graph's gradients, then the
    projections' gradient of ``x`` added into the op's in place (the op's ``grad_x`` is a tensor of
    its own), instead of a second ``x``-sized gradient and autograd's sum of the two. With
    ``create_graph`` the backward recomputes both with autograd (correct higher derivatives).
    """

    @staticmethod
    def forward(ctx, x: Tensor, w_key: Tensor, w_query: Tensor, prior: Tensor, op, kwargs: dict):
        stride = kwargs["stride"]
        key, query, subsampled = _project(x, w_key, w_query, stride)
        needs_kq = x.requires_grad or w_key.requires_grad or w_query.requires_grad
        inputs = [x.detach().requires_grad_(x.requires_grad),
                  query.detach().requires_grad_(needs_kq), key.detach().requires_grad_(needs_kq),
                  prior.detach().requires_grad_(prior.requires_grad)]
        with torch.enable_grad():
            y = op(*inputs, **kwargs)  # (B, C, Ho, Wo)
        ctx.graph = (y, inputs)
        ctx.save_for_backward(x, w_key, w_query, prior,
                              *(() if subsampled is None else (subsampled,)))
        ctx.op, ctx.kwargs = op, kwargs
        return y.detach()

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, w_key, w_query, prior, *subsampled = ctx.saved_tensors
        needs = ctx.needs_input_grad[:4]
        graph, ctx.graph = ctx.graph, None  # used once, then freed with its saved tensors
        if graph is None or torch.is_grad_enabled():
            # create_graph, or a second backward (retain_graph): the layer again, with autograd
            with torch.enable_grad():
                again = _two_calls(x, w_key, w_query, prior, ctx.op, ctx.kwargs)
            wanted = [t for t, need in zip((x, w_key, w_query, prior), needs, strict=True) if need]
            if not again.requires_grad:  # an op that reads none of what needs grad
                return None, None, None, None, None, None
            grads = iter(torch.autograd.grad(again, wanted, grad_y, allow_unused=True,
                                             create_graph=torch.is_grad_enabled()))
            return (*(next(grads) if need else None for need in needs), None, None)
        y, inputs = graph
        wanted = [t for t in inputs if t.requires_grad]
        if not (wanted and y.requires_grad):  # an op whose output reads none of what needs grad
            return None, None, None, None, None, None
        grads = torch.autograd.grad(y, wanted, grad_y, allow_unused=True)
        found = dict(zip(map(id, wanted), grads, strict=True))
        grad_x, grad_query, grad_key, grad_prior = (found.get(id(t)) for t in inputs)
        if grad_key is None and grad_query is None:  # an op that reads neither (the floor's)
            return grad_x, None, None, grad_prior, None, None
        others = [t for t in (grad_y, x, grad_query, grad_key) if t is not None]
        if grad_x is not None and not _owned(grad_x, *others):
            grad_x = grad_x.clone()  # not ours to add into (nor to change what else is read)
        grad_x, grad_wk, grad_wq = _projection_grads(
            x, w_key, w_query, subsampled[0] if subsampled else None, ctx.kwargs["stride"],
            grad_key, grad_query, needs[:3], grad_x)
        return grad_x, grad_wk, grad_wq, grad_prior, None, None


def _owned(grad: Tensor, *others: Tensor) -> bool:
    """Whether ``grad`` is a tensor of its own: not a view, sharing no memory with ``others``."""
    if grad._base is not None:
        return False
    start = grad.untyped_storage().data_ptr()
    end = start + grad.untyped_storage().nbytes()
    for other in others:
        o = other.untyped_storage()
        if o.data_ptr() < end and start < o.data_ptr() + o.nbytes():
            return False
    return True


def projected_relation(x: Tensor, w_key: Tensor, w_query: Tensor, prior: Tensor, op, *,
                       kernel_size: int, stride: int = 1, phi: str = "sqdiff",
                       impl: str | None = None) -> Tensor:
    """``op(x, query, key, prior, kernel_size=..., stride=..., phi=..., impl=...)`` (``op``:
    :func:`lrbench.local_relation` or a callable with its signature) with ``key, query =
    key_query(x, w_key, w_query, stride)``: the same values and gradients as the two calls, in one
    autograd node whose backward adds the projections' gradient of ``x`` into the op's (see
    :class:`_ProjectedRelation`).
    Without a backward to come (no grad mode, nothing requiring grad), and under saved-tensor hooks
    (``torch.utils.checkpoint`` without reentrance, ``save_on_cpu``: the node keeps the op's graph
    on itself, out of their reach), it is the two calls."""
    kwargs = dict(kernel_size=kernel_size, stride=stride, phi=phi, impl=impl)
    if _saved_tensors_hooked() or not (torch.is_grad_enabled() and any(
            t.requires_grad for t in (x, w_key, w_query, prior))):
        return _two_calls(x, w_key, w_query, prior, op, kwargs)
    return _ProjectedRelation.apply(x, w_key, w_query, prior, op, kwargs)


def _two_calls(x: Tensor, w_key: Tensor, w_query: Tensor, prior: Tensor, op, kwargs: dict
               ) -> Tensor:
    """The projections, then the op: two autograd nodes (what the one node computes)."""
    key, query = key_query(x, w_key, w_query, kwargs["stride"])
    return op(x, query, key, prior, **kwargs)


def _saved_tensors_hooked() -> bool:
    """Whether saved-tensor hooks are in effect (``torch.autograd.graph.saved_tensors_hooks``:
    non-reentrant checkpointing, ``save_on_cpu``); the same test ``torch.utils.checkpoint`` makes."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top is not None and top(False) is not None
