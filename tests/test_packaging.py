"""The wheel: only ``lrbench`` at the top level, and it works from anywhere once installed.

Built with ``pip wheel --no-deps --no-build-isolation`` and installed into a fresh virtual
environment (no network: lrbench's dependencies come from this interpreter's site-packages
through a ``.pth`` file). Then, from a folder that is a user's project (its own git repository,
a decoy ``implementations/`` package and a decoy ``cli.py`` that raise when imported):
``lrbench list``, ``lrbench check`` and ``python -c "import lrbench; ..."`` must use the
installed package and find our implementations.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import torch

from lrbench import registry
from lrbench.bench.measure import machine

ROOT = Path(__file__).resolve().parents[1]
OURS = {"reference", "unfold", "im2col_matmul", "fused_cpu", "fused_triton"}
INSTALLED = f"lrbench {metadata.version('lrbench')} (installed)"  # the version: pyproject.toml's
DECOY = "raise RuntimeError('the decoy {} was imported instead of lrbench')\n"


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"{args}: {run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a clean copy of the checkout: a stale build/ folder could ship deleted modules."""
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source") / "lrbench"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", ".torch_ext", "reports",
                                  "__pycache__", ".*cache", ".hypothesis", ".benchmarks")
    shutil.copytree(ROOT, source, symlinks=True, ignore=skip)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(out), str(source)], cwd=out, env=dict(os.environ))
    (path,) = out.glob("lrbench-*.whl")
    return path


def test_the_wheel_installs_only_lrbench(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"lrbench", f"{wheel.name.split('-py')[0]}.dist-info"}
    assert "lrbench/impls/fused_cpu.py" in names and "lrbench/impls/csrc/fused_cpu.cpp" in names
    assert "lrbench/cli.py" in names and not any("triton_aot" in n for n in names)
    # every module of the checkout's package ships (a subpackage missing from pyproject would not)
    ours = {f"lrbench/{p.relative_to(ROOT / 'lrbench')}" for p in (ROOT / "lrbench").rglob("*.py")}
    ours |= {f"lrbench/impls/{p.relative_to(ROOT / 'implementations')}"
             for p in (ROOT / "implementations").rglob("*.py")}
    assert ours <= set(names), sorted(ours - set(names))


def test_installed_wheel_works_from_a_folder_with_decoys(wheel, tmp_path):
    project = tmp_path / "project"  # a user's project: its own repository, generic names
    (project / "implementations").mkdir(parents=True)
    (project / "implementations" / "__init__.py").write_text(DECOY.format("implementations/"))
    (project / "cli.py").write_text(DECOY.format("cli.py"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    _run(["git", "init", "-q", str(project)], cwd=tmp_path, env=env)

    venv = project / ".venv"  # inside the user's repository, as virtual environments often are
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        cwd=tmp_path, env=env).strip())
    deps = {sysconfig.get_path("purelib"), str(Path(torch.__file__).parents[1])}
    (purelib / "zz_deps.pth").write_text("\n".join(sorted(deps)) + "\n")  # after our own files
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
          "--no-index", str(wheel)], cwd=tmp_path, env=env)

    env["PYTHONPATH"] = str(project)  # the decoys are importable from everywhere below
    where = _run([str(python), "-c", "import lrbench, lrbench.impls; print(lrbench.__file__); "
                  "print(lrbench.impls.__file__); print(*lrbench.implementations())"],
                 cwd=project, env=env).splitlines()
    assert all(line.startswith(str(purelib / "lrbench")) for line in where[:2]), where
    assert set(where[2].split()) >= OURS

    listing = _run([str(venv / "bin" / "lrbench"), "list"], cwd=project, env=env)
    listed = {line.split()[0] for line in listing.splitlines() if line and not line[0].isspace()}
    assert listed >= OURS, listing
    check = _run([str(venv / "bin" / "lrbench"), "check"], cwd=project, env=env)
    assert check.strip().splitlines()[-1].endswith(" 0 failed"), check[-2000:]
    if registry.get("fused_cpu").unavailable_reason() is None:
        assert "ok   fused_cpu" in check  # the compiled kernel, from the installed copy's source

    revision = _run([str(python), "-c", "from lrbench.bench.measure.machine import machine_info; "
                     "print(machine_info()['git_rev'])"], cwd=project, env=env).strip()
    assert revision == INSTALLED  # not the user's repository's revision


def test_git_revision_only_from_our_own_checkout(monkeypatch, tmp_path):
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", machine._git_revision())  # this checkout
    user_repo = tmp_path / "project"
    site = user_repo / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(user_repo)], check=True)
    monkeypatch.setattr(machine, "REPO", site)  # lrbench/bench/measure/machine.py three folders below
    assert machine._git_revision() == INSTALLED
    (site / "pyproject.toml").write_text("")  # even a pyproject beside it: not the repo's root
    assert machine._git_revision() == INSTALLED
    shutil.rmtree(user_repo / ".git")
    assert machine._git_revision() == INSTALLED
