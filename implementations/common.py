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


def neighbour_weights(query: torch.Tensor, keys: torch.Tensor, prior: torch.Tensor,
                      inside: torch.Tensor, phi: str) -> torch.Tensor:
    """Softmax weights over the k*k neighbours, out-of-image ones excluded.

    Args:
        query: ``(B, G, L)`` one query per output pixel.
        keys: ``(B, G, kk, L)`` the neighbours' keys (any value where ``inside`` is False).
        prior: ``(G, k, k)`` prior logits.
        inside: ``(kk, L)`` bool, True where the neighbour lies in the image.

    Returns:
        ``(B, G, kk, L)`` weights summing to 1 over ``kk``.
    """
    B, G, kk, L = keys.shape
    logits = composability(query.reshape(B, G, 1, L), keys, phi) + prior.reshape(1, G, kk, 1)
    return torch.softmax(logits.masked_fill(~inside, float("-inf")), dim=2)  # (B, G, kk, L)
