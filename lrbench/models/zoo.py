"""The named networks: ``resnet26/50/101`` and ``lrnet26/50/101`` (SPEC.md section 3).

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
"""

from __future__ import annotations

from lrbench.models.config import lrnet_config, resnet_config
from lrbench.models.network import BottleneckNet


def resnet26() -> BottleneckNet:
    return BottleneckNet(resnet_config(26))


def resnet50() -> BottleneckNet:
    """ResNet-50 v1.5, torchvision's layout: exactly 25,557,032 parameters."""
    return BottleneckNet(resnet_config(50))


def resnet101() -> BottleneckNet:
    return BottleneckNet(resnet_config(101))


def lrnet26(kernel_size: int = 7, m: int = 8, phi: str = "sqdiff", prior: str = "mlp",
            impl: str | None = None) -> BottleneckNet:
    return BottleneckNet(lrnet_config(26, kernel_size, m), phi=phi, prior=prior, impl=impl)


def lrnet50(kernel_size: int = 7, m: int = 8, phi: str = "sqdiff", prior: str = "mlp",
            impl: str | None = None) -> BottleneckNet:
    """LR-Net-50 (paper Table 1: 7x7, m=8; 23.3M parameters)."""
    return BottleneckNet(lrnet_config(50, kernel_size, m), phi=phi, prior=prior, impl=impl)


def lrnet101(kernel_size: int = 7, m: int = 8, phi: str = "sqdiff", prior: str = "mlp",
             impl: str | None = None) -> BottleneckNet:
    return BottleneckNet(lrnet_config(101, kernel_size, m), phi=phi, prior=prior, impl=impl)


NETWORKS = {
    "resnet26": resnet26, "resnet50": resnet50, "resnet101": resnet101,
    "lrnet26": lrnet26, "lrnet50": lrnet50, "lrnet101": lrnet101,
}


def build(name: str, **kwargs) -> BottleneckNet:
    """The network called ``name`` (one of ``NETWORKS``); kwargs go to the LR-Net builders."""
    if name not in NETWORKS:
        raise ValueError(f"name must be one of {list(NETWORKS)}, got {name!r}")
    return NETWORKS[name](**kwargs)
