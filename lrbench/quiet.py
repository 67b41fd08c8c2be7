"""Silence C-level output (file descriptors 1 and 2) around a call into a noisy library.

PyTorch's profiler (Kineto) writes ``USDT: ... profiler_start``/``profiler_stop`` and, on machines
without a GPU, ``ERROR: ... gpuGetDeviceCount failed`` straight to the process's stderr from C++,
where Python's ``sys.stderr`` redirection cannot reach. :func:`silenced_fds` points fds 1 and 2 at
a temporary file for the duration of the block, and writes what was caught to stderr if the block
raises (a failure keeps its diagnostics). The fds are process-wide: another thread writing to them
during the block is silenced too, so keep the block short (a profiler's start or stop).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# What PyTorch's C++ side writes during a profiled call that says nothing about the call itself:
# the CPU allocator's note that a block allocated before the profiler started was freed during it.
PROFILER_NOISE = (
    re.compile(r"Memory block of unknown size was allocated before the profiling started"),
    re.compile(r"USDT: .*profiler_(start|stop)"),
    re.compile(r"gpuGetDeviceCount failed"),
)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def silenced_fds() -> Iterator[None]:
    """Send what C code writes to fds 1 and 2 during the block to a temporary file."""
    _flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                _flush()
                for fd, copy in saved.items():
                    os.dup2(copy, fd)
        except BaseException:
            sink.seek(0)
            caught = sink.read().decode(errors="replace")
            if caught:
                sys.stderr.write(caught)
            raise
        finally:
            for copy in saved.values():
                os.close(copy)


@contextlib.contextmanager
def filtered_fds(noise: tuple[re.Pattern, ...] = PROFILER_NOISE) -> Iterator[None]:
    """Catch what C code writes to fds 1 and 2 during the block, then write it to stderr without
    the lines that match ``noise``: a profiled call keeps its own diagnostics, in order, after it
    returns (or raises), and loses only the profiler's chatter."""
    with tempfile.TemporaryFile() as caught, contextlib.ExitStack() as stack:
        stack.callback(_replay, caught, noise)
        _flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        try:
            for fd in saved:
                os.dup2(caught.fileno(), fd)
            yield
        finally:
            _flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def _replay(caught, noise: tuple[re.Pattern, ...]) -> None:
    caught.seek(0)
    lines = caught.read().decode(errors="replace").splitlines(keepends=True)
    kept = [line for line in lines if not any(p.search(line) for p in noise)]
    if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()
