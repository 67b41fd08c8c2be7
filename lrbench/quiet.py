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
import sys
import tempfile
from collections.abc import Iterator


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
