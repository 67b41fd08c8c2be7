"""Peak extra memory of one call: measured, on the GPU and on the CPU.

CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``) during the call, above
what was allocated before it. CPU: PyTorch's profiler with ``profile_memory=True`` records every
allocation and free made through PyTorch's CPU allocator; the running sum of those events, in
time order, peaks at the call's peak extra memory (its output included, as it is alive at the end
of the call). Memory that a kernel allocates outside PyTorch's allocator is not seen, and frees of
blocks allocated before the call (e.g. a training step dropping old gradients) cannot be sized by
the profiler and are left out, so such a call's peak is an upper bound.

The profiler is the autograd one: the same Kineto recording as ``torch.profiler.profile``, whose
start imports ``torch._inductor`` and with it TorchDynamo (``hasattr(torch, "_inductor")`` in
torch 2.14's ``prepare_trace``), 2 to 7 s in each fresh process that measures memory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd.profiler import profile

from lrbench.quiet import filtered_fds, silenced_fds


def _cuda_peak(fn: Callable[[], object]) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del out
    return int(peak)


def _allocation_events(prof) -> list[tuple[int, int]]:
    """``(time_ns, bytes)`` of every allocation (+) and free (-) the profiler recorded."""
    events, stack = [], list(prof.kineto_results.experimental_event_tree())
    allocation = torch._C._profiler._ExtraFields_Allocation
    while stack:
        event = stack.pop()
        if isinstance(event.extra_fields, allocation):
            events.append((event.start_time_ns, event.extra_fields.alloc_size))
        stack.extend(event.children)
    return sorted(events)


def _cpu_peak(fn: Callable[[], object]) -> int:
    prof = profile(use_cpu=True, profile_memory=True)
    # Kineto prints "USDT: profiler_start/stop" and, without a GPU, "gpuGetDeviceCount failed"
    # from C++ on start and stop: silence those two steps only, never the measured call.
    with silenced_fds():
        prof.__enter__()
    try:
        # freeing, during the call, a block allocated before the profiler started makes the CPU
        # allocator warn from C++; the call's own output is written out after it, that line not
        with filtered_fds():
            out = fn()
            del out
    finally:
        with silenced_fds():
            prof.__exit__(None, None, None)
    running = peak = 0
    for _, size in _allocation_events(prof):
        running += size
        peak = max(peak, running)
    return peak


PEAKS = {"cuda": _cuda_peak, "cpu": _cpu_peak}


def peak_extra_bytes(fn: Callable[[], object], device: str) -> int:
    """Bytes allocated at the peak of one call of ``fn`` beyond what existed before it.

    Args:
        fn: the zero-argument callable that is timed.
        device: ``"cpu"`` or ``"cuda"``.
    """
    if device not in PEAKS:
        raise ValueError(f"device must be one of {list(PEAKS)}, got {device!r}")
    return PEAKS[device](fn)
