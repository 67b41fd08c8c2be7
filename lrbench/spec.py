"""Shape bookkeeping and input validation for the local relation op.

The op is defined in Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition",
ICCV 2019 (arXiv:1904.11491); the precise conventions used here are those of SPEC.md section 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PHIS = ("sqdiff", "absdiff", "mult")


@dataclass(frozen=True)
class OpSpec:
    """Everything an implementation needs to know about one call, derived from the inputs.

    Attributes:
        B, C, H, W: batch (may be 0), channels and input size of ``x``.
        G: number of weight maps (groups); channel ``c`` uses map ``c // m``.
        k: odd kernel size; ``r = (k - 1) // 2``.
        stride: output pixel ``(i, j)`` is centred on input pixel ``(i*stride, j*stride)``.
        phi: composability function, one of ``PHIS``.
        device: device type of the inputs (``"cpu"``, ``"cuda"``, ...).
        dtype: common dtype of the inputs.
    """

    B: int
    C: int
    H: int
    W: int
    G: int
    k: int
    stride: int
    phi: str
    device: str
    dtype: torch.dtype

    @property
    def r(self) -> int:
        return (self.k - 1) // 2

    @property
    def m(self) -> int:
        """Channels per weight map: ``ceil(C / G)`` (the last block may be smaller)."""
        return math.ceil(self.C / self.G)

    @property
    def Ho(self) -> int:
        return (self.H - 1) // self.stride + 1

    @property
    def Wo(self) -> int:
        return (self.W - 1) // self.stride + 1

    def label(self) -> str:
        return (
            f"B{self.B}_C{self.C}_G{self.G}_{self.H}x{self.W}_k{self.k}_s{self.stride}_{self.phi}"
        )


def weight_maps(C: int, m: int) -> int:
    """``G = ceil(C / m)``: the number of weight maps of a layer with ``m`` channels per map."""
    return -(-C // m)


def output_size(size: int, stride: int) -> int:
    """Output length along one axis: ``(size - 1) // stride + 1``."""
    return (size - 1) // stride + 1


def check_kernel_stride_phi(kernel_size: object, stride: object, phi: object) -> None:
    """Validate the scalar arguments shared by the op and the layer."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"kernel_size must be an int, got {type(kernel_size).__name__}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd integer >= 1, got {kernel_size}")
    if isinstance(stride, bool) or not isinstance(stride, int):
        raise TypeError(f"stride must be an int, got {type(stride).__name__}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if phi not in PHIS:
        raise ValueError(f"phi must be one of {PHIS}, got {phi!r}")


def check_groups(C: int, G: int) -> None:
    """``G`` weight maps must split ``C`` channels into ``G`` contiguous blocks of ``ceil(C/G)``."""
    if not 1 <= G <= C:
        raise ValueError(f"key/query have G={G} groups; G must be in [1, C={C}]")
    m = math.ceil(C / G)
    if math.ceil(C / m) != G:
        raise ValueError(
            f"key/query have G={G} groups, but C={C} channels in blocks of m=ceil(C/G)={m} "
            f"make {math.ceil(C / m)} blocks; choose G so that ceil(C / ceil(C/G)) == G"
        )


def validate(
    x: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    prior: torch.Tensor,
    kernel_size: int,
    stride: int,
    phi: str,
) -> OpSpec:
    """Check the op's inputs against SPEC section 1 and return their :class:`OpSpec`.

    Raises:
        TypeError: an argument has the wrong type or a non-floating dtype.
        ValueError: shapes, devices, dtypes or scalar arguments do not fit together.
    """
    check_kernel_stride_phi(kernel_size, stride, phi)
    named = {"x": x, "query": query, "key": key, "prior": prior}
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
    expected_dims = {"x": 4, "query": 4, "key": 4, "prior": 3}
    layouts = {"x": "(B, C, H, W)", "query": "(B, G, Ho, Wo)", "key": "(B, G, H, W)",
               "prior": "(G, k, k)"}
    for name, dims in expected_dims.items():
        if named[name].dim() != dims:
            raise ValueError(
                f"{name} must be {dims}-D {layouts[name]}, got shape {tuple(named[name].shape)}"
            )
    for name, t in named.items():
        if t.dtype != x.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but x has {x.dtype}; they must match")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}; they must match")

    B, C, H, W = x.shape
    G = key.shape[1]
    k, s = kernel_size, stride
    Ho, Wo = output_size(H, s), output_size(W, s)
    if key.shape != (B, G, H, W):
        raise ValueError(
            f"key must have shape (B, G, H, W) = ({B}, G, {H}, {W}) to match x, "
            f"got {tuple(key.shape)}"
        )
    if query.shape != (B, G, Ho, Wo):
        raise ValueError(
            f"query must have shape (B, G, Ho, Wo) = ({B}, {G}, {Ho}, {Wo}) for x of size "
            f"{H}x{W} and stride {s}, got {tuple(query.shape)}"
        )
    if prior.shape != (G, k, k):
        raise ValueError(
            f"prior must have shape (G, k, k) = ({G}, {k}, {k}), got {tuple(prior.shape)}"
        )
    if min(C, H, W) < 1:  # B = 0 is allowed: an empty batch gives an empty output
        raise ValueError(f"x must have C, H, W >= 1, got shape {tuple(x.shape)}")
    check_groups(C, G)
    return OpSpec(B=B, C=C, H=H, W=W, G=G, k=k, stride=s, phi=phi,
                  device=x.device.type, dtype=x.dtype)
