"""The im2col + batched matmul implementation.

An explicit im2col (a gather with precomputed indices into the zero-padded image) builds the
``(k*k, Ho*Wo)`` neighbourhood columns; the aggregation is then one batched matrix product per
(batch, group, output pixel): ``(m x k*k) @ (k*k x 1)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lrbench.impls.common import channel_blocks, neighbour_weights

from lrbench.registry import Implementation, register

_INDEX_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
_INDEX_CACHE_SIZE = 64


def _im2col_index(H: int, W: int, k: int, s: int, device: torch.device):
    """Flat indices into the ``(H+2r) x (W+2r)`` padded image, and the in-image mask, cached.

    Returns ``index`` of shape ``(k*k, Ho*Wo)`` and ``inside`` of the same shape (bool). Only
    plain tensors are cached: under a tensor subclass mode (the fake tensors of
    ``torch.compile`` or of FLOP counting without compute) the result is built and not kept.
    """
    key = (H, W, k, s, str(device))
    if key in _INDEX_CACHE:
        return _INDEX_CACHE[key]
    index, inside = _build_index(H, W, k, s, device)
    if type(index) is torch.Tensor:
        if len(_INDEX_CACHE) >= _INDEX_CACHE_SIZE:
            _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = index, inside
    return index, inside


def _build_index(H: int, W: int, k: int, s: int, device: torch.device):
    r = (k - 1) // 2
    Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
    Wp = W + 2 * r
    d = torch.arange(-r, r + 1, device=device)  # (k,) offsets
    rows = torch.arange(Ho, device=device)[None, :] * s + d[:, None]  # (k, Ho): i*s + dy
    cols = torch.arange(Wo, device=device)[None, :] * s + d[:, None]  # (k, Wo): j*s + dx
    rows = rows[:, None, :, None].expand(k, k, Ho, Wo)  # (k, k, Ho, Wo): [dy, dx, i, j]
    cols = cols[None, :, None, :].expand(k, k, Ho, Wo)
    inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
    index = (rows + r) * Wp + (cols + r)
    return index.reshape(k * k, Ho * Wo), inside.reshape(k * k, Ho * Wo)


def im2col(t: torch.Tensor, index: torch.Tensor, r: int) -> torch.Tensor:
    """``(B, c, H, W)`` -> ``(B, c, k*k, Ho*Wo)`` neighbourhood columns (zeros outside the image)."""
    B, c = t.shape[:2]
    flat = F.pad(t, (r, r, r, r)).reshape(B, c, -1)  # (B, c, (H+2r)*(W+2r))
    return flat[:, :, index]  # (B, c, k*k, L)


def local_relation_im2col_matmul(x, query, key, prior, kernel_size, stride, phi):
    B, C, H, W = x.shape
    G = key.shape[1]
    k, s, r = kernel_size, stride, (kernel_size - 1) // 2
    Ho, Wo = query.shape[-2:]
    L, kk = Ho * Wo, k * k
    index, inside = _im2col_index(H, W, k, s, x.device)

    keys = im2col(key, index, r)  # (B, G, kk, L)
    weights = neighbour_weights(query, keys, prior, inside, phi)  # (B, G, kk, L)

    cols = im2col(x, index, r)  # (B, C, kk, L)
    w = weights.permute(0, 1, 3, 2).unsqueeze(-1)  # (B, G, L, kk, 1)
    parts = []
    for channels, groups, m in channel_blocks(C, G):  # blocks of m channels share one map
        c = cols[:, channels].reshape(B, -1, m, kk, L).permute(0, 1, 4, 2, 3)  # (B, g, L, m, kk)
        y = torch.matmul(c, w[:, groups]).squeeze(-1)  # (B, g, L, m)
        parts.append(y.permute(0, 1, 3, 2).reshape(B, -1, L))  # (B, g*m, L)
    y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (B, C, L)
    return y.view(B, C, Ho, Wo)


register(
    Implementation(
        name="im2col_matmul",
        fn=local_relation_im2col_matmul,
        summary="index-gather im2col, softmax, batched (m x k*k)@(k*k x 1) matmul, autograd",
        devices=("cpu", "cuda"),
        dtypes=(torch.float64, torch.float32, torch.float16, torch.bfloat16),
        priority=5,
    )
)
