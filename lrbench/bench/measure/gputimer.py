"""GPU-correct timing: CUDA events around each round, warm-up, an L2 flush between rounds.

A host clock around a CUDA call measures the launch, not the kernel, unless every round waits
for the device; and a kernel rerun on the same inputs finds them in the L2 cache (50 MB on an
H100), which a real layer, reading activations its predecessor wrote long ago, does not. So, as
``triton.testing.do_bench`` does:

1. warm-up: a few untimed calls (compilation, autotuning, allocator), timed only to estimate how
   many rounds fit the time budget;
2. each round: overwrite a buffer larger than the L2 cache (256 MiB), then record a start event,
   call, record an end event, all on the current stream, with no host synchronisation between
   rounds;
3. one synchronisation, then each round's time from its pair of events.

The device (events, flush, synchronisation) is injected, so the tests drive this timer on a CPU
with a fake device whose clock advances only when the callable runs. The CPU path does not use
this module: pytest-benchmark times it with ``time.perf_counter``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

CPU_TIMER = "pytest-benchmark/perf_counter"
CUDA_TIMER = "cuda-events+l2-flush"
FLUSH_BYTES = 256 * 1024 * 1024  # > the L2 of an H100 (50 MB) or H200 (60 MB), as do_bench


class Event(Protocol):
    def record(self) -> None: ...
    def elapsed_time(self, end: Event) -> float: ...  # milliseconds, after synchronisation


class Device(Protocol):
    """What the timer needs of a GPU: timing events, a cache flush, a synchronisation."""

    def event(self) -> Event: ...
    def flush(self) -> None: ...
    def synchronize(self) -> None: ...


class CudaDevice:
    """The current CUDA device and stream; the flush overwrites a ``flush_bytes`` buffer."""

    def __init__(self, flush_bytes: int = FLUSH_BYTES) -> None:
        import torch

        self._torch = torch
        self._buffer = torch.empty(flush_bytes, dtype=torch.int8, device="cuda")

    def event(self):
        return self._torch.cuda.Event(enable_timing=True)

    def flush(self) -> None:
        self._buffer.zero_()

    def synchronize(self) -> None:
        self._torch.cuda.synchronize()


@dataclass(frozen=True)
class GpuTiming:
    """The knobs: ``warmup`` untimed calls, then rounds filling about ``max_time`` seconds,
    at least ``min_rounds`` and at most ``max_rounds``."""

    min_rounds: int = 3
    max_time: float = 0.05
    warmup: int = 2
    max_rounds: int = 1000

    def __post_init__(self) -> None:
        if self.min_rounds < 1:
            raise ValueError(f"min_rounds must be >= 1, got {self.min_rounds}")
        if not self.max_time > 0:
            raise ValueError(f"max_time must be > 0 seconds, got {self.max_time}")
        if self.warmup < 1:
            raise ValueError(f"warmup must be >= 1 (it sizes the rounds), got {self.warmup}")
        if self.max_rounds < self.min_rounds:
            raise ValueError(f"max_rounds must be >= min_rounds ({self.min_rounds}), "
                             f"got {self.max_rounds}")


def _timed_rounds(fn: Callable[[], object], device: Device, rounds: int) -> list[float]:
    """Seconds of each of ``rounds`` calls of ``fn``, each after a flush, between two events."""
    pairs = []
    for _ in range(rounds):
        device.flush()
        start, end = device.event(), device.event()
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    device.synchronize()  # every end event has completed before any is read
    return [start.elapsed_time(end) / 1e3 for start, end in pairs]


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def time_cuda(fn: Callable[[], object], timing: GpuTiming | None = None,
              device: Device | None = None) -> dict:
    """Time ``fn`` on the GPU; returns the row's statistics columns (seconds), ``timer`` and
    ``rounds_s``, every round's seconds in the order timed.

    Args:
        fn: zero-argument callable launching the work (built outside the timer).
        timing: the knobs (:class:`GpuTiming`).
        device: events, flush and synchronisation; the current CUDA device by default.
    """
    timing = timing or GpuTiming()
    device = device if device is not None else CudaDevice()
    estimate = statistics.median(_timed_rounds(fn, device, timing.warmup))
    wanted = int(timing.max_time / estimate) if estimate > 0 else timing.max_rounds
    rounds = min(max(wanted, timing.min_rounds), timing.max_rounds)
    times = _timed_rounds(fn, device, rounds)
    q1, q3 = _quartiles(times)
    return {"median_s": statistics.median(times), "iqr_s": q3 - q1,
            "stddev_s": statistics.stdev(times) if len(times) > 1 else 0.0,
            "min_s": min(times), "mean_s": statistics.fmean(times), "rounds": len(times),
            "iterations": 1, "timer": CUDA_TIMER, "rounds_s": times}
