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


def channel_blocks(C: int, G: int) -> list[tuple[slice, slice, int]]:
    """Split ``C`` channels into runs of equal-sized blocks, without padding.

    Channel ``c`` uses map ``c // m`` with ``m = ceil(C / G)``: the first ``C // m`` maps have
    ``m`` channels each and, when ``m`` does not divide ``C``, the last map has the remaining
    ``C - (C // m) * m``. Returns ``(channel_slice, group_slice, block_size)`` per run (one or
    two runs), so each run views as ``(B, groups, block_size, ...)`` and no work is done on
    padding channels.
    """
    m = -(-C // G)
    full = C // m
    runs = [(slice(0, full * m), slice(0, full), m)]
    if full * m < C:
        runs.append((slice(full * m, C), slice(full, G), C - full * m))
    return runs
