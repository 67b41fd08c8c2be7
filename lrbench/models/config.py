"""Network configurations of ResNet and LR-Net (SPEC.md section 3), as plain dataclasses.

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491,
Table 1 (LR-Net-50 beside ResNet-50). The same :class:`NetConfig` builds the ``nn.Module``
(:mod:`lrbench.models.network`) and the closed-form layer list (:mod:`lrbench.complexity.network`),
so the two can be checked against each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SPATIAL_KINDS = ("conv", "lr")
# "conv7": 7x7 conv 64 s2 (ResNet); "lr7": 1x1 conv 3->64, 7x7 LR 64 s2 (LR-Net);
# "deep": three 3x3 convs 32, 32, 64, the first with stride 2 (the "ResNet-C" stem, used by the
# FLOP-gap analysis only as a plausible alternative stem).
STEM_KINDS = ("conv7", "lr7", "deep")
# "spatial": stride on the k x k layer of a stage's first block (torchvision's "v1.5");
# "first": stride on the first 1x1 (the original "v1" of He et al. 2016).
STRIDE_ON = ("spatial", "first")
BLOCKS = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
OUT_WIDTHS = (256, 512, 1024, 2048)
STAGE_STRIDES = (1, 2, 2, 2)


@dataclass(frozen=True)
class NetConfig:
    """One bottleneck network: stem, four stages of blocks, global pool, fc.

    Attributes:
        name: e.g. ``"lrnet50"``.
        blocks: bottleneck blocks per stage (res2..res5).
        widths: middle widths per stage (the channels of the spatial layer).
        spatial: ``"conv"`` (3x3 conv) or ``"lr"`` (``LocalRelation2d``) for the middle layer.
        kernel_size: spatial kernel size of the middle layers (3 for conv, 7 for LR).
        stem: one of ``STEM_KINDS``.
        stride_on: one of ``STRIDE_ON``.
        m: channels per LR weight map (LR layers only).
        stem_kernel_size: kernel size of the stem's spatial layer (7).
        out_widths: output channels of each stage's blocks.
        num_classes: fc outputs.
    """

    name: str
    blocks: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    spatial: str
    kernel_size: int
    stem: str
    stride_on: str = "spatial"
    m: int = 8
    stem_kernel_size: int = 7
    out_widths: tuple[int, int, int, int] = OUT_WIDTHS
    num_classes: int = 1000

    def __post_init__(self) -> None:
        choices = {"spatial": SPATIAL_KINDS, "stem": STEM_KINDS, "stride_on": STRIDE_ON}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("blocks", "widths", "out_widths"):
            value = getattr(self, name)
            if len(value) != 4 or any(not isinstance(v, int) or v < 1 for v in value):
                raise ValueError(f"{name} must be four positive ints, got {value!r}")

    def with_(self, **changes) -> NetConfig:
        """A copy with some fields changed (the FLOP-gap variants, the tests' modified networks)."""
        return replace(self, **changes)


def resnet_config(depth: int) -> NetConfig:
    """ResNet-26/50/101 "v1.5": 7x7 conv stem, 3x3 convs of widths 64/128/256/512."""
    return NetConfig(name=f"resnet{depth}", blocks=_blocks(depth), widths=(64, 128, 256, 512),
                     spatial="conv", kernel_size=3, stem="conv7")


def lrnet_config(depth: int, kernel_size: int = 7, m: int = 8) -> NetConfig:
    """LR-Net-26/50/101: LR stem, k x k LR layers of widths 100/200/400/800 (paper Table 1)."""
    return NetConfig(name=f"lrnet{depth}", blocks=_blocks(depth), widths=(100, 200, 400, 800),
                     spatial="lr", kernel_size=kernel_size, stem="lr7", m=m)


def _blocks(depth: int) -> tuple[int, int, int, int]:
    if depth not in BLOCKS:
        raise ValueError(f"depth must be one of {sorted(BLOCKS)}, got {depth!r}")
    return BLOCKS[depth]


# Named presets, the paper's rows among them.
CONFIGS: dict[str, NetConfig] = {
    **{f"resnet{d}": resnet_config(d) for d in BLOCKS},
    **{f"lrnet{d}": lrnet_config(d) for d in BLOCKS},
}
