"""A build cache for C++ extensions compiled at first use (``torch.utils.cpp_extension.load``).

One build folder per set of build inputs, shared by every checkout and installed copy that has
the same source::

    $TORCH_EXTENSIONS_DIR/lrbench/<name>-torch<version>-py<XY>-<digest>/
        (default root: ~/.cache/torch_extensions)
        key.json        the build inputs the digest was computed from, for humans
        <name>.cpp      a copy of the source: the build never records a checkout's path
        lrbench.lock    our lock (fcntl.flock), held while building or loading
        build.ninja, *.o, <module>.so   torch's build

The digest covers the torch version (with its git revision and C++ ABI), Python's version, the
compiler (path and ``--version``), the flags, the source's content, this CPU (builds use
``-march=native``) and the include folders of torch and Python (so ``build.ninja`` is the same
for everyone who maps to the folder, and ninja never rebuilds in turn for two environments).

Locking: the OS releases an ``flock`` when its holder dies, so a killed build never blocks the
next. While holding it we delete a ``lock`` file that torch left (torch <= 2.11 waits forever
for such a file to vanish; a build killed under it leaves one behind). Waiting for another
process's build ends after ``LRBENCH_BUILD_LOCK_TIMEOUT`` seconds (default 600) in a
``RuntimeError`` that names the folder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from lrbench.files import atomic_write, unlock, wait_lock

LOCK_NAME = "lrbench.lock"
TORCH_LOCK_NAME = "lock"  # the file torch's cpp_extension locks (or, in torch <= 2.11, waits on)
TIMEOUT_ENV = "LRBENCH_BUILD_LOCK_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ExtensionSpec:
    """What to compile: one C++ source, with its flags.

    Attributes:
        name: short name, e.g. ``"fused_cpu"``; the folder and the module are named after it.
        source: the ``.cpp`` file (in a checkout or an installed package).
        cflags: compiler flags, e.g. ``("-O3", "-march=native", "-fopenmp")``.
        ldflags: linker flags, e.g. ``("-fopenmp",)``.
    """

    name: str
    source: Path
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()


def cpu_tag() -> str:
    """A short hash of this CPU's model and flags: ``-march=native`` builds must not be shared."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            seen = {}
            for line in info:
                name = line.split(":", 1)[0].strip()
                if name in ("model name", "flags"):
                    seen.setdefault(name, line)
            text += "".join(seen.values())
    except OSError:
        pass
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def compiler() -> str | None:
    """The C++ compiler ``cpp_extension`` would use (``$CXX``, else ``c++``/``g++``), or ``None``."""
    cxx = os.environ.get("CXX", "c++")
    return shutil.which(cxx) or shutil.which("g++")


@functools.cache
def _compiler_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return f"unknown ({type(err).__name__})"
    return out.splitlines()[0] if out else "unknown"


def build_inputs(spec: ExtensionSpec) -> dict[str, object]:
    """Everything the compiled module depends on; two builds share a folder only if all agree."""
    cxx = compiler() or "none"
    return {
        "name": spec.name,
        "torch": torch.__version__,
        "torch_git": torch.version.git_version,
        "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}{getattr(sys, 'abiflags', '')}",
        "compiler": cxx,
        "compiler_version": _compiler_version(cxx) if cxx != "none" else "none",
        "cflags": list(spec.cflags),
        "ldflags": list(spec.ldflags),
        "source_sha256": hashlib.sha256(spec.source.read_bytes()).hexdigest(),
        "cpu": cpu_tag(),
        "torch_include": str(Path(torch.__file__).parent / "include"),
        "python_include": sysconfig.get_paths()["include"],
    }


def build_root() -> Path:
    """``$TORCH_EXTENSIONS_DIR/lrbench``, default ``~/.cache/torch_extensions/lrbench``."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if not root:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(cache, "torch_extensions")
    return Path(root) / "lrbench"


def build_folder(spec: ExtensionSpec, root: Path | None = None) -> Path:
    """The folder for this build, e.g. ``.../lrbench/fused_cpu-torch2.14.1+cu130-py311-3f2a9c1d0b7e``."""
    return _folder(build_inputs(spec), root)


def _folder(inputs: dict[str, object], root: Path | None) -> Path:
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
    py = inputs["python"].replace(".", "")
    return (root or build_root()) / f"{inputs['name']}-torch{inputs['torch']}-py{py}-{digest}"


def _timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None


@contextlib.contextmanager
def build_lock(folder: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold ``folder/lrbench.lock`` (``flock``); remove a stale torch ``lock`` file once held.

    Raises:
        RuntimeError: the lock is still held by another process after ``timeout_s`` seconds
            (default ``$LRBENCH_BUILD_LOCK_TIMEOUT`` or 600).
    """
    timeout_s = _timeout_s() if timeout_s is None else timeout_s
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    with open(path, "a+") as handle:
        if wait_lock(handle.fileno(), timeout_s) is False:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RuntimeError(
                f"waited {timeout_s:g} s for the build lock {path} (held by pid {holder}); "
                f"if no other process is building there, delete the folder {folder} and "
                f"retry, or raise {TIMEOUT_ENV} (seconds) for a slow build"
            )
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            # Every lrbench process builds under our lock, so a torch `lock` found now is stale.
            with contextlib.suppress(FileNotFoundError):
                (folder / TORCH_LOCK_NAME).unlink()
            yield
        finally:
            unlock(handle.fileno())


def _place(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` unless it is there already (an unchanged mtime: no rebuild)."""
    if path.exists() and path.read_bytes() == content:
        return
    atomic_write(path, content)


def load(spec: ExtensionSpec, verbose: bool = False, root: Path | None = None):
    """Build (once per build folder) and import the extension.

    Raises:
        RuntimeError: no C++ compiler, the build failed, or the lock wait timed out.
    """
    if compiler() is None:
        raise RuntimeError("no C++ compiler found (g++/c++)")
    # cpp_extension warns at import that CUDA_HOME has no runtime; irrelevant for a CPU build.
    cpp_logger = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        cpp_logger.setLevel(level)

    inputs = build_inputs(spec)
    folder = _folder(inputs, root)
    with build_lock(folder):
        _place(folder / "key.json", (json.dumps(inputs, indent=1, sort_keys=True) + "\n").encode())
        source = folder / f"{spec.name}.cpp"
        _place(source, spec.source.read_bytes())
        return cpp_extension.load(
            name=f"lrbench_{spec.name}_{folder.name.rsplit('-', 1)[1][:8]}",
            sources=[str(source)],
            extra_cflags=list(spec.cflags),
            extra_ldflags=list(spec.ldflags),
            build_directory=str(folder),
            verbose=verbose,
        )
