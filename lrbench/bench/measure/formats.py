"""The memory format a network runs fastest in: each is tried briefly, the faster one is timed.

Both networks get the same chance (contiguous NCHW and channels_last NHWC, model and images
converted together); the winner goes in the row's ``memory_format`` column. The trial runs before
the timed region, a few calls per format, and its time is not reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from lrbench.bench.matrix.axes import FORMATS

# The matrix's format names (its ``format`` axis) -> PyTorch's memory formats.
MEMORY_FORMATS: dict[str, torch.memory_format] = dict(
    zip(FORMATS, (torch.contiguous_format, torch.channels_last), strict=True))


def trial_seconds(fn: Callable[[], object], calls: int = 2) -> float:
    """The fastest of ``calls`` calls of ``fn`` after one warm-up call, in seconds."""
    fn()
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def fastest_format(make: Callable[[torch.memory_format], Callable[[], object]],
                   formats: dict[str, torch.memory_format] | None = None,
                   calls: int = 2) -> tuple[str, Callable[[], object]]:
    """``(name, fn)`` of the format whose callable ``make(format)`` runs fastest.

    Args:
        make: builds the zero-argument callable for one memory format (model and inputs in it).
        formats: name -> memory format to try (default :data:`MEMORY_FORMATS`); one entry skips
            the trial.
        calls: timed calls per format (after a warm-up call).
    """
    formats = MEMORY_FORMATS if formats is None else formats
    if not formats:
        raise ValueError("formats must name at least one memory format")
    if len(formats) == 1:
        (name, fmt), = formats.items()
        return name, make(fmt)
    best_name, best_fn, best_s = "", None, float("inf")
    for name, fmt in formats.items():
        fn = make(fmt)
        seconds = trial_seconds(fn, calls)
        if seconds < best_s:
            best_name, best_fn, best_s = name, fn, seconds
        del fn
    return best_name, best_fn
