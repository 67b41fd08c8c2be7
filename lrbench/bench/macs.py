"""Closed-form multiply-adds of what each benchmark target computes (forward pass).

Unit: one multiply-add = 1 MAC (fvcore's convention). The op's count is
:func:`lrbench.complexity.op_macs` (Hu et al., ICCV 2019, arXiv:1904.11491; SPEC.md section 4).
Backward passes are not counted: a row's GMAC/s is given for forward passes only.
"""

from __future__ import annotations

import importlib

from lrbench.bench.cases import Case
from lrbench.complexity import lr_layer_terms, op_macs


def op_case_macs(case: Case) -> tuple[int, str]:
    s = case.shape
    return op_macs(s.B, s.C, s.G, s.k, s.Ho, s.Wo), "op closed form"


def layer_macs(case: Case) -> tuple[int, str]:
    """MACs of one ``LocalRelation2d`` forward: :func:`lrbench.complexity.lr_layer_terms`
    (projections, op, final 1x1 and the prior network)."""
    s = case.shape
    terms = lr_layer_terms(s.C, s.H, s.W, k=s.k, m=s.m, stride=s.stride, B=s.B)
    return sum(terms.values()), "layer closed form (lr_layer_terms)"


def conv3x3_macs(case: Case) -> tuple[int, str]:
    """``B * C * C * 9 * Ho * Wo``: a 3x3 conv, C -> C channels, no bias."""
    s = case.shape
    return s.B * s.C * s.C * 9 * s.Ho * s.Wo, "3x3 conv closed form"


def natten_macs(case: Case) -> tuple[int, str]:
    """``B * G * H*W * k*k * 2 * HEAD_DIM``: logits (q . k) and aggregation, heads = G."""
    from lrbench.bench.natten_peer import HEAD_DIM

    s = case.shape
    return s.B * s.G * s.H * s.W * s.k * s.k * 2 * HEAD_DIM, "neighborhood attention closed form"


def network_macs(case: Case) -> tuple[int | None, str]:
    """The network's closed form (:func:`lrbench.complexity.network.network_macs`, per image)
    times the batch; ``None`` with the reason when that module is not there."""
    try:
        network = importlib.import_module("lrbench.complexity.network")
        config = importlib.import_module("lrbench.models.config").CONFIGS[case.target]
    except (ImportError, AttributeError, KeyError) as err:
        return None, f"no closed-form network count available ({type(err).__name__}: {err})"
    per_image = network.network_macs(config, case.H, case.W)
    return case.B * per_image, "network closed form (network_macs x B)"


MACS = {
    "op": op_case_macs,
    "layer": layer_macs,
    "conv3x3": conv3x3_macs,
    "natten": natten_macs,
    "lrnet50": network_macs,
    "resnet50": network_macs,
}


def case_macs(case: Case) -> tuple[int | None, str]:
    """``(forward MACs or None, where the count comes from or why it is missing)``."""
    return MACS[case.target](case)
