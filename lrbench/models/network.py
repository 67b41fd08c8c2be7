"""``BottleneckNet``: a ResNet or LR-Net built from a :class:`NetConfig` (SPEC.md section 3).

Module names are torchvision's ResNet's (``conv1``, ``bn1``, ``relu``, ``maxpool``,
``layer1..layer4`` of ``Bottleneck`` blocks, ``avgpool``, ``fc``), so torchvision's ResNet-50/101
state dicts load unchanged. LR-Net's stem keeps the names: its 1x1 conv, BN, ReLU and 7x7 LR layer
form ``conv1`` (``conv1.0`` .. ``conv1.3``), followed by ``bn1``, ``relu``, ``maxpool``.
"""

from __future__ import annotations

import torch
from torch import nn

from lrbench.models.blocks import Bottleneck, conv_spatial, lr_spatial, make_stem_conv
from lrbench.models.config import STAGE_STRIDES, NetConfig


class BottleneckNet(nn.Module):
    """Stem, four stages of bottleneck blocks, global average pool, fc.

    Args:
        config: the architecture.
        phi, prior, impl: passed to every ``LocalRelation2d`` (LR configurations only).

    Shapes: ``(B, 3, H, W) -> (B, num_classes)``.
    """

    def __init__(self, config: NetConfig, phi: str = "sqdiff", prior: str = "mlp",
                 impl: str | None = None) -> None:
        super().__init__()
        self.config = config
        lr = {"m": config.m, "phi": phi, "prior": prior, "impl": impl}
        if config.spatial == "lr":
            spatial = lr_spatial(config.kernel_size, **lr)
        else:
            spatial = conv_spatial(config.kernel_size)
        self.conv1 = make_stem_conv(config.stem, lr_spatial(config.stem_kernel_size, **lr))
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for i, (n, mid, out, stride) in enumerate(
            zip(config.blocks, config.widths, config.out_widths, STAGE_STRIDES, strict=True)
        ):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(in_ch, mid, out, stride if j == 0 else 1, spatial,
                                         config.stride_on))
                in_ch = out
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H/2, W/2)
        x = self.maxpool(x)  # (B, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 2048, H/32, W/32)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, num_classes)


def parameter_count(model: nn.Module) -> int:
    """Number of learnable parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
