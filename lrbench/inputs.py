"""Problem shapes and fresh random inputs for the op, shared by the tests, the checks and the benchmark."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from lrbench.spec import OpSpec, check_groups, check_kernel_stride_phi, output_size, weight_maps


@dataclass(frozen=True)
class Shape:
    """One problem size of the op. ``G = ceil(C / m)`` weight maps, as in ``LocalRelation2d``."""

    B: int
    C: int
    H: int
    W: int
    k: int = 7
    m: int = 8
    stride: int = 1

    def __post_init__(self) -> None:
        for name in ("B", "C", "H", "W", "m"):
            value, least = getattr(self, name), 0 if name == "B" else 1  # an empty batch is valid
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        check_kernel_stride_phi(self.k, self.stride, "sqdiff")
        check_groups(self.C, self.G)

    @property
    def G(self) -> int:
        return weight_maps(self.C, self.m)

    @property
    def Ho(self) -> int:
        return output_size(self.H, self.stride)

    @property
    def Wo(self) -> int:
        return output_size(self.W, self.stride)

    def label(self) -> str:
        return f"B{self.B}-C{self.C}-{self.H}x{self.W}-k{self.k}-m{self.m}-s{self.stride}"

    def spec(self, *, phi: str = "sqdiff", dtype: torch.dtype = torch.float32,
             device: str = "cpu") -> OpSpec:
        """The :class:`OpSpec` of a call on inputs of this shape."""
        return OpSpec(B=self.B, C=self.C, H=self.H, W=self.W, G=self.G, k=self.k,
                      stride=self.stride, phi=phi, device=device, dtype=dtype)


LAYOUTS = ("contiguous", "channels_last", "noncontiguous")


def to_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``t`` in another memory layout.

    ``"channels_last"`` applies to 4-D tensors (others stay contiguous); ``"noncontiguous"``
    gives a strided view into a buffer twice as wide along the last axis.
    """
    if layout == "contiguous":
        return t.contiguous()
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
    if layout == "noncontiguous":
        wide = torch.stack([t, torch.zeros_like(t)], dim=-1)  # (..., n, 2)
        return wide.flatten(-2)[..., ::2]  # (..., n), stride 2 on the last axis
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


@dataclass(frozen=True)
class Inputs:
    """The op's four input tensors, in the op's order, with the :class:`Shape` they were made for.

    ``local_relation(*inputs, kernel_size=inputs.shape.k, stride=inputs.shape.stride)``; unpack
    with ``x, query, key, prior = inputs``; change one with ``inputs.replace(x=...)``.

    Attributes:
        x: values, ``(B, C, H, W)``.
        query: ``(B, G, Ho, Wo)``.
        key: ``(B, G, H, W)``.
        prior: ``(G, k, k)``.
        shape: the problem size (k, m and stride included).
    """

    x: torch.Tensor
    query: torch.Tensor
    key: torch.Tensor
    prior: torch.Tensor
    shape: Shape

    NAMES = ("x", "query", "key", "prior")  # the op's argument order

    def args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, query, key, prior)``."""
        return self.x, self.query, self.key, self.prior

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.args())

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, tensor)`` pairs in the op's order (to name an error or a gradient)."""
        return zip(self.NAMES, self.args(), strict=True)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Inputs:
        """The same record with ``fn`` applied to each tensor (``.to("meta")``, a cast, a layout)."""
        return dataclasses.replace(self, **{name: fn(t) for name, t in self.items()})

    def replace(self, **tensors: torch.Tensor) -> Inputs:
        """The same record with some tensors replaced: ``inputs.replace(x=torch.ones_like(x))``."""
        return dataclasses.replace(self, **tensors)


def make_inputs(
    shape: Shape,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    requires_grad: bool = False,
) -> Inputs:
    """Fresh standard-normal ``x``, ``query``, ``key`` and ``prior`` for ``shape``.

    Generated in float64 on the CPU from ``seed`` and then cast, so that every dtype and device
    sees the same values (up to rounding) and a float64 reference can be computed from them.
    """
    gen = torch.Generator().manual_seed(seed)
    B, C, H, W, G, k = shape.B, shape.C, shape.H, shape.W, shape.G, shape.k
    sizes = {
        "x": (B, C, H, W),
        "query": (B, G, shape.Ho, shape.Wo),
        "key": (B, G, H, W),
        "prior": (G, k, k),
    }
    tensors = {
        name: torch.randn(size, generator=gen, dtype=torch.float64)
        .to(device=device, dtype=dtype)
        .requires_grad_(requires_grad)
        for name, size in sizes.items()
    }
    return Inputs(**tensors, shape=shape)
