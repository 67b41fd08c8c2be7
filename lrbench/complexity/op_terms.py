"""Closed-form multiply-accumulate count of the local relation *op* (SPEC.md section 4).

Unit: one multiply-add = 1 MAC (fvcore's convention; ``torch.utils.flop_counter`` reports
FLOPs = 2 x MACs). Hu et al., "Local Relation Networks for Image Recognition", arXiv:1904.11491.

The op is the part of the layer between the projections and the final 1x1: composability
(phi plus the prior, one per logit), softmax (one per logit) and aggregation (one per
channel and neighbour). The layer's projections, final 1x1 and prior network are counted
by the layer-level closed form, not here.
"""

from __future__ import annotations


def op_terms(B: int, C: int, G: int, k: int, Ho: int, Wo: int) -> dict[str, int]:
    """MACs of one call of the op, by term.

    Args:
        B, C, G: batch, channels and weight maps.
        k: kernel size; the neighbourhood has ``k*k`` offsets (border pixels are counted as if
            all ``k*k`` were in the image, as every implementation computes the masked ones too).
        Ho, Wo: output size.

    Returns:
        ``{"composability": B*G*k^2*Ho*Wo, "softmax": B*G*k^2*Ho*Wo, "aggregation": B*C*k^2*Ho*Wo}``.
    """
    logits = B * G * k * k * Ho * Wo
    return {
        "composability": logits,
        "softmax": logits,
        "aggregation": B * C * k * k * Ho * Wo,
    }


def op_macs(B: int, C: int, G: int, k: int, Ho: int, Wo: int) -> int:
    """Total MACs of one call of the op: the sum of :func:`op_terms`."""
    return sum(op_terms(B, C, G, k, Ho, Wo).values())


def op_macs_from_shapes(x_shape, query_shape, key_shape, kernel_size: int) -> int:
    """:func:`op_macs` from the shapes of ``x`` (B, C, H, W), ``query`` (B, G, Ho, Wo) and ``key``.

    The form a FLOP formula of a custom operator receives its arguments in.
    """
    B, C = x_shape[:2]
    G = key_shape[1]
    Ho, Wo = query_shape[-2:]
    return op_macs(B, C, G, kernel_size, Ho, Wo)
