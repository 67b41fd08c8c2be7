"""The readable reference: a direct gather over the k*k offsets. The float64 oracle of the tests.

Hu et al., "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
Nothing here is optimised; every step of SPEC section 1 is one line.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lrbench.impls.common import composability

from lrbench.registry import Implementation, register


def local_relation_reference(x, query, key, prior, kernel_size, stride, phi):
    B, C, H, W = x.shape
    G = key.shape[1]
    s, r = stride, (kernel_size - 1) // 2
    Ho, Wo = query.shape[-2:]
    m = -(-C // G)

    # Pad by r so that every offset is a plain strided slice; padded entries are masked below.
    x_pad = F.pad(x, (r, r, r, r))  # (B, C, H+2r, W+2r)
    key_pad = F.pad(key, (r, r, r, r))  # (B, G, H+2r, W+2r)
    inside = F.pad(x.new_ones(1, 1, H, W, dtype=torch.bool), (r, r, r, r))  # (1, 1, H+2r, W+2r)

    def window(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        # Input pixels (i*s + dy, j*s + dx) for all output pixels (i, j).
        return t[..., r + dy : r + dy + (Ho - 1) * s + 1 : s, r + dx : r + dx + (Wo - 1) * s + 1 : s]

    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]  # n = (dy+r)*k + dx+r
    logits = torch.stack(
        [composability(query, window(key_pad, dy, dx), phi) + prior[:, dy + r, dx + r, None, None]
         for dy, dx in offsets],
        dim=2,
    )  # (B, G, k*k, Ho, Wo)
    mask = torch.stack([window(inside, dy, dx) for dy, dx in offsets], dim=2)  # (1, 1, k*k, Ho, Wo)
    weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=2)  # (B, G, k*k, Ho, Wo)

    group_of_channel = torch.arange(C, device=x.device) // m  # channel c uses map c // m
    weights_per_channel = weights[:, group_of_channel]  # (B, C, k*k, Ho, Wo)
    values = torch.stack([window(x_pad, dy, dx) for dy, dx in offsets], dim=2)  # (B, C, k*k, Ho, Wo)
    return (weights_per_channel * values).sum(dim=2)  # (B, C, Ho, Wo)


register(
    Implementation(
        name="reference",
        fn=local_relation_reference,
        summary="direct gather over the k*k offsets, autograd; the float64 oracle",
        devices=("cpu", "cuda"),
        dtypes=(torch.float64, torch.float32, torch.float16, torch.bfloat16),
        priority=0,
    )
)
