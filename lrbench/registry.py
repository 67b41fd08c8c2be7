"""The registry of implementations of the local relation op.

A plain dict from name to :class:`Implementation`. Each implementation states what it
supports (devices, dtypes, limits) and answers *why not* as a list of reasons, so that the
op, the tests and the benchmark can all ask the same question and report the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from lrbench.spec import OpSpec

# fn(x, query, key, prior, kernel_size, stride, phi) -> y
OpFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, int, str],
                torch.Tensor]

# (atol, rtol) against the float64 reference, per input dtype. Half precision is loose because
# the inputs themselves are rounded to 8 (bf16) or 11 (fp16) significant bits.
DEFAULT_TOLERANCES: Mapping[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-9, 1e-7),
    torch.float32: (5e-5, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (6e-2, 5e-2),
}


def _always_available() -> str | None:
    return None


def _no_limits(spec: OpSpec) -> list[str]:
    return []


@dataclass(frozen=True)
class Implementation:
    """One way of computing the op, with what it supports.

    Attributes:
        name: registry key, e.g. ``"unfold"``.
        fn: ``fn(x, query, key, prior, kernel_size, stride, phi) -> y``; differentiable.
        summary: one line for ``lrbench list``.
        devices: device types it runs on (``"cpu"``, ``"cuda"``).
        dtypes: input dtypes it accepts.
        priority: ``impl=None`` picks the usable implementation with the highest priority.
        tolerances: per-dtype ``(atol, rtol)`` against the float64 reference.
        availability: returns why it cannot run on this machine at all, or ``None``.
        limits: returns extra reasons it cannot run a given call (e.g. unsupported stride).
        custom_ops: names of the ``torch.library`` operators it emits (``"lrbench::fused_cpu"``),
            so the FLOP counters can give them the op's closed-form count.
    """

    name: str
    fn: OpFn
    summary: str
    devices: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    priority: int = 0
    tolerances: Mapping[torch.dtype, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_TOLERANCES)
    )
    availability: Callable[[], str | None] = _always_available
    limits: Callable[[OpSpec], list[str]] = _no_limits
    custom_ops: tuple[str, ...] = ()

    def unavailable_reason(self) -> str | None:
        """Why this implementation cannot run on this machine at all (``None`` if it can).

        Probed once per process (a probe may build an extension); a plain dict rather than
        ``functools.cache`` so that ``torch.compile`` traces the lookup without a warning.
        """
        if self.name not in _AVAILABILITY:
            _AVAILABILITY[self.name] = self.availability()
        return _AVAILABILITY[self.name]

    def devices_here(self) -> list[str]:
        """The supported device types present on this machine."""
        return [d for d in self.devices if device_present(d)]

    def why_not(self, spec: OpSpec) -> list[str]:
        """Reasons this implementation cannot run the call described by ``spec`` (empty: it can)."""
        reasons = []
        unavailable = self.unavailable_reason()
        if unavailable:
            reasons.append(unavailable)
        if spec.device not in self.devices:
            reasons.append(f"device {spec.device!r} not supported (supports {list(self.devices)})")
        if spec.dtype not in self.dtypes:
            names = [str(d).removeprefix("torch.") for d in self.dtypes]
            reasons.append(f"dtype {str(spec.dtype).removeprefix('torch.')} not supported "
                           f"(supports {names})")
        if not reasons:
            reasons.extend(self.limits(spec))
        return reasons

    def tolerance(self, dtype: torch.dtype) -> tuple[float, float]:
        return self.tolerances.get(dtype, DEFAULT_TOLERANCES[torch.float32])


def device_present(device: str) -> bool:
    if device == "cpu":
        return True
    if device == "cuda":
        return torch.cuda.is_available()
    return False


_REGISTRY: dict[str, Implementation] = {}
_AVAILABILITY: dict[str, str | None] = {}


def register(impl: Implementation) -> Implementation:
    """Add ``impl`` to the registry (its name must be new)."""
    if impl.name in _REGISTRY:
        raise ValueError(f"implementation {impl.name!r} is already registered")
    _REGISTRY[impl.name] = impl
    return impl


def _registry() -> dict[str, Implementation]:
    import implementations  # noqa: F401  (registers every implementation on import)

    return _REGISTRY


def implementations() -> list[str]:
    """Names of all registered implementations, in registration order."""
    return list(_registry())


def get(name: str) -> Implementation:
    """The implementation called ``name``; an unknown name lists the ones that exist."""
    registry = _registry()
    if not isinstance(name, str) or name not in registry:
        raise ValueError(f"impl must be one of {list(registry)}, got {name!r}")
    return registry[name]


def usable(spec: OpSpec) -> list[str]:
    """Names of the implementations that can run ``spec``, best (highest priority) first."""
    ranked = sorted(_registry().values(), key=lambda impl: -impl.priority)
    return [impl.name for impl in ranked if not impl.why_not(spec)]


def resolve(name: str | None, spec: OpSpec) -> Implementation:
    """Pick the implementation for one call: ``name``, or the best usable one when ``None``."""
    if name is None:
        candidates = usable(spec)
        if not candidates:
            raise ValueError(f"impl: no implementation can run {spec.label()} on "
                             f"{spec.device}/{spec.dtype}")
        return get(candidates[0])
    impl = get(name)
    reasons = impl.why_not(spec)
    if reasons:
        raise ValueError(
            f"impl={name!r} cannot run these inputs ({spec.device}, {spec.dtype}): "
            f"{'; '.join(reasons)}. Implementations that can: {usable(spec)}"
        )
    return impl
