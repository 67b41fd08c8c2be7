"""lrbench: benchmark and complexity verification of the local relation layer of LR-Net.

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
"""

from lrbench.inputs import Shape, make_inputs
from lrbench.layer import LocalRelation2d, set_implementation
from lrbench.op import local_relation
from lrbench.registry import get as get_implementation
from lrbench.registry import implementations

__all__ = [
    "LocalRelation2d",
    "Shape",
    "get_implementation",
    "implementations",
    "local_relation",
    "make_inputs",
    "set_implementation",
]
__version__ = "0.1.0"
