"""A pytest plugin for tests/test_required.py: with LRBENCH_TEST_BREAK_FUSED_CPU=1, fused_cpu's
availability probe answers as a failed build would (``-p tests.break_fused_cpu``)."""

import os


def pytest_configure(config):
    if os.environ.get("LRBENCH_TEST_BREAK_FUSED_CPU") == "1":
        from lrbench import registry

        registry._AVAILABILITY["fused_cpu"] = "forced unavailable (as if fused_cpu.cpp failed to build)"
