"""The architecture's floor: LR-Net with the op replaced by a free stand-in.

A network case of LR-Net runs a second time, as a ``floor`` row, with every local relation op
(Hu et al., ICCV 2019, arXiv:1904.11491, equation (2)) replaced by :func:`stand_in`: the same
convolutions, batch norms, key/query projections, priors and final 1x1 convolutions, but an op
that costs nothing. No op, however fast, makes the network faster than its floor, and
``(LR-Net - floor) / LR-Net`` is the op's share of the pass.

The floor is not an implementation of the op (it computes something else) and is never in the
op's registry: it is an option of the network targets (:data:`lrbench.bench.matrix.cases.FLOOR`).
"""

from __future__ import annotations

import torch
from torch import nn

from lrbench.layer import set_op


def stand_in(x: torch.Tensor, query: torch.Tensor, key: torch.Tensor, prior: torch.Tensor, *,
             kernel_size: int, stride: int = 1, phi: str = "sqdiff",
             impl: str | None = None) -> torch.Tensor:
    """``x[:, :, ::stride, ::stride]``: the op's output shape ``(B, C, Ho, Wo)`` for free (a view,
    no arithmetic), with a gradient that reaches ``x`` only (query, key and prior get none, so
    their projections' backward does not run either)."""
    return x[:, :, ::stride, ::stride]  # (B, C, Ho, Wo), Ho = (H - 1) // stride + 1


def floor_network(model: nn.Module) -> nn.Module:
    """``model`` with every ``LocalRelation2d`` calling :func:`stand_in` (in place; returned)."""
    if set_op(model, stand_in) == 0:
        raise ValueError("model must contain LocalRelation2d layers to have a floor, "
                         f"got a {type(model).__name__} without any")
    return model
