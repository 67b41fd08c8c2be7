"""NATTEN, the nearest published fused kernel, as a timing reference target (``natten``).

Neighborhood attention (Hassani et al., "Neighborhood Attention Transformer", CVPR 2023,
arXiv:2204.07143; SHI-Labs/NATTEN) is a different op from the local relation op:

- its k x k window is *clamped* at the borders (shifted to stay inside the image, so every pixel
  attends to exactly k*k pixels), where ours is *masked* (out-of-image neighbours excluded);
- no geometric prior; logits are ``scale * q . k`` over a head dimension, not ``phi(q, k)`` of
  one scalar per group;
- its fused kernels take head dims of 32 and more (both q/k and v are given ``HEAD_DIM`` here),
  need the image to be at least k x k, and run on CUDA.

So it is timed beside ``conv3x3`` (same B, heads = G = ceil(C/m), window k, H x W) and gated
against :func:`clamped_window_attention`, a small float64 implementation of its own semantics,
not against our reference.
"""

from __future__ import annotations

import importlib

import torch

from lrbench.bench.matrix.cases import Case

HEAD_DIM = 32  # q/k and v head dim given to NATTEN (its fused kernels' smallest common one)
GATE_SIZE = 9  # side of the gate's image (at least k; raised to k when k is larger)


def load_natten():
    """The ``natten`` module, or ``None`` when it is not installed."""
    try:
        return importlib.import_module("natten")
    except ImportError:
        return None


def why_not(case: Case) -> list[str]:
    """Reasons the NATTEN case cannot run here (empty: it can)."""
    reasons = []
    if load_natten() is None:
        reasons.append("natten is not installed (pip install 'lrbench[peers]'; CUDA only)")
    if case.device != "cuda":  # (a missing CUDA device is the bench's own reason)
        reasons.append("NATTEN's fused kernels run on CUDA only")
    if min(case.H, case.W) < case.k:
        reasons.append(f"NATTEN needs an image of at least k x k = {case.k} x {case.k}, "
                       f"got {case.H} x {case.W}")
    return reasons


def window_starts(n: int, k: int) -> torch.Tensor:
    """First row (or column) of each pixel's clamped window: ``clamp(i - r, 0, n - k)``."""
    r = (k - 1) // 2
    return (torch.arange(n) - r).clamp(0, n - k)  # (n,)


def clamped_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int,
                             scale: float | None = None) -> torch.Tensor:
    """Neighborhood attention with clamped windows, written plainly (the float64 gate of NATTEN).

    Args:
        q, k: ``(B, H, W, heads, d)``; v: ``(B, H, W, heads, dv)`` (NATTEN's layout).
        kernel_size: odd window size, at most ``H`` and ``W``.
        scale: logit scale (default ``d ** -0.5``, NATTEN's).

    Returns:
        ``(B, H, W, heads, dv)``: for each pixel, softmax(scale * q . k) over the k x k pixels of
        its window, which starts at ``clamp(i - r, 0, H - k)`` (no prior, no mask).
    """
    B, H, W, heads, d = q.shape
    if min(H, W) < kernel_size:
        raise ValueError(f"kernel_size {kernel_size} exceeds the image {H} x {W}")
    scale = d ** -0.5 if scale is None else scale
    offsets = torch.arange(kernel_size)
    rows = (window_starts(H, kernel_size)[:, None] + offsets)[:, None, :, None]  # (H, 1, k, 1)
    cols = (window_starts(W, kernel_size)[:, None] + offsets)[None, :, None, :]  # (1, W, 1, k)
    keys = k[:, rows, cols]  # (B, H, W, k, k, heads, d)
    values = v[:, rows, cols]  # (B, H, W, k, k, heads, dv)
    logits = torch.einsum("bijhd,bijachd->bijhac", q, keys) * scale  # (B, H, W, heads, k, k)
    weights = torch.softmax(logits.flatten(-2), dim=-1).view_as(logits)  # (B, H, W, heads, k, k)
    return torch.einsum("bijhac,bijachd->bijhd", weights, values)  # (B, H, W, heads, dv)


def _na2d(natten):
    functional = getattr(natten, "functional", None)
    return getattr(functional, "na2d", None) or natten.na2d


def _tensors(B, H, W, heads, dtype, device, requires_grad, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (B, H, W, heads, HEAD_DIM)
    return [torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)
            .requires_grad_(requires_grad) for _ in range(3)]  # q, k, v


def forward_fn(case: Case):
    """``(forward, leaves)`` of NATTEN on the case's shape: heads = G, window k."""
    s = case.shape
    na2d = _na2d(load_natten())
    q, k, v = _tensors(s.B, s.H, s.W, s.G, case.torch_dtype, case.device,
                       requires_grad=case.pass_ != "fwd")
    return (lambda: na2d(q, k, v, kernel_size=(s.k, s.k))), [q, k, v]  # (B, H, W, G, HEAD_DIM)


def gate_result(case: Case):
    """NATTEN in the case's dtype against :func:`clamped_window_attention` in float64 on a small
    image (the same rounded inputs), output and the three gradients, each held to the suite's
    limit for ``k*k*HEAD_DIM`` terms (:mod:`lrbench.accuracy.limits`); a
    :class:`lrbench.check.CheckResult`."""
    from lrbench.accuracy.limits import suite_limit
    from lrbench.check import CheckResult, compare_value

    size = max(GATE_SIZE, case.k)
    na2d = _na2d(load_natten())
    made = _tensors(1, size, size, 2, torch.float64, "cpu", requires_grad=False, seed=1)
    rounded = [t.to(case.torch_dtype).double() for t in made]  # what NATTEN is given, exactly
    exact = [t.clone().requires_grad_(True) for t in rounded]
    got = [t.to(case.device, case.torch_dtype).requires_grad_(True) for t in rounded]
    expected_y = clamped_window_attention(*exact, case.k)
    got_y = na2d(*got, kernel_size=(case.k, case.k))
    grad = torch.randn_like(expected_y).to(case.torch_dtype).double()
    expected_y.backward(grad)
    got_y.backward(grad.to(got_y.device, got_y.dtype))
    limit = suite_limit(case.torch_dtype, case.k * case.k * HEAD_DIM)
    result = CheckResult(impl="natten", dtype=case.torch_dtype, oracle="clamped-window float64")
    pairs = [("y", got_y, expected_y)] + [
        (name, g.grad, e.grad) for name, g, e in zip("qkv", got, exact, strict=True)]
    for name, value, ref in pairs:
        compare_value(result, name, value.detach().double().cpu(), ref.detach(), limit)
    return result
