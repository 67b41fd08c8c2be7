"""Test configuration: Triton's interpreter on machines without CUDA, the GPU marker, and the
closing line listing the implementations the run left out (tests/impls.py).

TRITON_INTERPRET must be set before any Triton kernel is defined, i.e. before ``implementations``
is imported, so it is set here, at the top of the first module pytest loads.
"""

import os

# pytest-xdist's workers share the cores: one thread each, in them and in the processes they start
# (set before torch is imported). With torch's default of one thread per core, each worker's
# OpenMP threads spin between tiny ops while the other workers want the same cores: the parallel
# tests of test_gradcheck.py and test_fast_path.py took 160 s so on 2 cores, 28 s with this.
# Tests of several threads set them themselves (tests/test_fused_cpu.py).
ONE_THREAD_EACH = bool(os.environ.get("PYTEST_XDIST_WORKER")) and "OMP_NUM_THREADS" not in os.environ
if ONE_THREAD_EACH:
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

if ONE_THREAD_EACH:
    torch.set_num_threads(1)  # in case torch was imported before this file
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
