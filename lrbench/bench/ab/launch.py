"""One side's run: ``lrbench run`` of a revision's own code, in a process of the current Python.

The child is ``python -c LAUNCHER CHECKOUT run ...`` with the checkout as its working directory and
first on ``sys.path`` (and ``PYTHONPATH``, for anything it starts). An installed lrbench (an
editable install maps ``lrbench.impls`` to its own ``implementations/`` folder) must not stand in
for the revision's, so the launcher binds ``lrbench.impls`` to the checkout's ``implementations/``
and refuses to go on if ``lrbench`` or ``lrbench.impls`` came from anywhere else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

IMPORTED_FROM_ELSEWHERE = 3  # the launcher's exit status when the checkout's code was not imported

LAUNCHER = r"""
import importlib.util, os, sys
root = os.path.realpath(sys.argv[1])
sys.path.insert(0, root)
import lrbench
impls = os.path.join(root, "implementations")
spec = importlib.util.spec_from_file_location(
    "lrbench.impls", os.path.join(impls, "__init__.py"), submodule_search_locations=[impls])
module = importlib.util.module_from_spec(spec)
sys.modules["lrbench.impls"] = module
spec.loader.exec_module(module)
setattr(lrbench, "impls", module)
for name, want in (("lrbench", os.path.join(root, "lrbench")), ("lrbench.impls", impls)):
    where = os.path.realpath(os.path.dirname(sys.modules[name].__file__))
    if where != want:
        print(f"lrbench ab: {name} came from {where}, not from the checkout {root}",
              file=sys.stderr)
        sys.exit(3)
print(f"lrbench ab: running {root}", flush=True)
from lrbench.cli import main
sys.argv = ["lrbench", *sys.argv[2:]]
main()
"""


@dataclass(frozen=True)
class SideRun:
    """What one child did."""

    returncode: int
    seconds: float
    log: Path


def run_side(checkout: Path, args: list[str], log: Path, python: str = sys.executable) -> SideRun:
    """Run ``lrbench ARGS`` with ``checkout``'s code; its output goes to ``log``."""
    checkout = Path(checkout).resolve()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH")]))
    # the A/B compares times only: its runs leave the roofs unmeasured (`lrbench run
    # --no-limits`; a revision older than that option measures them, and ignores this)
    env["LRBENCH_LIMITS"] = "0"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run([python, "-c", LAUNCHER, str(checkout), *args], cwd=checkout,
                              env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    return SideRun(returncode=code, seconds=time.perf_counter() - start, log=log)
