"""The machine a run happened on: CPU model, GPU name, threads, library versions, git revision."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]  # the checkout, when the package runs from one


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _checkout_root() -> Path | None:
    """The git checkout this package runs from (an editable install or ``python cli.py``), or
    ``None`` for an installed copy: site-packages may itself sit inside some other repository
    (a virtual environment inside a user's project), whose revision says nothing about lrbench."""
    if not (REPO / "pyproject.toml").is_file() or not (REPO / ".git").exists():
        return None
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=REPO, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return REPO if Path(top).resolve() == REPO else None


def _git_revision() -> str:
    """``<12-hex>[-dirty]`` in a checkout; ``lrbench <version> (installed)`` otherwise."""
    root = _checkout_root()
    if root is None:
        return f"lrbench {_version('lrbench')} (installed)"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        rev = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


@functools.cache
def machine_info() -> dict[str, str]:
    """What goes beside every row; computed once per process (threads: see ``threads_now``)."""
    return {
        "cpu": _cpu_model(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "",
        "torch": torch.__version__,
        "triton": _version("triton"),
        "fvcore": _version("fvcore"),
        "python": platform.python_version(),
        "git_rev": _git_revision(),
    }


def load_now() -> float | None:
    """The 1-minute load average (other processes competing for the cores), if the OS has one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def threads_now() -> int:
    """Intra-op threads torch uses now (``torch.get_num_threads``)."""
    return torch.get_num_threads()
