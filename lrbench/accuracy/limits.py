"""The accuracy gate's limits: owned by the suite, per dtype, from epsilon and reduction length.

Every value the gate compares (the output ``y`` and the gradients of ``x``, ``query``, ``key`` and
``prior``) is a sum. Its error against the float64 reference comes from rounding the inputs to
the dtype and from rounding while summing; both add one error of order ``eps * |term|`` per term,
with signs that do not line up, so the error of a sum of ``n`` terms grows like ``sqrt(n)``
(Higham and Mary, "A New Approach to Probabilistic Rounding Error Analysis", SIAM J. Sci. Comput.
41(5), 2019: ``|error| <= lambda * sqrt(n) * u`` per unit term with probability at least
``1 - 2 exp(-lambda**2 / 2)``). The gate's inputs and incoming gradient are standard normal
(:func:`lrbench.inputs.make_inputs`), so a product of two of them is of order one; a gradient
that flows through a logit is of order ``sqrt(m)`` per term (the logit's gradient is a difference
of two sums over the group's ``m`` channels, each of order ``sqrt(m)``). The limit of one element
is::

    |got - ref| <= atol + rtol * |ref|,   atol = ATOL_SCALE * eps * sqrt(n) * s,   rtol = RTOL_SCALE * eps

with ``eps = torch.finfo(dtype).eps``, ``n`` (:func:`reduction_length`) and the size ``s`` of one
term (:func:`term_size`: 1 for ``y`` and ``grad x``, ``sqrt(m)`` for the gradients of query, key and
prior):

=========  ================  ====================================================================
value      n                 why
=========  ================  ====================================================================
y          k*k               a softmax-weighted sum over the k*k neighbours
grad x     k*k               each input pixel is a neighbour of at most k*k output pixels
grad query 2*k*k*m           k*k neighbours, each logit's gradient ``w_n (g.x_n - g.y)`` the
                             difference of two sums over the group's m channels
grad key   2*k*k*m           at most k*k output pixels, each through such a logit gradient
grad prior 2*B*Ho*Wo*m       every output pixel of every image, each through such a logit gradient
=========  ================  ====================================================================

The same limits hold for every implementation. One may declare a looser limit for a dtype, with
its reason, up to :data:`CEILING` times the suite's (:class:`Loosening`); ``register`` refuses
more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

ATOL_SCALE = 8.0  # lambda: 4 standard deviations, doubled for terms above one (see the docs)
RTOL_SCALE = 4.0  # the result's own rounding to the dtype (eps / 2) and its last few operations
CEILING = 4.0  # the most an implementation may loosen the suite's limits by
VALUES = ("y", "x", "query", "key", "prior")  # the output, then the gradients in the op's order
SOURCES = ("suite", "implementation")


@dataclass(frozen=True)
class Loosening:
    """An implementation's looser limits for one dtype: factors over the suite's, with the reason.

    Attributes:
        reason: why the suite's limits do not hold for it (shown by ``lrbench list`` and reports).
        forward: factor on the output's ``atol`` and ``rtol`` (1 to :data:`CEILING`).
        backward: factor on the four gradients' ``atol`` and ``rtol`` (1 to :data:`CEILING`).
    """

    reason: str
    forward: float = 1.0
    backward: float = 1.0

    def factor(self, value: str) -> float:
        return self.forward if value == "y" else self.backward


@dataclass(frozen=True)
class Limit:
    """The limit one compared value is held to: ``|got - ref| <= atol + rtol * |ref|``."""

    atol: float
    rtol: float
    source: str  # "suite" or "implementation" (a declared loosening applied)

    def bound(self, ref: torch.Tensor) -> torch.Tensor:
        """The elementwise limit ``atol + rtol * |ref|``."""
        return self.atol + self.rtol * ref.abs()


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon of ``dtype`` (the spacing of its numbers just above 1)."""
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    return torch.finfo(dtype).eps


def reduction_length(value: str, *, k: int, m: int, pixels: int) -> int:
    """How many terms of order one are summed into one element of ``value`` (table above);
    ``pixels``: the output pixels whose gradient flows back (``B*Ho*Wo`` for a whole case)."""
    lengths = {"y": k * k, "x": k * k, "query": 2 * k * k * m, "key": 2 * k * k * m,
               "prior": 2 * pixels * m}
    if value not in lengths:
        raise ValueError(f"value must be one of {list(lengths)}, got {value!r}")
    return max(1, lengths[value])


def term_size(value: str, *, m: int) -> float:
    """The order of one term summed into ``value`` (see the module docstring)."""
    if value not in VALUES:
        raise ValueError(f"value must be one of {list(VALUES)}, got {value!r}")
    return math.sqrt(max(1, m)) if value in ("query", "key", "prior") else 1.0


def suite_limit(dtype: torch.dtype, n: int, size: float = 1.0) -> Limit:
    """The suite's limit for a value of ``dtype`` that sums ``n`` terms of order ``size``."""
    e = eps(dtype)
    return Limit(atol=ATOL_SCALE * e * math.sqrt(max(1, n)) * size, rtol=RTOL_SCALE * e,
                 source="suite")


def loosened(limit: Limit, factor: float) -> Limit:
    """``limit`` times a declared factor (a factor of 1 keeps the suite as its source)."""
    if factor == 1:
        return limit
    return Limit(atol=limit.atol * factor, rtol=limit.rtol * factor, source="implementation")


def check_loosenings(name: str, loosenings: object) -> None:
    """Refuse declared loosenings that are not :class:`Loosening` with a reason within the ceiling.

    Raises:
        ValueError: naming the implementation, the dtype and the ceiling.
    """
    if not isinstance(loosenings, Mapping):
        raise ValueError(f"implementation {name!r}: loosened must map a dtype to a Loosening, "
                         f"got {type(loosenings).__name__}")
    for dtype, loose in loosenings.items():
        where = f"implementation {name!r}, dtype {str(dtype).removeprefix('torch.')}"
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"{where}: loosened keys must be floating-point torch dtypes")
        if not isinstance(loose, Loosening):
            raise ValueError(f"{where}: expected a Loosening(reason, forward, backward), got "
                             f"{type(loose).__name__}")
        if not loose.reason.strip():
            raise ValueError(f"{where}: a looser limit needs a stated reason")
        for pass_, factor in (("forward", loose.forward), ("backward", loose.backward)):
            if not (isinstance(factor, int | float) and 1 <= factor <= CEILING):
                raise ValueError(f"{where}: {pass_} factor {factor!r} is outside [1, {CEILING:g}]: "
                                 f"an implementation may loosen the suite's limits by at most "
                                 f"{CEILING:g}x (the ceiling)")



NETWORK_DEPTH = 50  # LR-Net-50's layers in sequence


def network_limit(dtype: torch.dtype, logits: torch.Tensor, depth: int = NETWORK_DEPTH) -> Limit:
    """The suite's limit for a whole network's logits against the same network in float64.

    ``atol = ATOL_SCALE * eps * sqrt(depth) * max|logits|``: each of ``depth`` layers in sequence
    passes on its activations with a relative error of order ``eps`` (batch norm keeps them of
    order one), independent from layer to layer, so the logits' error grows like ``sqrt(depth)``
    relative to their scale.
    """
    scale = logits.abs().max().item() if logits.numel() else 0.0
    return Limit(atol=ATOL_SCALE * eps(dtype) * math.sqrt(depth) * scale, rtol=0.0, source="suite")
