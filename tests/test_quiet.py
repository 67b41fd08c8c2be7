"""No output from PyTorch's profiler (or other C code) leaks into lrbench's output.

The CPU peak-memory measurement starts and stops PyTorch's profiler, whose C++ side (Kineto)
prints ``USDT: ... profiler_start``/``profiler_stop`` and, without a GPU, ``ERROR: ...
gpuGetDeviceCount failed`` straight to fd 2. A fresh subprocess is the only way to see fd-level
output (and Kineto's once-per-process initialisation).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from lrbench.quiet import silenced_fds

MEASURE = textwrap.dedent("""
    import torch
    from lrbench.bench.measure.memory import peak_extra_bytes
    x = torch.randn(64, 64)
    peaks = [peak_extra_bytes(lambda: x @ x, "cpu") for _ in range(2)]
    assert peaks[0] == peaks[1] == 64 * 64 * 4, peaks
    # a block allocated before the profiler and freed during the call: the allocator warns
    held = [torch.randn(256, 256)]
    peak_extra_bytes(lambda: held.pop(), "cpu")
""")


def test_cpu_peak_measurement_prints_nothing():
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINETO")}
    run = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""


def test_lrbench_profile_prints_its_table_and_no_profiler_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINETO")}
    run = subprocess.run([sys.executable, "-m", "lrbench", "profile", "resnet50", "--batch", "1",
                          "--size", "32", "--rounds", "1", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "| conv 1x1 |" in run.stdout
    for noise in ("USDT", "profiler_start", "gpuGetDeviceCount"):
        assert noise not in run.stdout + run.stderr


def test_the_profiler_is_noisy_without_it():
    """The guard above could fail: the same profile, unsilenced, does print (skips if this torch
    stopped printing, which would make the silencing unnecessary rather than wrong)."""
    code = ("import torch\nfrom torch.profiler import profile, ProfilerActivity\n"
            "with profile(activities=[ProfilerActivity.CPU], profile_memory=True): torch.ones(3) + 1\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if not (run.stdout + run.stderr).strip():
        pytest.skip("this torch's profiler prints nothing")
    assert "profiler" in run.stdout + run.stderr or "ERROR" in run.stderr


def test_silenced_fds_keeps_diagnostics_of_a_failure(capfd):
    with pytest.raises(ZeroDivisionError), silenced_fds():
        os.write(2, b"native diagnostic\n")
        1 / 0  # noqa: B018
    assert "native diagnostic" in capfd.readouterr().err
    with silenced_fds():
        os.write(1, b"noise\n")
    assert capfd.readouterr().out == ""


def test_filtered_fds_drops_only_the_noise(capfd):
    from lrbench.quiet import filtered_fds

    with filtered_fds():
        os.write(2, b"[W] Memory block of unknown size was allocated before the profiling started\n")
        os.write(2, b"a diagnostic of the call itself\n")
    err = capfd.readouterr().err
    assert "a diagnostic of the call itself" in err and "unknown size" not in err
