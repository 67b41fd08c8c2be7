"""Complexity of the local relation op, layer and networks: closed forms and counted graphs.

Unit everywhere: one multiply-add = 1 MAC (fvcore's convention); FLOPs = 2 x MACs.
Hu et al., "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.

- :mod:`~lrbench.complexity.op_terms`, :mod:`~lrbench.complexity.layer_terms`: closed forms.
- :mod:`~lrbench.complexity.network`: the closed form summed over a network's layers.
- :mod:`~lrbench.complexity.conventions`, :mod:`~lrbench.complexity.fvcore_count`: fvcore
  counting of traced graphs; :mod:`~lrbench.complexity.torch_counter`: the FlopCounterMode check.
- :mod:`~lrbench.complexity.gaps`: the FLOP-gap variants; :mod:`~lrbench.complexity.verify`:
  ``lrbench verify``.

The fvcore-based modules are imported lazily (fvcore traces with TorchScript and is slow to
import); import them by module path.
"""

from lrbench.complexity.layer_terms import lr_layer_terms, prior_macs, secondary_formula
from lrbench.complexity.op_terms import op_macs, op_terms

__all__ = ["lr_layer_terms", "op_macs", "op_terms", "prior_macs", "secondary_formula"]
