"""lrbench: benchmark and complexity verification of the local relation layer of LR-Net.

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.

``import lrbench`` imports nothing heavy: each public name is loaded from its module on first use
(PEP 562), so the command line starts without torch.
"""

from __future__ import annotations

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("lrbench")  # the one version string is pyproject.toml's
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# public name -> (module, attribute in it); attribute None: the module itself
_PUBLIC = {
    "Implementation": ("lrbench.registry", "Implementation"),
    "Inputs": ("lrbench.inputs", "Inputs"),
    "LocalRelation2d": ("lrbench.layer", "LocalRelation2d"),
    "Loosening": ("lrbench.accuracy.limits", "Loosening"),
    "Shape": ("lrbench.inputs", "Shape"),
    "get_implementation": ("lrbench.registry", "get"),
    "implementations": ("lrbench.registry", "implementations"),
    "load_plugin": ("lrbench.registry", "load_plugin"),
    "local_relation": ("lrbench.op", "local_relation"),
    "make_inputs": ("lrbench.inputs", "make_inputs"),
    "register": ("lrbench.registry", "register"),
    "set_implementation": ("lrbench.layer", "set_implementation"),
    "unregister": ("lrbench.registry", "unregister"),
    "models": ("lrbench.models", None),
    "registry": ("lrbench.registry", None),
    "complexity": ("lrbench.complexity", None),
}

__all__ = [
    "Implementation",
    "Inputs",
    "LocalRelation2d",
    "Loosening",
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


def __getattr__(name: str):
    try:
        module, attr = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'lrbench' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

