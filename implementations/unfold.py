"""The unfold implementation: ``torch.nn.functional.unfold`` of keys and values, then broadcasting.

This is the approach of the public LR-Net ports (done correctly: masked borders, channel blocks
of ``m = ceil(C/G)``). It materialises a ``C * k*k * Ho*Wo`` buffer of values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lrbench.impls.common import channel_blocks, neighbour_weights

from lrbench.registry import Implementation, register


def local_relation_unfold(x, query, key, prior, kernel_size, stride, phi):
    B, C, H, W = x.shape
    G = key.shape[1]
    k, s, r = kernel_size, stride, (kernel_size - 1) // 2
    Ho, Wo = query.shape[-2:]
    L, kk = Ho * Wo, k * k

    def unfold(t: torch.Tensor) -> torch.Tensor:
        return F.unfold(t, kernel_size=k, padding=r, stride=s)  # (B', c * k*k, L)

    keys = unfold(key).view(B, G, kk, L)
    inside = unfold(x.new_ones(1, 1, H, W)).view(kk, L) > 0  # in-image neighbours
    weights = neighbour_weights(query, keys, prior, inside, phi)  # (B, G, kk, L)

    values = unfold(x).view(B, C, kk, L)
    parts = []
    for channels, groups, m in channel_blocks(C, G):  # blocks of m channels share one map
        v = values[:, channels].reshape(B, -1, m, kk, L)  # (B, g, m, kk, L)
        w = weights[:, groups].unsqueeze(2)  # (B, g, 1, kk, L)
        parts.append((w * v).sum(dim=3).reshape(B, -1, L))  # (B, g*m, L)
    y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (B, C, L)
    return y.view(B, C, Ho, Wo)


register(
    Implementation(
        name="unfold",
        fn=local_relation_unfold,
        summary="F.unfold of keys and values (k*k*C*HW buffer), broadcast multiply, autograd",
        devices=("cpu", "cuda"),
        dtypes=(torch.float64, torch.float32, torch.float16, torch.bfloat16),
        priority=10,
    )
)
