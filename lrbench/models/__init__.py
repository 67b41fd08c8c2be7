"""ResNet and LR-Net networks (SPEC.md section 3).

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.

>>> from lrbench.models import lrnet50, describe, CONFIGS
>>> print(describe(CONFIGS["lrnet50"]))  # the paper's Table 1 layout
"""

from lrbench.models.config import CONFIGS, NetConfig, lrnet_config, resnet_config
from lrbench.models.network import BottleneckNet, parameter_count, set_fast_path
from lrbench.models.stages import describe, stage_rows
from lrbench.models.zoo import (
    NETWORKS,
    build,
    lrnet26,
    lrnet50,
    lrnet101,
    resnet26,
    resnet50,
    resnet101,
)

__all__ = [
    "CONFIGS",
    "NETWORKS",
    "BottleneckNet",
    "NetConfig",
    "build",
    "describe",
    "lrnet26",
    "lrnet50",
    "lrnet101",
    "lrnet_config",
    "parameter_count",
    "resnet26",
    "resnet50",
    "resnet101",
    "resnet_config",
    "set_fast_path",
    "stage_rows",
]
