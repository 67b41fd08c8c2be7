"""Test configuration: Triton's interpreter on machines without CUDA, the GPU marker, and the
closing line listing the implementations the run left out (tests/impls.py).

TRITON_INTERPRET must be set before any Triton kernel is defined, i.e. before ``implementations``
is imported, so it is set here, at the top of the first module pytest loads.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def pytest_terminal_summary(terminalreporter):
    from tests.impls import left_out, required

    try:
        missing = left_out()
    except Exception as err:  # the registry itself is broken: say so rather than hide the line
        terminalreporter.write_line(f"lrbench implementations left out: unknown ({err})")
        return
    listed = "; ".join(f"{name} ({reason})" for name, reason in missing.items()) or "none"
    needed = required()
    suffix = f" [required here: {', '.join(needed)}]" if needed else ""
    terminalreporter.write_line(f"lrbench implementations left out: {listed}{suffix}")
