"""The compile axis: an implementation timed as written (``eager``) or through ``torch.compile``.

A compiled case runs the implementation's function through ``torch.compile(fn, backend=mode,
dynamic=False)``, registered for the case's duration as ``impl@mode`` (e.g. ``unfold@inductor``),
so that the accuracy gate checks the very callable that is timed. The compiler's caches are
cleared before each compiled case is built (:func:`fresh_compile`), so the first call of the
timed callable pays the whole compilation: the runner records that call in ``compile_s`` and
never in the median. Only the op target has the axis (``TARGET_AXES[...]["compiles"]``): the
compiled callable is the implementation's function alone.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from lrbench import registry
from lrbench.bench.matrix.cases import Case, compiled_name

_VARIANTS: dict[tuple[str, str], registry.Implementation] = {}


def compile_fn(fn, mode: str):
    """``fn`` compiled with backend ``mode``; static shapes, so a new shape recompiles instead of
    switching to a dynamic-shape graph halfway through a run."""
    return torch.compile(fn, backend=mode, dynamic=False)


def variant(impl_name: str, mode: str) -> registry.Implementation:
    """The implementation ``impl_name`` compiled with ``mode``: the same capabilities, plus its
    ``compile_limits`` as limits."""
    key = (impl_name, mode)
    if key not in _VARIANTS:
        impl = registry.get(impl_name)

        def limits(spec, impl=impl):
            return impl.limits(spec) + impl.compile_limits(spec)

        _VARIANTS[key] = dataclasses.replace(
            impl, name=compiled_name(impl_name, mode), fn=compile_fn(impl.fn, mode),
            summary=f"{impl.summary} (torch.compile, {mode})", priority=-1000, limits=limits)
    return _VARIANTS[key]


def variants_for(case: Case) -> tuple[registry.Implementation, ...]:
    """What to register while ``case`` runs: its compiled variant, or nothing when eager."""
    if not case.compiled or case.impl not in registry.implementations():
        return ()
    return (variant(case.impl, case.compile),)


def fresh_compile() -> None:
    """Forget every compiled graph, so that the next first call compiles from scratch."""
    torch._dynamo.reset()


def build_and_first_call(build):
    """``(prepared, seconds)``: ``build()`` and the first call of its callable, timed together
    (a ``bwd`` case runs the forward while it is built), with inductor's on-disk and in-memory
    caches off so that the compilation is not served by what the accuracy gate compiled a moment
    earlier."""
    fresh_compile()
    with torch._inductor.config.patch(force_disable_caches=True):
        start = time.perf_counter()
        prepared = build()
        prepared.fn()
        return prepared, time.perf_counter() - start
