"""The bottleneck block and the stems of ResNet and LR-Net (SPEC.md section 3).

Layout as torchvision's ``Bottleneck``: 1x1, BN, ReLU, spatial layer, BN, ReLU, 1x1, BN, residual
add, ReLU; a 1x1 conv + BN projection on the shortcut when the shape changes. LR-Net replaces the
3x3 conv by a ``LocalRelation2d`` (Hu et al., ICCV 2019, arXiv:1904.11491, Table 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lrbench.layer import LocalRelation2d
from lrbench.models.stem import Stem

# spatial(channels, stride) -> the k x k layer of a block (or of the stem)
SpatialFactory = Callable[[int, int], nn.Module]


def conv_spatial(kernel_size: int) -> SpatialFactory:
    """k x k conv, same padding, no bias."""
    def make(channels: int, stride: int) -> nn.Module:
        return nn.Conv2d(channels, channels, kernel_size, stride=stride,
                         padding=kernel_size // 2, bias=False)
    return make


def lr_spatial(kernel_size: int, m: int, phi: str, prior: str, impl: str | None) -> SpatialFactory:
    """k x k ``LocalRelation2d``."""
    def make(channels: int, stride: int) -> nn.Module:
        return LocalRelation2d(channels, kernel_size, stride=stride, m=m, phi=phi, prior=prior,
                               impl=impl)
    return make


class Bottleneck(nn.Module):
    """``in_ch -> mid -> mid -> out_ch`` bottleneck with a residual connection.

    Args:
        in_ch, mid, out_ch: channels.
        stride: 1 or 2; on the spatial layer (``stride_on="spatial"``, "v1.5") or on the first
            1x1 (``"first"``, "v1").
        spatial: factory of the middle layer.
        stride_on: ``"spatial"`` or ``"first"``.

    Shapes: ``(B, in_ch, H, W) -> (B, out_ch, (H-1)//stride + 1, (W-1)//stride + 1)``.
    """

    def __init__(self, in_ch: int, mid: int, out_ch: int, stride: int, spatial: SpatialFactory,
                 stride_on: str = "spatial") -> None:
        super().__init__()
        first_stride = stride if stride_on == "first" else 1
        self.conv1 = nn.Conv2d(in_ch, mid, 1, stride=first_stride, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = spatial(mid, stride // first_stride)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, mid, H', W')
        out = self.relu(self.bn2(self.conv2(out)))  # (B, mid, Ho, Wo)
        out = self.bn3(self.conv3(out))  # (B, out_ch, Ho, Wo)
        out += identity  # in place, as torchvision's Bottleneck: no fresh (B, out_ch, Ho, Wo) tensor
        return self.relu(out)


# A stem is ``conv1`` (the part before the last batch norm), then ``bn1``, ReLU and a 3x3
# stride-2 max pool, as in torchvision's ResNet; only conv7's ``conv1`` is a single conv.
def _stem_conv7(spatial_stem: SpatialFactory) -> list[nn.Module]:
    return [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)]


def _stem_lr7(spatial_stem: SpatialFactory) -> list[nn.Module]:
    return [nn.Conv2d(3, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            spatial_stem(64, 2)]


def _stem_deep(spatial_stem: SpatialFactory) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for c_in, c_out, stride in ((3, 32, 2), (32, 32, 1)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return [*layers, nn.Conv2d(32, 64, 3, padding=1, bias=False)]


STEMS: dict[str, Callable[[SpatialFactory], list[nn.Module]]] = {
    "conv7": _stem_conv7,
    "lr7": _stem_lr7,
    "deep": _stem_deep,
}


def make_stem_conv(kind: str, spatial_stem: SpatialFactory) -> nn.Module:
    """The stem's ``conv1``, ``(B, 3, H, W) -> (B, 64, H/2, W/2)``: one conv (``conv7``, named as
    torchvision's ``conv1``) or a :class:`~lrbench.models.stem.Stem` (an ``nn.Sequential``:
    ``conv1.0``, ``conv1.1``, ... as timm's deep stems, with a fast path for a leading 1x1 conv,
    BN, ReLU); ``bn1``, ReLU and the max pool follow in the network."""
    layers = STEMS[kind](spatial_stem)
    return layers[0] if len(layers) == 1 else Stem(*layers)
