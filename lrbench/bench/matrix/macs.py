"""Closed-form multiply-adds of what each benchmark target computes (forward pass).

Unit: one multiply-add = 1 MAC (fvcore's convention). The op's count is
:func:`lrbench.complexity.op_macs` (Hu et al., ICCV 2019, arXiv:1904.11491; SPEC.md section 4).
The ``macs`` column holds the forward count; the ``gmacs_per_s`` column is for forward passes.

Backward convention (:data:`PASS_MACS`): a backward pass counts 2x the forward MACs, as
:mod:`lrbench.impls.op_wiring` declares for the fused ops' FLOP formulas (one product for the
gradient of each operand of every forward product: the weights' recomputation and the softmax
backward, and the two aggregations ``dL/dw`` and ``grad_x``); ``fwd_bwd`` and ``train`` count
forward + backward = 3x (the SGD step's few multiply-adds per parameter are left out).
:func:`pass_macs` applies it for the efficiency columns (:mod:`lrbench.bench.results.metrics`).

Minimal bytes (:func:`case_min_bytes`), the denominator of the arithmetic intensity: every input
read once and the output written once, nothing else (no intermediate ever reaches memory):

- ``fwd``: ``sum(inputs) + output``;
- ``bwd``, ``fwd_bwd``, ``train``: ``2 * sum(inputs) + output``: the inputs read, one gradient
  (or, for ``train``, one parameter update) of the inputs' size written, the output's gradient
  read.

Inputs per target (elements; times the dtype's size): op ``x + query + key + prior`` =
``BCHW + BG*Ho*Wo + BGHW + G*k^2``; layer ``x + parameters`` = ``BCHW + 2CG + C^2 + prior``;
conv3x3 ``BCHW + 9*C^2``; natten (the peer) query, key and value of ``B*G*H*W*HEAD_DIM`` each;
networks ``3*B*H*W + parameters``. Outputs: ``B*C*Ho*Wo``, natten ``B*G*H*W*HEAD_DIM``, networks
``B * 1000`` logits.
"""

from __future__ import annotations

import importlib

from lrbench.bench.matrix.cases import FLOOR, Case
from lrbench.complexity import lr_layer_terms, op_macs, op_terms
from lrbench.layer import parameter_count as lr_parameter_count

# Closed-form MACs of a pass as a multiple of the forward's (see the module docstring).
PASS_MACS = {"fwd": 1, "bwd": 2, "fwd_bwd": 3, "train": 3}
NUM_CLASSES = 1000


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
    from lrbench.bench.peers.natten import HEAD_DIM

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
    if case.impl == FLOOR:
        return case.B * _floor_macs(network, config, case), ("network closed form without the "
                                                             "op's terms (the floor) x B")
    per_image = network.network_macs(config, case.H, case.W)
    return case.B * per_image, "network closed form (network_macs x B)"


def _floor_macs(network, config, case: Case) -> int:
    """Per image: the network's closed form less the op's terms of every LR layer (the floor
    keeps the projections, the prior and the final 1x1; :mod:`lrbench.bench.measure.floor`)."""
    op_keys = set(op_terms(1, 1, 1, 1, 1, 1))
    return sum(sum(v for term, v in layer.macs.items()
                   if not (layer.kind == "lr" and term in op_keys))
               for layer in network.network_layers(config, case.H, case.W))


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


def pass_macs(forward_macs: float, pass_: str) -> float:
    """Closed-form MACs of one ``pass_`` (:data:`PASS_MACS` times the forward count)."""
    if pass_ not in PASS_MACS:
        raise ValueError(f"pass must be one of {list(PASS_MACS)}, got {pass_!r}")
    return forward_macs * PASS_MACS[pass_]


def op_elements(case: Case) -> tuple[int, int]:
    """``(input elements, output elements)`` of the op: x, query, key, prior; y."""
    s = case.shape
    inputs = s.B * s.C * s.H * s.W + s.B * s.G * s.Ho * s.Wo + s.B * s.G * s.H * s.W + s.G * s.k**2
    return inputs, s.B * s.C * s.Ho * s.Wo


def layer_elements(case: Case) -> tuple[int, int]:
    """x and the layer's parameters (:func:`lrbench.layer.parameter_count`); y."""
    s = case.shape
    params = lr_parameter_count(s.C, kernel_size=s.k, m=s.m)
    return s.B * s.C * s.H * s.W + params, s.B * s.C * s.Ho * s.Wo


def conv3x3_elements(case: Case) -> tuple[int, int]:
    """x and the ``C x C x 3 x 3`` weight; y."""
    s = case.shape
    return s.B * s.C * s.H * s.W + 9 * s.C * s.C, s.B * s.C * s.Ho * s.Wo


def natten_elements(case: Case) -> tuple[int, int]:
    """Query, key and value, ``(B, G heads, H, W, HEAD_DIM)`` each; the output of that shape."""
    from lrbench.bench.peers.natten import HEAD_DIM

    s = case.shape
    one = s.B * s.G * s.H * s.W * HEAD_DIM
    return 3 * one, one


def network_elements(case: Case) -> tuple[int, int] | None:
    """The images and the network's parameters (closed form); the logits. ``None`` when the
    closed-form modules are not there."""
    try:
        network = importlib.import_module("lrbench.complexity.network")
        config = importlib.import_module("lrbench.models.config").CONFIGS[case.target]
    except (ImportError, AttributeError, KeyError):
        return None
    return 3 * case.B * case.H * case.W + network.network_params(config), case.B * NUM_CLASSES


ELEMENTS = {
    "op": op_elements,
    "layer": layer_elements,
    "conv3x3": conv3x3_elements,
    "natten": natten_elements,
    "lrnet50": network_elements,
    "resnet50": network_elements,
}


def case_min_bytes(case: Case) -> int | None:
    """Minimal bytes of the case's pass (module docstring); ``None`` when not known."""
    counted = ELEMENTS[case.target](case) if case.target in ELEMENTS else None
    if counted is None:
        return None
    inputs, output = counted
    reads_and_writes = inputs if case.pass_ == "fwd" else 2 * inputs
    return (reads_and_writes + output) * case.torch_dtype.itemsize
