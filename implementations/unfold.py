"""The unfold implementation: ``torch.nn.functional.unfold`` of keys and values, then broadcasting.

This is the approach of the public LR-Net ports (done correctly: masked borders, channel blocks
of ``m = ceil(C/G)``). It materialises a ``C * k*k * Ho*Wo`` buffer of values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from implementations.common import composability, pad_channels
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
    inside = unfold(x.new_ones(1, 1, H, W)).view(1, 1, kk, L) > 0  # in-image neighbours
    logits = composability(query.reshape(B, G, 1, L), keys, phi) + prior.reshape(1, G, kk, 1)
    weights = torch.softmax(logits.masked_fill(~inside, float("-inf")), dim=2)  # (B, G, kk, L)

    x_blocks, m = pad_channels(x, G)  # (B, G*m, H, W)
    values = unfold(x_blocks).view(B, G, m, kk, L)
    y = (weights.unsqueeze(2) * values).sum(dim=3)  # (B, G, m, L)
    return y.reshape(B, G * m, Ho, Wo)[:, :C]  # (B, C, Ho, Wo)


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
