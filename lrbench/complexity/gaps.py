"""Why ResNet-50 counts ~4.09 G multiply-adds and the paper says 4.3 G: counted variants.

Unit: one multiply-add = 1 MAC; the paper's "FLOPs" are compared as MACs (the convention of
ResNet's 3.8/4.1 "GFLOPs" and of the LR-Net paper's table, Hu et al., arXiv:1904.11491). Each
variant is one plausible counting convention or architecture detail, counted from the closed
form; nothing is fitted to the paper's numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lrbench.complexity.network import LayerCount, network_layers
from lrbench.models.config import CONFIGS, NetConfig

# The paper's GFLOPs at 224x224 (Table 1 / Table 3).
PAPER_GFLOPS = {"resnet50": 4.3, "lrnet50": 4.3, "lrnet26": 2.6}
# The paper prints one decimal: a count within half a unit of the last digit matches it.
PAPER_ROUNDING = 0.05


def _macs(layers: list[LayerCount], kinds: dict[str, int] | None = None,
          drop_terms: tuple[str, ...] = ()) -> int:
    """Closed-form MACs plus ``kinds[kind]`` per element of the elementwise layers of that kind."""
    kinds = kinds or {}
    total = sum(v for layer in layers for term, v in layer.macs.items() if term not in drop_terms)
    return total + sum(kinds.get(layer.kind, 0) * layer.elements for layer in layers)


ALL_ELEMENTWISE = {"bn": 1, "relu": 1, "add": 1, "maxpool": 9, "avgpool": 1}


@dataclass(frozen=True)
class Variant:
    """A counting variant: a description and ``count(config) -> MACs``."""

    name: str
    description: str
    count: Callable[[NetConfig], int]
    changes_architecture: bool = False


VARIANTS = [
    Variant("conv+fc (as specified)",
            "conv, fc and LR-layer terms; v1.5 stride; BN/ReLU/pool/add zero",
            lambda c: _macs(network_layers(c))),
    Variant("+ batch norm",
            "plus one MAC per batch-norm output element (scale and shift as one multiply-add)",
            lambda c: _macs(network_layers(c), {"bn": 1})),
    Variant("+ all elementwise",
            "plus BN, ReLU, residual add, avg pool (1 per element) and max pool (9 per output)",
            lambda c: _macs(network_layers(c), ALL_ELEMENTWISE)),
    Variant("v1 stride",
            "stride on the first 1x1 of each stage's first block (original ResNet v1)",
            lambda c: _macs(network_layers(c.with_(stride_on="first"))), True),
    Variant("deep stem",
            "three 3x3 convs (32, 32, 64) instead of the stem's spatial layer",
            lambda c: _macs(network_layers(c.with_(stem="deep"))), True),
    Variant("LR without elementwise terms",
            "LR layers without composability and softmax (only their matrix-type terms)",
            lambda c: _macs(network_layers(c), drop_terms=("composability", "softmax"))),
    Variant("+ BN, v1 stride",
            "v1 stride placement and one MAC per batch-norm element",
            lambda c: _macs(network_layers(c.with_(stride_on="first")), {"bn": 1}), True),
]


def gap_rows(networks: tuple[str, ...] = tuple(PAPER_GFLOPS)) -> list[dict]:
    """One row per (network, variant): GMACs, the paper's GFLOPs and the relative gap."""
    rows = []
    for name in networks:
        config, paper = CONFIGS[name], PAPER_GFLOPS[name]
        for v in VARIANTS:
            macs = v.count(config)
            rows.append({"network": name, "variant": v.name, "GMACs": macs / 1e9,
                         "paper GFLOPs": paper, "gap %": 100 * (macs / 1e9 - paper) / paper,
                         "within paper rounding": abs(macs / 1e9 - paper) < PAPER_ROUNDING,
                         "changes architecture": v.changes_architecture,
                         "description": v.description})
    return rows


def best_variants(rows: list[dict], architecture_as_specified: bool = False) -> dict[str, dict]:
    """Per network, the variant whose count is nearest the paper's.

    ``architecture_as_specified``: only the counting conventions, not the variants that change
    the network (stride placement, stem).
    """
    best: dict[str, dict] = {}
    for row in rows:
        if architecture_as_specified and row["changes architecture"]:
            continue
        current = best.get(row["network"])
        if current is None or abs(row["gap %"]) < abs(current["gap %"]):
            best[row["network"]] = row
    return best
