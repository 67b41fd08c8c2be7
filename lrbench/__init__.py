"""lrbench: benchmark and complexity verification of the local relation layer of LR-Net.

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
"""

from lrbench.inputs import Inputs, Shape, make_inputs
from lrbench.layer import LocalRelation2d, set_implementation
from lrbench.op import local_relation
from lrbench.registry import Implementation, implementations, load_plugin, register, unregister
from lrbench.registry import get as get_implementation

__all__ = [
    "Implementation",
    "Inputs",
    "LocalRelation2d",
    "Shape",
    "get_implementation",
    "implementations",
    "load_plugin",
    "local_relation",
    "make_inputs",
    "register",
    "set_implementation",
    "unregister",
]
__version__ = "0.1.0"
