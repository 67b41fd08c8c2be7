"""Complexity of the local relation op, layer and networks: closed forms and counted graphs."""

from lrbench.complexity.op_terms import op_macs, op_terms

__all__ = ["op_macs", "op_terms"]
