"""The machine a run happened on: CPU model, GPU name, threads, library versions, git revision,
memory allocator settings."""

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


# Environment variables that change how the process allocates memory, and so the time of a case
# that allocates large tensors: a preloaded allocator (jemalloc, tcmalloc), glibc's malloc settings
# (MALLOC_*_, GLIBC_TUNABLES), jemalloc's MALLOC_CONF, tcmalloc's TCMALLOC_*, torch's huge-page
# option for CPU tensors (THP_MEM_ALLOC_ENABLE). With glibc's defaults, a block above its mmap
# threshold (32 MB at most) is mapped fresh from the system on every allocation and its pages
# faulted in on first touch: see docs/benchmarking.md, "The allocator".
ALLOCATOR_VARIABLES = ("LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_CONF", "THP_MEM_ALLOC_ENABLE")
ALLOCATOR_PREFIXES = ("MALLOC_", "TCMALLOC_")


THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
HUGE_PAGE_TAG = "; transparent_hugepage="  # between the variables and the mode


def huge_page_mode(path: Path = THP_MODE) -> str:
    """Linux's transparent huge page mode (``always``, ``madvise`` or ``never``: the bracketed word
    of ``path``), or "" where the system has none. Under ``madvise`` only memory advised so (e.g.
    torch's CPU blocks with ``THP_MEM_ALLOC_ENABLE=1``) gets 2 MB pages; under ``never`` nothing."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else ""


def allocator_settings(environ: dict[str, str] | None = None, huge_pages: str | None = None) -> str:
    """The allocator settings of ``environ`` (default: this process's environment), as sorted
    ``NAME=value`` pairs joined by spaces (whitespace in a value made single spaces), or
    ``default`` where none is set; then ``; transparent_hugepage=MODE`` where the system has a mode
    (``huge_pages``, default: read by ``huge_page_mode``), which decides what those settings do."""
    environ = os.environ if environ is None else environ
    huge_pages = huge_page_mode() if huge_pages is None else huge_pages
    names = sorted(name for name, value in environ.items()
                   if value and (name in ALLOCATOR_VARIABLES or name.startswith(ALLOCATOR_PREFIXES)))
    # One line: a CSV cell of the rows never holds a line break (records.read counts lines).
    settings = " ".join(f"{name}={' '.join(environ[name].split())}" for name in names) or "default"
    return f"{settings}{HUGE_PAGE_TAG}{huge_pages}" if huge_pages else settings


def split_allocator_settings(value: str) -> tuple[str, str | None]:
    """``allocator_settings``' text back in two: ``"A=1; transparent_hugepage=madvise"`` ->
    ``("A=1", "madvise")``; without a mode (a system without one, or a row written before it was
    recorded), ``None``."""
    variables, _, mode = value.partition(HUGE_PAGE_TAG)
    return variables, (mode or None)


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
        "allocator": allocator_settings(),
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


# --- What makes numbers move: the machine's state around each case -------------------------------

# NVML's clock-event ("throttle") reason bits, as nvidia-smi prints them (nvml.h,
# nvmlClocksEventReason*); idle and the application-clock setting are states, not slowdowns.
THROTTLE_BITS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
    0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}
GPU_QUERY = ("clocks.sm", "clocks.mem", "power.draw", "temperature.gpu",
             "clocks_throttle_reasons.active")
GPU_COLUMNS = ("gpu_sm_mhz", "gpu_mem_mhz", "gpu_power_w", "gpu_temp_c", "gpu_throttle")
CPUFREQ = Path("/sys/devices/system/cpu")


def cpus_now() -> int:
    """Logical CPUs this process may run on (its affinity; all of them where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_governor(root: Path = CPUFREQ) -> str:
    """The cpufreq scaling governor(s) of the CPUs, e.g. ``performance``; ``""`` where the kernel
    exposes none (most virtual machines and containers)."""
    found = set()
    for path in sorted(root.glob("cpu[0-9]*/cpufreq/scaling_governor")):
        try:
            found.add(path.read_text().strip())
        except OSError:
            continue
    return ",".join(sorted(found))


def cpu_mhz(root: Path = CPUFREQ, cpuinfo: Path = Path("/proc/cpuinfo")) -> float | None:
    """The CPUs' mean current frequency in MHz: cpufreq's ``scaling_cur_freq`` where readable,
    else ``/proc/cpuinfo`` (which a virtual machine may report as a constant); ``None`` if neither."""
    khz = []
    for path in root.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"):
        try:
            khz.append(int(path.read_text().strip()))
        except (OSError, ValueError):
            continue
    if khz:
        return sum(khz) / len(khz) / 1e3
    try:
        mhz = [float(line.split(":", 1)[1]) for line in cpuinfo.read_text().splitlines()
               if line.startswith("cpu MHz")]
    except (OSError, ValueError):
        return None
    return sum(mhz) / len(mhz) if mhz else None


def cpu_state() -> dict:
    """The row's CPU columns: allowed CPUs, governor, current frequency."""
    return {"cpus": cpus_now(), "cpu_governor": cpu_governor(), "cpu_mhz": cpu_mhz()}


def throttle_names(mask: int) -> str:
    """An NVML clock-event bit mask as names joined by ``+`` (``"none"`` for 0)."""
    names = [name for bit, name in THROTTLE_BITS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_BITS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return "+".join(names) or "none"


def parse_gpu_query(line: str) -> dict:
    """One line of ``nvidia-smi --query-gpu=<GPU_QUERY> --format=csv,noheader,nounits`` as the
    row's GPU columns; a field nvidia-smi cannot read (``[N/A]``) stays empty."""
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != len(GPU_QUERY):
        raise ValueError(f"nvidia-smi: expected {len(GPU_QUERY)} fields, got {line!r}")

    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    sm, mem, power, temp, reasons = fields
    try:
        throttle = throttle_names(int(reasons, 16))
    except ValueError:
        throttle = ""
    return dict(zip(GPU_COLUMNS, (number(sm), number(mem), number(power), number(temp), throttle),
                    strict=True))


def gpu_state(device_id: str | None = None) -> dict:
    """The current GPU's clocks, power, temperature and throttle reasons, read with
    ``nvidia-smi`` (empty where there is none, or it fails).

    Args:
        device_id: what ``nvidia-smi -i`` selects (UUID or index); default: the current CUDA
            device's UUID.
    """
    if device_id is None:
        device_id = _current_gpu_uuid()
    command = ["nvidia-smi", f"--query-gpu={','.join(GPU_QUERY)}", "--format=csv,noheader,nounits"]
    if device_id:
        command[1:1] = ["-i", device_id]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout
        return parse_gpu_query(out.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def _current_gpu_uuid() -> str | None:
    """``GPU-<uuid>`` of torch's current device (CUDA and NVML may number GPUs differently)."""
    try:
        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    except Exception:  # no CUDA, or a torch without the uuid property
        return None
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
