"""Named benchmark matrices, as plain data.

A preset is a list of *groups*; each group names a target (what is timed, see
:mod:`lrbench.bench.measure.targets`) and the values of every axis: implementations, shapes, dtypes,
devices and passes. :func:`lrbench.bench.matrix.cases.expand` turns a preset (plus command-line
overrides) into the list of cases.

Shapes are those of LR-Net-50 and ResNet-50 at 224x224 input (Hu et al., ICCV 2019,
arXiv:1904.11491, Table 1): the spatial layer of each stage, at batch 8.
"""

from __future__ import annotations

# Every distinct LR layer of LR-Net-50 at 224 input, by name: the stem, each stage's first block
# (strided from res3 on, its input the previous stage's size) and its other blocks; k=7, m=8, and
# batch 8 where the presets time them. tests/test_bench_cases.py checks them against
# lrbench.complexity.network.network_layers.
LRNET50_BATCH, LRNET50_K, LRNET50_M = 8, 7, 8
LRNET50_LAYERS = {
    "stem": {"C": 64, "H": 224, "W": 224, "stride": 2},
    "res2": {"C": 100, "H": 56, "W": 56, "stride": 1},
    "res3.0": {"C": 200, "H": 56, "W": 56, "stride": 2},
    "res3": {"C": 200, "H": 28, "W": 28, "stride": 1},
    "res4.0": {"C": 400, "H": 28, "W": 28, "stride": 2},
    "res4": {"C": 400, "H": 14, "W": 14, "stride": 1},
    "res5.0": {"C": 800, "H": 14, "W": 14, "stride": 2},
    "res5": {"C": 800, "H": 7, "W": 7, "stride": 1},
}
# The k x k layer of each LR-Net-50 stage past its first block (middle widths 100/200/400/800).
LRNET50_STAGES = [{field: LRNET50_LAYERS[name][field] for field in ("C", "H", "W")}
                  for name in ("res2", "res3", "res4", "res5")]
# The 3x3 conv of each ResNet-50 stage (middle widths 64/128/256/512) that the LR layer replaces.
RESNET50_STAGES = [
    {"C": 64, "H": 56, "W": 56},
    {"C": 128, "H": 28, "W": 28},
    {"C": 256, "H": 14, "W": 14},
    {"C": 512, "H": 7, "W": 7},
]
# Contenders; the reference is the oracle, not a contender (it can still be asked for with --impl).
CONTENDERS = ["unfold", "im2col_matmul", "fused_cpu", "fused_triton"]


def _stage_shapes(stages: list[dict], batch: int, k: int = LRNET50_K, m: int = LRNET50_M
                  ) -> list[dict]:
    return [{"B": batch, "stride": 1, **stage, "k": k, "m": m} for stage in stages]


def _op_group(shapes: list[dict]) -> dict:
    """The op alone, every contender, float32, CPU and CUDA, forward and forward+backward."""
    return {"target": "op", "impls": CONTENDERS, "shapes": shapes, "dtypes": ["float32"],
            "devices": ["cpu", "cuda"], "passes": ["fwd", "fwd_bwd"]}


def _peers_groups() -> list[dict]:
    """LR-Net-50's stages: our best fused kernel, eager unfold (the baseline), and the peers."""
    shapes = _stage_shapes(LRNET50_STAGES, batch=LRNET50_BATCH)
    per_device = {"cpu": (["float32"], "fused_cpu"), "cuda": (["float32", "bfloat16"], "fused_triton")}
    groups = []
    for device, (dtypes, fused) in per_device.items():
        common = {"shapes": shapes, "dtypes": dtypes, "devices": [device],
                  "passes": ["fwd", "fwd_bwd"]}
        groups += [
            {"target": "op", "impls": ["unfold", fused], "compile": ["eager"], **common},
            {"target": "op", "impls": ["unfold", "reference", "flex_attention"],
             "compile": ["inductor"], **common},
        ]
    groups.append({"target": "natten", "shapes": shapes, "dtypes": ["float32", "bfloat16"],
                   "devices": ["cuda"], "passes": ["fwd", "fwd_bwd"]})
    groups.append({"target": "conv3x3", "shapes": [{"B": 8, **s, "stride": 1} for s in RESNET50_STAGES],
                   "dtypes": ["float32"], "devices": ["cpu", "cuda"], "passes": ["fwd", "fwd_bwd"]})
    return groups


PRESETS: dict[str, dict] = {
    "quick": {
        "description": "CI smoke matrix on CPU: tiny shapes, every implementation, k and size "
                       "sweeps, the layer and the 3x3 conv (a few minutes on 2 cores)",
        "timing": {"min_rounds": 5, "max_time": 0.1, "passes": 5},
        "groups": [
            {
                "target": "op",
                "impls": "all",
                "shapes": [{"B": 2, "C": 32, "H": 16, "W": 16, "k": k, "m": 8, "stride": 1}
                       for k in (3, 5, 7, 9)]
                + [{"B": 2, "C": 32, "H": size, "W": size, "k": 7, "m": 8, "stride": 1}
                   for size in (8, 24, 32)],
                "dtypes": ["float32"],
                "devices": ["cpu"],
                "passes": ["fwd", "fwd_bwd"],
            },
            {
                "target": "layer",
                "impls": "all",
                "shapes": [{"B": 2, "C": 32, "H": 16, "W": 16, "k": 7, "m": 8, "stride": 1}],
                "dtypes": ["float32"],
                "devices": ["cpu"],
                "passes": ["fwd"],
            },
            {
                "target": "conv3x3",
                "shapes": [{"B": 2, "C": 32, "H": 16, "W": 16, "stride": 1}],
                "dtypes": ["float32"],
                "devices": ["cpu"],
                "passes": ["fwd"],
            },
        ],
    },
    "paper": {
        "description": "LR-Net-50 stage shapes (batch 8, 224 input, k=7, m=8): the op per "
                       "implementation, the layer, and ResNet-50's 3x3 conv at the same stages",
        "timing": {"min_rounds": 5, "max_time": 0.4, "passes": 3},
        "groups": [
            _op_group(_stage_shapes(LRNET50_STAGES, batch=LRNET50_BATCH)),
            {
                "target": "layer",
                "impls": CONTENDERS,
                "shapes": _stage_shapes(LRNET50_STAGES, batch=LRNET50_BATCH),
                "dtypes": ["float32"],
                "devices": ["cpu", "cuda"],
                "passes": ["fwd"],
            },
            {
                "target": "conv3x3",
                "shapes": [{"B": 8, **stage, "stride": 1} for stage in RESNET50_STAGES],
                "dtypes": ["float32"],
                "devices": ["cpu", "cuda"],
                "passes": ["fwd"],
            },
        ],
    },
    "layers": {
        "description": "every LR layer shape of LR-Net-50 (batch 8, 224 input, k=7, m=8): the stem, "
                       "each stage's strided first block and its other blocks; the op per "
                       "implementation, float32, NCHW and channels_last, fwd, bwd and fwd_bwd "
                       "(the report's backward against the forward)",
        "timing": {"min_rounds": 5, "max_time": 0.4, "passes": 3},
        "groups": [
            {"target": "op", "impls": CONTENDERS, "dtypes": ["float32"], "devices": ["cpu", "cuda"],
             "shapes": _stage_shapes(list(LRNET50_LAYERS.values()), batch=LRNET50_BATCH),
             "formats": ["contiguous", "channels_last"], "passes": ["fwd", "bwd", "fwd_bwd"]},
        ],
    },
    "kernel-sweep": {
        "description": "k = 3..11 at LR-Net-50's second stage (B=8, C=200, 28x28, m=8)",
        "timing": {"min_rounds": 5, "max_time": 0.4, "passes": 3},
        "groups": [
            _op_group([{"B": 8, "C": 200, "H": 28, "W": 28, "k": k, "m": 8, "stride": 1}
                       for k in (3, 5, 7, 9, 11)]),
        ],
    },
    "size-sweep": {
        "description": "H = W from 14 to 112 at B=4, C=100, k=7, m=8 (the time-vs-size exponent)",
        "timing": {"min_rounds": 5, "max_time": 0.4, "passes": 3},
        "groups": [
            _op_group([{"B": 4, "C": 100, "H": size, "W": size, "k": 7, "m": 8, "stride": 1}
                       for size in (14, 28, 56, 112)]),
        ],
    },
    "channel-sweep": {
        "description": "C from 32 to 512 at B=8, 28x28, k=7, m=8",
        "timing": {"min_rounds": 5, "max_time": 0.4, "passes": 3},
        "groups": [
            _op_group([{"B": 8, "C": C, "H": 28, "W": 28, "k": 7, "m": 8, "stride": 1}
                       for C in (32, 64, 128, 256, 512)]),
        ],
    },
    "peers": {
        "description": "LR-Net-50 stages (B=8, k=7, m=8) against the peers: fused_cpu/fused_triton "
                       "vs compiled unfold and reference, FlexAttention (compiled), NATTEN (CUDA) "
                       "and the 3x3 conv; float32 (and bfloat16 on CUDA), fwd and fwd_bwd",
        "timing": {"min_rounds": 3, "max_time": 0.4, "passes": 3},
        "groups": _peers_groups(),
    },
    "network": {
        "description": "whole LR-Net-50 (per implementation) and ResNet-50 at 224x224, batch 8: "
                       "forward and one SGD training step",
        "timing": {"min_rounds": 3, "max_time": 2.0},
        "groups": [
            {
                "target": "lrnet50",
                "impls": CONTENDERS,
                "shapes": [{"B": 8, "H": 224, "W": 224}],
                "dtypes": ["float32"],
                "devices": ["cpu", "cuda"],
                "passes": ["fwd", "train"],
            },
            {
                "target": "resnet50",
                "shapes": [{"B": 8, "H": 224, "W": 224}],
                "dtypes": ["float32"],
                "devices": ["cpu", "cuda"],
                "passes": ["fwd", "train"],
            },
        ],
    },
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> dict:
    """The preset called ``name``; an unknown name lists the ones that exist."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {preset_names()}, got {name!r}")
    return PRESETS[name]
