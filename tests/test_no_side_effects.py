"""Importing lrbench changes no global state: matplotlib's backend, the environment, torch's RNG.

Checked in a fresh interpreter (an import happens once per process): the user has chosen a
backend (as a notebook does), then every module of lrbench is imported and the registry filled.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from lrbench.bench.matrix.cases import Case
from lrbench.bench.measure.gate import GATES

IMPORT_EVERYTHING = textwrap.dedent("""
    import importlib, os, pkgutil, sys
    import matplotlib
    matplotlib.use("svg")  # the user's choice, made before lrbench is imported
    import torch
    environ, rng = dict(os.environ), torch.get_rng_state()

    import lrbench
    import lrbench.impls  # its folder is implementations/ in a checkout, not under lrbench/
    packages = [(lrbench.__path__, "lrbench."), (lrbench.impls.__path__, "lrbench.impls.")]
    names = [m.name for path, prefix in packages for m in pkgutil.walk_packages(path, prefix)
             if not m.name.endswith("__main__")]  # __main__ runs the CLI, by design
    for name in names:
        importlib.import_module(name)
    lrbench.implementations()  # the registry: the built-in modules and the entry points

    assert len(names) > 30 and "lrbench.bench.results.plots" in names and "lrbench.impls.fused_cpu" in names
    assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
    assert "matplotlib.pyplot" not in sys.modules
    assert dict(os.environ) == environ, set(os.environ.items()) ^ set(environ.items())
    assert torch.equal(torch.get_rng_state(), rng)
    print("imported", len(names))
""")


def test_importing_every_module_changes_no_global_state():
    run = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("imported")


def test_network_gate_leaves_the_global_rng_alone():
    case = Case("lrnet50", "unfold", 1, 64, 32, 32, 7, 8, 1, "float32", "cpu", "fwd")
    state = torch.get_rng_state()
    result = GATES["lrnet50"](case)
    assert result.ok, result.reason
    assert torch.equal(torch.get_rng_state(), state)
    again = GATES["lrnet50"](case)  # and it is still deterministic
    assert again.max_abs_err == result.max_abs_err
