"""Pieces shared by the torch-op implementations: the composability functions and the channel map."""

from __future__ import annotations

import torch


def composability(q: torch.Tensor, k: torch.Tensor, phi: str) -> torch.Tensor:
    """``phi(q, k)`` elementwise, with broadcasting (SPEC section 1)."""
    if phi == "sqdiff":
        return -(q - k).square()
    if phi == "absdiff":
        return -(q - k).abs()
    if phi == "mult":
        return q * k
    raise ValueError(f"phi must be one of ('sqdiff', 'absdiff', 'mult'), got {phi!r}")


def pad_channels(x: torch.Tensor, G: int) -> tuple[torch.Tensor, int]:
    """Zero-pad ``x``'s channels from ``C`` to ``G * m`` so they view as ``(B, G, m, ...)``.

    Returns the padded tensor and ``m = ceil(C / G)``. The padded channels are sliced off
    after aggregation, so they never reach the output or its gradient.
    """
    C = x.shape[1]
    m = -(-C // G)
    if G * m == C:
        return x, m
    pad = x.new_zeros((x.shape[0], G * m - C, *x.shape[2:]))
    return torch.cat([x, pad], dim=1), m
