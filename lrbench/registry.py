"""The registry of implementations of the local relation op.

A plain dict from name to :class:`Implementation`. Each implementation states what it
supports (devices, dtypes, limits) and answers *why not* as a list of reasons, so that the
op, the tests and the benchmark can all ask the same question and report the same answer.

Where implementations come from, in this order, the first time the registry is read:

1. ``BUILTIN``: the modules of :mod:`lrbench.impls` that ship with lrbench;
2. the entry-point group ``lrbench.implementations`` of every installed distribution: each entry
   point names a module that calls :func:`register` when imported, or an :class:`Implementation`
   (or a list of them) to register;
3. :func:`load_plugin` (``lrbench run --plugin MODULE``): the same, for a module on ``sys.path``.

Nothing is imported at ``import lrbench`` time.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from lrbench.accuracy.limits import Limit, Loosening, check_loosenings, loosened, suite_limit
from lrbench.spec import OpSpec

# fn(x, query, key, prior, kernel_size, stride, phi) -> y
OpFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, int, str],
                torch.Tensor]

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
        priority: ``impl=None`` picks the usable implementation with the highest priority on
            the call's device: one number for every device, or a dict from device type to
            number (devices not in it rank 0).
        availability: returns why it cannot run on this machine at all, or ``None``.
        limits: returns extra reasons it cannot run a given call (e.g. unsupported stride).
        backward_limits: returns extra reasons it cannot run the backward pass of a call (e.g. a
            peer whose kernel is inference-only on some device).
        compile_limits: returns reasons ``torch.compile`` cannot compile it for a call.
        custom_ops: names of the ``torch.library`` operators it emits (``"lrbench::fused_cpu"``),
            so the FLOP counters can give them the op's closed-form count.
        loosened: per dtype, a :class:`~lrbench.accuracy.limits.Loosening`: looser limits than
            the suite's (:mod:`lrbench.accuracy.limits`), up to 4x, with the reason. A dtype not
            in it is held to the suite's limits, as every implementation is.
        tolerances, grad_tolerances: no longer taken (the suite owns the limits); ``register``
            refuses an implementation that sets them, naming ``loosened`` instead.
    """

    name: str
    fn: OpFn
    summary: str
    devices: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    priority: int | Mapping[str, int] = 0
    availability: Callable[[], str | None] = _always_available
    limits: Callable[[OpSpec], list[str]] = _no_limits
    backward_limits: Callable[[OpSpec], list[str]] = _no_limits
    compile_limits: Callable[[OpSpec], list[str]] = _no_limits
    custom_ops: tuple[str, ...] = ()
    loosened: Mapping[torch.dtype, Loosening] = field(default_factory=dict)
    tolerances: Mapping[torch.dtype, tuple[float, float]] | None = None
    grad_tolerances: Mapping[torch.dtype, tuple[float, float]] | None = None

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

    def why_not(self, spec: OpSpec, *, backward: bool = False, compiled: bool = False) -> list[str]:
        """Reasons this implementation cannot run the call described by ``spec`` (empty: it can);
        with ``backward``, its backward pass too; with ``compiled``, under ``torch.compile``."""
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
        if not reasons and backward:
            reasons.extend(self.backward_limits(spec))
        if not reasons and compiled:
            reasons.extend(self.compile_limits(spec))
        return reasons

    def limit(self, dtype: torch.dtype, value: str, n: int, size: float = 1.0) -> Limit:
        """The limit of ``value`` ("y" or a gradient's input name) in ``dtype`` when it sums ``n``
        terms of order ``size``: the suite's, times this implementation's declared factor if it
        has one."""
        loose = self.loosened.get(dtype)
        base = suite_limit(dtype, n, size)
        return loosened(base, loose.factor(value)) if loose is not None else base

    def rank(self, device: str) -> int:
        """Priority on ``device`` (higher is picked first by ``impl=None``)."""
        if isinstance(self.priority, Mapping):
            return self.priority.get(device, 0)
        return self.priority


def device_present(device: str) -> bool:
    if device == "cpu":
        return True
    if device == "cuda":
        return torch.cuda.is_available()
    return False


BUILTIN = tuple(f"lrbench.impls.{name}" for name in (
    "reference", "unfold", "im2col_matmul", "fused_cpu", "fused_triton", "flex_attention",
))  # the order ``lrbench list`` shows: the oracle first, then from plainest to most fused, peers last
ENTRY_POINT_GROUP = "lrbench.implementations"

_REGISTRY: dict[str, Implementation] = {}
_AVAILABILITY: dict[str, str | None] = {}
_LOADED: list[bool] = []  # non-empty once BUILTIN and the entry points are loaded
PLUGIN_ERRORS: dict[str, str] = {}  # entry point or module -> why it could not be loaded
_ENTRY_POINTS_SEEN: set[str] = set()


class PluginError(ValueError):
    """A plugin module or entry point could not be imported or registered nothing usable."""


def register(impl: Implementation) -> Implementation:
    """Add ``impl`` to the registry (its name must be new); returns it.

    The public way to add an implementation, from a plugin module or a notebook::

        lrbench.register(lrbench.Implementation(name="mine", fn=my_fn, summary="...",
                                                devices=("cpu",), dtypes=(torch.float32,)))
    """
    if not isinstance(impl, Implementation):
        raise TypeError(f"register() takes an lrbench.Implementation, got {type(impl).__name__}")
    _check_limits(impl)
    if impl.name in _REGISTRY:
        if _REGISTRY[impl.name] is impl:
            return impl
        raise ValueError(f"implementation {impl.name!r} is already registered")
    _REGISTRY[impl.name] = impl
    return impl


def _check_limits(impl: Implementation) -> None:
    """The suite owns the accuracy limits: refuse absolute tolerances and loosenings past the
    ceiling or without a reason (:func:`lrbench.accuracy.limits.check_loosenings`)."""
    for name in ("tolerances", "grad_tolerances"):
        declared = getattr(impl, name)
        if declared:
            dtype = str(next(iter(declared))).removeprefix("torch.")
            raise ValueError(
                f"implementation {impl.name!r}, dtype {dtype}: {name} are no longer taken; the "
                f"suite owns the accuracy limits (docs/benchmarking.md, 'The accuracy gate'). "
                f"Declare loosened={{torch.{dtype}: Loosening(reason, forward, backward)}} with "
                f"factors up to the ceiling of 4x the suite's limits")
    check_loosenings(impl.name, impl.loosened)


def unregister(name: str) -> Implementation:
    """Remove ``name`` from the registry (tests and notebooks); returns what was removed."""
    _registry()
    _AVAILABILITY.pop(name, None)
    try:
        return _REGISTRY.pop(name)
    except KeyError:
        raise ValueError(f"impl must be one of {list(_REGISTRY)}, got {name!r}") from None


@contextlib.contextmanager
def registered(*impls: Implementation) -> Iterator[tuple[Implementation, ...]]:
    """Register ``impls`` for the duration of a ``with`` block (tests, experiments)."""
    _registry()  # the built-in ones first, so the block's additions come after them
    for impl in impls:
        register(impl)
    try:
        yield impls
    finally:
        for impl in impls:
            if _REGISTRY.get(impl.name) is impl:
                unregister(impl.name)


def _register_loaded(obj: object, origin: str) -> None:
    """Register what an entry point or plugin module handed over: an Implementation, a list of
    them, a function returning them, or a module (which registers itself when imported, or
    defines ``IMPLEMENTATIONS``)."""
    if isinstance(obj, Implementation):
        register(obj)
    elif isinstance(obj, list | tuple):
        for item in obj:
            _register_loaded(item, origin)
    elif isinstance(obj, types.ModuleType):
        if getattr(obj, "IMPLEMENTATIONS", None) is not None:
            _register_loaded(obj.IMPLEMENTATIONS, origin)
    elif callable(obj) and not isinstance(obj, type):
        _register_loaded(obj(), origin)
    else:
        raise PluginError(f"{origin}: expected a module, an Implementation, a list of them or a "
                          f"function returning them, got {type(obj).__name__}")


def load_entry_points() -> list[str]:
    """Load every entry point of the group ``lrbench.implementations`` not loaded yet; returns the
    names they added. A broken entry point (it raises, or registers nothing) is recorded in
    :data:`PLUGIN_ERRORS` (``lrbench list`` shows them) and the others still load."""
    _registry()
    return _load_entry_points()


def _load_entry_points() -> list[str]:
    added = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {entry.name} = {entry.value}"
        if origin in _ENTRY_POINTS_SEEN:
            continue
        _ENTRY_POINTS_SEEN.add(origin)
        before = set(_REGISTRY)
        try:
            _register_loaded(entry.load(), origin)
        except Exception as err:  # a broken plugin must not take the registry down with it
            PLUGIN_ERRORS[origin] = f"{type(err).__name__}: {err}"
            continue
        new = [name for name in _REGISTRY if name not in before]
        if not new:
            PLUGIN_ERRORS[origin] = ("registered no implementation (its module must call "
                                     "lrbench.register or define IMPLEMENTATIONS)")
        added += new
    return added


def _import_plugin(module: str):
    """Import a dotted module name, or a ``.py`` file by its path (named after its stem)."""
    path = Path(module)
    if module.endswith(".py"):
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {module}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[path.stem]
            raise
        return loaded
    return importlib.import_module(module)


def load_plugin(module: str) -> list[str]:
    """Import ``module``, which registers implementations; returns the names it added.

    Args:
        module: a dotted module name on ``sys.path`` (``my_kernels.lr``), or the path of a
            ``.py`` file (``./my_impl.py``). The module calls :func:`register` when imported,
            or defines ``IMPLEMENTATIONS`` (an :class:`Implementation`, a list of them, or a
            function returning them).

    Raises:
        PluginError: the module cannot be imported, raises on import, or registers nothing.
    """
    before = set(_registry())
    try:
        loaded = _import_plugin(module)
    except Exception as err:
        raise PluginError(f"plugin {module!r} could not be imported: "
                          f"{type(err).__name__}: {err}") from err
    added = [name for name in _REGISTRY if name not in before]
    if not added:
        try:
            _register_loaded(loaded, f"plugin {module}")
        except (PluginError, TypeError, ValueError) as err:
            raise PluginError(f"plugin {module!r}: {err}") from err
        added = [name for name in _REGISTRY if name not in before]
    if not added and not any(_REGISTRY[n].fn.__module__ == loaded.__name__ for n in _REGISTRY):
        raise PluginError(f"plugin {module!r} registered no implementation: call "
                          "lrbench.register(lrbench.Implementation(...)) in it, or define "
                          "IMPLEMENTATIONS")
    return added


def _registry() -> dict[str, Implementation]:
    if not _LOADED:
        _LOADED.append(True)
        for module in BUILTIN:
            importlib.import_module(module)
        _load_entry_points()
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


def usable(spec: OpSpec, *, backward: bool = False) -> list[str]:
    """Names of the implementations that can run ``spec`` (and its backward pass, with
    ``backward``), best (highest priority on the call's device) first."""
    ranked = sorted(_registry().values(), key=lambda impl: -impl.rank(spec.device))
    return [impl.name for impl in ranked if not impl.why_not(spec, backward=backward)]


def resolve(name: str | None, spec: OpSpec, *, backward: bool = False) -> Implementation:
    """Pick the implementation for one call: ``name``, or the best usable one when ``None``;
    ``backward``: the call will be differentiated."""
    if name is None:
        candidates = usable(spec, backward=backward)
        if not candidates:
            reasons = "; ".join(f"{impl.name}: {', '.join(impl.why_not(spec, backward=backward))}"
                                for impl in _registry().values())
            raise ValueError(f"impl: no implementation can run {spec.label()} on "
                             f"{spec.device}/{spec.dtype} ({reasons})")
        return get(candidates[0])
    impl = get(name)
    reasons = impl.why_not(spec, backward=backward)
    if reasons:
        what = "these inputs with gradients" if backward else "these inputs"
        raise ValueError(
            f"impl={name!r} cannot run {what} ({spec.device}, {spec.dtype}): "
            f"{'; '.join(reasons)}. Implementations that can: {usable(spec, backward=backward)}"
        )
    return impl
