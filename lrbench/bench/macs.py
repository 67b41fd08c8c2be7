"""Closed-form multiply-adds of what each benchmark target computes (forward pass).

Unit: one multiply-add = 1 MAC (fvcore's convention). The op's count is
:func:`lrbench.complexity.op_macs` (Hu et al., ICCV 2019, arXiv:1904.11491; SPEC.md section 4).
Backward passes are not counted: a row's GMAC/s is given for forward passes only.
"""

from __future__ import annotations

import importlib

from lrbench.bench.cases import Case
from lrbench.complexity import op_macs


def op_case_macs(case: Case) -> tuple[int, str]:
    s = case.shape
    return op_macs(s.B, s.C, s.G, s.k, s.Ho, s.Wo), "op closed form"


def layer_macs_closed_form(case: Case) -> tuple[int, str]:
    """MACs of one ``LocalRelation2d`` forward, term by term (SPEC.md section 4).

    key projection ``B*C*G*H*W`` + query projection ``B*C*G*Ho*Wo`` + the op + final 1x1
    ``B*C^2*Ho*Wo`` + the prior network ``2*h*k^2 + h*G*k^2`` (``h = G``; once per call,
    independent of the batch and of H and W).
    """
    s = case.shape
    B, C, G, k = s.B, s.C, s.G, s.k
    projections = B * C * G * s.H * s.W + B * C * G * s.Ho * s.Wo
    prior = 2 * G * k * k + G * G * k * k
    final = B * C * C * s.Ho * s.Wo
    op, _ = op_case_macs(case)
    return projections + op + final + prior, "layer closed form (projections + op + final 1x1 + prior)"


def conv3x3_macs(case: Case) -> tuple[int, str]:
    """``B * C * C * 9 * Ho * Wo``: a 3x3 conv, C -> C channels, no bias."""
    s = case.shape
    return s.B * s.C * s.C * 9 * s.Ho * s.Wo, "3x3 conv closed form"


def network_macs(case: Case) -> tuple[int | None, str]:
    """The network's closed-form count from :mod:`lrbench.complexity.network` when it exists."""
    try:
        network = importlib.import_module("lrbench.complexity.network")
        count = network.network_macs(case.target, batch=case.B, size=case.H)
    except (ImportError, AttributeError, TypeError) as err:
        return None, f"no closed-form network count available ({type(err).__name__}: {err})"
    return int(count), "network closed form"


MACS = {
    "op": op_case_macs,
    "layer": layer_macs_closed_form,
    "conv3x3": conv3x3_macs,
    "lrnet50": network_macs,
    "resnet50": network_macs,
}


def case_macs(case: Case) -> tuple[int | None, str]:
    """``(forward MACs or None, where the count comes from or why it is missing)``."""
    return MACS[case.target](case)
