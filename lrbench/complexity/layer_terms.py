"""Closed-form multiply-adds of one ``LocalRelation2d`` layer, term by term (SPEC.md section 4).

Unit: one multiply-add = 1 MAC (fvcore's convention); FLOPs = 2 x MACs. Hu, Zhang, Xie, Lin,
"Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491, section 3.
"""

from __future__ import annotations

from fractions import Fraction

from lrbench.complexity.op_terms import op_terms
from lrbench.spec import output_size, weight_maps


def prior_macs(k: int, G: int, prior: str = "mlp", hidden: int | None = None) -> int:
    """MACs of the geometric prior network, independent of the image size and the batch.

    ``"mlp"``: Conv1x1(2 -> h) and Conv1x1(h -> G) over the ``k x k`` offsets,
    ``(2*h + h*G) * k^2`` (biases not counted); ``"direct"`` and ``"none"``: 0.
    """
    if prior not in ("mlp", "direct", "none"):
        raise ValueError(f"prior must be one of ('mlp', 'direct', 'none'), got {prior!r}")
    h = G if hidden is None else hidden
    return (2 * h + h * G) * k * k if prior == "mlp" else 0


def lr_layer_terms(C: int, H: int, W: int, k: int = 7, m: int = 8, stride: int = 1,
                   prior: str = "mlp", B: int = 1) -> dict[str, int]:
    """MACs of one local relation layer on a ``(B, C, H, W)`` input, by term.

    Args:
        C: channels (in = out); ``G = ceil(C / m)`` weight maps.
        H, W: input size; ``Ho = (H - 1) // stride + 1``, same for ``Wo``.
        k: kernel size. m: channels per weight map. stride: output stride.
        prior: ``"mlp"``, ``"direct"`` or ``"none"``. B: batch.

    Returns:
        ``key`` ``B*C*G*H*W``, ``query`` ``B*C*G*Ho*Wo``, ``composability`` and ``softmax``
        ``B*G*k^2*Ho*Wo`` each, ``aggregation`` ``B*C*k^2*Ho*Wo``, ``final`` ``B*C^2*Ho*Wo``,
        ``prior`` (see :func:`prior_macs`; once per forward, not per image).
    """
    G = weight_maps(C, m)
    Ho, Wo = output_size(H, stride), output_size(W, stride)
    return {
        "key": B * C * G * H * W,
        "query": B * C * G * Ho * Wo,
        **op_terms(B, C, G, k, Ho, Wo),
        "final": B * C * C * Ho * Wo,
        "prior": prior_macs(k, G, prior),
    }


def secondary_formula(C: int, H: int, W: int, k: int = 7, m: int = 8, stride: int = 1) -> Fraction:
    """The seed article's ``((1 + s^2)/m + 1) * C * (C + k^2) * H*W / s^2``, exactly.

    It has no prior-network term and assumes ``G = C/m`` and ``Ho*Wo = H*W/s^2``.
    """
    s2 = stride * stride
    return (Fraction(1 + s2, m) + 1) * C * (C + k * k) * H * W / s2


def secondary_excess(C: int, H: int, W: int, k: int = 7, m: int = 8, stride: int = 1) -> Fraction:
    """What the algebra predicts for ``secondary_formula - (terms without the prior)``.

    Expanding the formula gives key ``C^2 H W/m``, query ``C^2 H W/(m s^2)``, final and
    aggregation exactly, and ``(1 + s^2) C k^2 H W/(m s^2)`` for the two ``G k^2 Ho Wo`` terms,
    which are ``2 C k^2 H W/(m s^2)``: an over-count of ``(s^2 - 1) * C k^2 H W / (m s^2)``,
    zero at stride 1. Exact when ``m | C`` and ``s`` divides ``H`` and ``W``.
    """
    s2 = stride * stride
    return Fraction((s2 - 1) * C * k * k * H * W, m * s2)
