"""Missing is a failure where it is required: ``CI=true`` or ``LRBENCH_REQUIRE=name,...``.

Without either, nothing is required and these tests do nothing; the run's last line still lists
what it left out (tests/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.impls import required, why_missing

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", required())
def test_a_required_implementation_runs_here(name):
    reason = why_missing(name)
    assert reason is None, f"{name} is required (CI=true or LRBENCH_REQUIRE) but cannot run: {reason}"


def _pytest(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "CI": "", "LRBENCH_REQUIRE": "", **env})


def test_an_unavailable_required_implementation_fails_the_run_with_its_reason():
    # fused_cpu's availability forced off (as a compile error would), and required by name
    env = {"LRBENCH_REQUIRE": "fused_cpu", "LRBENCH_TEST_BREAK_FUSED_CPU": "1"}
    done = _pytest(["tests/test_required.py::test_a_required_implementation_runs_here",
                    "tests/test_fused_cpu.py::test_absdiff_gradient_at_tie_follows_torch_sign", "-p",
                    "tests.break_fused_cpu"], env)
    assert done.returncode != 0, done.stdout
    assert "fused_cpu is required" in done.stdout and "forced unavailable" in done.stdout
    assert "lrbench implementations left out: fused_cpu (forced unavailable" in done.stdout
    # the same, not required: skipped, the run green, the closing line still names it
    env["LRBENCH_REQUIRE"] = ""
    done = _pytest(["tests/test_fused_cpu.py::test_absdiff_gradient_at_tie_follows_torch_sign", "-p",
                    "tests.break_fused_cpu"], env)
    assert done.returncode == 0, done.stdout
    assert "lrbench implementations left out: fused_cpu (forced unavailable" in done.stdout


def test_an_unknown_required_name_is_a_failure():
    assert "no implementation 'no_such_impl' is registered" in why_missing("no_such_impl")
