"""Toy implementations of the op, registered only inside the benchmark-harness tests.

``toy_wrong`` is off by 1% (the gate must fail it and nothing may time it), ``toy_wrong_nhwc``
only when ``x`` comes channels_last (it records each call's layout of ``x`` in ``LAYOUTS``),
``toy_raises`` always raises, ``toy_oom`` runs out of memory, ``toy_interrupt`` raises
``KeyboardInterrupt`` (a killed run) while ``ARMED`` is set.
"""

from __future__ import annotations

import contextlib

import torch

from lrbench import registry
from lrbench.registry import Implementation

TINY = {"B": 1, "C": 4, "H": 6, "W": 6, "k": 3, "m": 2, "stride": 1}
FAST = {"min_rounds": 1, "max_time": 0.001}
CALLS = {"toy_wrong": 0}
ARMED = {"interrupt": False}
LAYOUTS: list[str] = []  # toy_wrong_nhwc's x, call by call: "contiguous" or "channels_last"


def _unfold(*args):
    return registry.get("unfold").fn(*args)


def _wrong(*args):
    CALLS["toy_wrong"] += 1
    return _unfold(*args) * 1.01


def _wrong_nhwc(x, *args):
    nhwc = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    LAYOUTS.append("channels_last" if nhwc else "contiguous")
    y = _unfold(x, *args)
    return y * 1.01 if nhwc else y


def _raises(*args):
    raise RuntimeError("toy failure: this implementation always raises")


def _oom(*args):
    raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 TB")


def _interrupt(*args):
    if ARMED["interrupt"]:
        raise KeyboardInterrupt
    return _unfold(*args)


TOYS = {"toy_wrong": _wrong, "toy_wrong_nhwc": _wrong_nhwc, "toy_raises": _raises,
        "toy_oom": _oom, "toy_interrupt": _interrupt}


@contextlib.contextmanager
def registered_toys():
    toys = [Implementation(name=name, fn=fn, summary="test toy", devices=("cpu",),
                           dtypes=(torch.float32, torch.float64)) for name, fn in TOYS.items()]
    try:
        with registry.registered(*toys):
            yield
    finally:
        ARMED["interrupt"] = False
        CALLS["toy_wrong"] = 0
        LAYOUTS.clear()


def preset(impls: list[str], shapes: list[dict] | None = None,
           passes: tuple[str, ...] = ("fwd", "fwd_bwd"),
           formats: tuple[str, ...] = ("contiguous",)) -> dict:
    """A one-group op preset over tiny shapes."""
    return {"description": "test", "timing": FAST, "groups": [{
        "target": "op", "impls": impls, "shapes": shapes or [TINY], "dtypes": ["float32"],
        "devices": ["cpu"], "passes": list(passes), "formats": list(formats)}]}
