"""``LocalRelation2d``: the local relation layer of LR-Net (SPEC.md section 3).

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lrbench import registry
from lrbench.op import local_relation
from lrbench.projections import key_query, projected_relation
from lrbench.spec import check_kernel_stride_phi, weight_maps

PRIORS = ("mlp", "direct", "none")


def offset_grid(k: int) -> torch.Tensor:
    """The fixed ``(2, k, k)`` grid of relative offsets ``(dy / r, dx / r)``; zeros for ``k = 1``."""
    r = (k - 1) // 2
    d = torch.arange(-r, r + 1, dtype=torch.float32) / max(r, 1)  # (k,)
    dy, dx = torch.meshgrid(d, d, indexing="ij")  # (k, k) each
    return torch.stack([dy, dx])  # (2, k, k)


class GeometricPrior(nn.Module):
    """Prior logits ``(G, k, k)`` from the offset grid: Conv1x1(2 -> h), ReLU, Conv1x1(h -> G)."""

    def __init__(self, kernel_size: int, groups: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = groups if hidden is None else hidden
        self.register_buffer("grid", offset_grid(kernel_size), persistent=False)
        self.net = nn.Sequential(
            nn.Conv2d(2, hidden, 1, bias=True),
            nn.ReLU(inplace=False),
            nn.Conv2d(hidden, groups, 1, bias=True),
        )

    def forward(self) -> torch.Tensor:
        return self.net(self.grid.unsqueeze(0)).squeeze(0)  # (G, k, k)


class LocalRelation2d(nn.Module):
    """Local relation layer: keys and queries by 1x1 convs, geometric prior, op, final 1x1.

    Args:
        channels: ``C``, input and output channels.
        kernel_size: odd neighbourhood size ``k``.
        stride: output stride; the query projection is strided, keys and values are not.
        m: channels sharing one weight map; ``G = ceil(C / m)`` maps.
        phi: composability, ``"sqdiff"``, ``"absdiff"`` or ``"mult"``.
        prior: ``"mlp"`` (the paper's small network), ``"direct"`` (learned ``(G, k, k)`` values,
            the paper's G* variant) or ``"none"``.
        impl: implementation name or ``None`` for the fastest usable one; not part of the state dict.

    Attribute ``fast`` (default ``True``, not in the state dict): keys and queries by
    :func:`lrbench.projections.key_query` (one 1x1 conv for both at stride 1, the strided query
    from the subsampled input in NCHW, a backward by matrix products that writes the input's
    gradient once in its memory format). Same values and gradients; ``False``
    (and any ``torch.jit`` trace, so that counters see each projection module) calls ``key`` and
    ``query`` themselves.

    Shapes: ``(B, C, H, W) -> (B, C, (H-1)//stride + 1, (W-1)//stride + 1)``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        stride: int = 1,
        m: int = 8,
        phi: str = "sqdiff",
        prior: str = "mlp",
        impl: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"m must be a positive int, got {m!r}")
        check_kernel_stride_phi(kernel_size, stride, phi)
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if impl is not None:
            registry.get(impl)
        C, G = channels, weight_maps(channels, m)
        self.channels, self.groups = C, G
        self.kernel_size, self.stride, self.m = kernel_size, stride, m
        self.phi, self.prior_kind, self.impl = phi, prior, impl

        self.key = nn.Conv2d(C, G, 1, bias=False)
        self.query = nn.Conv2d(C, G, 1, stride=stride, bias=False)
        if prior == "mlp":
            self.prior = GeometricPrior(kernel_size, G)
        elif prior == "direct":
            self.prior = nn.Parameter(torch.zeros(G, kernel_size, kernel_size))
        else:
            self.register_buffer("prior", torch.zeros(G, kernel_size, kernel_size),
                                 persistent=False)
        self.final = nn.Conv2d(C, C, 1, bias=False)

    def prior_logits(self) -> torch.Tensor:
        """The ``(G, k, k)`` prior passed to the op."""
        return self.prior() if isinstance(self.prior, GeometricPrior) else self.prior

    fast = True
    # The op the layer calls, with local_relation's arguments. The benchmark's floor swaps in a
    # free stand-in (lrbench.bench.measure.floor) and the profiler a labelled wrapper, per
    # instance (set_op); neither is an implementation of the op, nor part of the state dict.
    op: Callable[..., torch.Tensor] = staticmethod(local_relation)

    def key_query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(key, query)``: ``(B, G, H, W)`` and ``(B, G, Ho, Wo)``, the fast way when on."""
        if not self.fast or torch.jit.is_tracing():
            return self.key(x), self.query(x)
        return key_query(x, self.key.weight, self.query.weight, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prior = self.prior_logits().to(x.dtype)  # (G, k, k)
        args = dict(kernel_size=self.kernel_size, stride=self.stride, phi=self.phi, impl=self.impl)
        if self.fast and not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            y = projected_relation(x, self.key.weight, self.query.weight, prior, self.op, **args)
        else:
            key, query = self.key_query(x)  # (B, G, H, W), (B, G, Ho, Wo)
            y = self.op(x, query, key, prior, **args)  # (B, C, Ho, Wo)
        return self.final(y)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"m={self.m}, groups={self.groups}, phi={self.phi!r}, prior={self.prior_kind!r}, "
                f"impl={self.impl!r}")


def parameter_count(channels: int, kernel_size: int = 7, m: int = 8, prior: str = "mlp") -> int:
    """Closed-form parameter count of one layer (SPEC section 3).

    keys and queries ``2*C*G``; final 1x1 ``C^2``; prior ``"mlp"`` with ``h = G``:
    ``(2*h + h) + (h*G + G)``; ``"direct"``: ``G*k^2``; ``"none"``: 0.
    """
    C, G, k = channels, weight_maps(channels, m), kernel_size
    prior_params = {"mlp": 3 * G + G * G + G, "direct": G * k * k, "none": 0}[prior]
    return 2 * C * G + C * C + prior_params


def set_implementation(model: nn.Module, name: str | None) -> int:
    """Switch every ``LocalRelation2d`` in ``model`` to implementation ``name``; returns how many."""
    if name is not None:
        registry.get(name)
    layers = [mod for mod in model.modules() if isinstance(mod, LocalRelation2d)]
    for layer in layers:
        layer.impl = name
    return len(layers)


def set_op(model: nn.Module, op: Callable[..., torch.Tensor] | None) -> int:
    """Make every ``LocalRelation2d`` in ``model`` call ``op`` (``local_relation``'s signature)
    instead of :func:`lrbench.local_relation`; ``None`` restores the op. Returns how many."""
    layers = [mod for mod in model.modules() if isinstance(mod, LocalRelation2d)]
    for layer in layers:
        if op is None:
            layer.__dict__.pop("op", None)
        else:
            layer.op = op
    return len(layers)
