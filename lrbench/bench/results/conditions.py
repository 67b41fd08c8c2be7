"""What made the numbers move: the machine's state recorded beside each row, summed up.

Each row records the 1-minute load average before and after its case (``load_1m``,
``load_1m_after``), the logical CPUs the run could use (``cpus``), the cpufreq governor and
frequency where readable, and on CUDA the GPU's clocks, power, temperature and throttle reasons
(:mod:`lrbench.bench.measure.machine`). The machine was **busy** when the load exceeded the CPUs
by more than :data:`BUSY_MARGIN`: more threads wanted to run than there were cores, so the run's
own threads waited for others' and its times are inflated and noisier. (The run's own threads
count in the load: a load up to the CPU count is the run itself.)
"""

from __future__ import annotations

import os

import pandas as pd

BUSY_MARGIN = 0.5  # runnable threads beyond the CPUs, on average over a minute
# GPU throttle reasons that are states, not slowdowns
BENIGN_THROTTLE = {"", "none", "gpu_idle", "applications_clocks_setting"}


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(float("nan"), index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


def busy_rows(frame: pd.DataFrame) -> pd.Series:
    """Per row: was the load, before or after the case, above its CPUs + :data:`BUSY_MARGIN`?"""
    load = pd.concat([_numeric(frame, "load_1m"), _numeric(frame, "load_1m_after")], axis=1).max(axis=1)
    cpus = _numeric(frame, "cpus").fillna(os.cpu_count() or 1)
    return load > cpus + BUSY_MARGIN


def busy_warning(frame: pd.DataFrame) -> str | None:
    """One sentence when some rows ran on a busy machine; ``None`` when none did (or no load was
    recorded)."""
    busy = busy_rows(frame)
    if not busy.any():
        return None
    load = pd.concat([_numeric(frame, "load_1m"), _numeric(frame, "load_1m_after")], axis=1).max(axis=1)
    cpus = _numeric(frame, "cpus").fillna(os.cpu_count() or 1)
    return (f"the machine was busy during {int(busy.sum())} of {len(frame)} cases (1-minute load up "
            f"to {load[busy].max():.1f} on {int(cpus[busy].min())} CPUs): other processes competed "
            "for the cores, so those times are inflated and noisier")


def throttled_warning(frame: pd.DataFrame) -> str | None:
    """One sentence when a GPU reported a slowdown (power cap, thermal, power brake) after a case."""
    if "gpu_throttle" not in frame:
        return None
    reasons = frame["gpu_throttle"].fillna("").astype(str)
    slowed = reasons.map(lambda r: bool(set(r.split("+")) - BENIGN_THROTTLE))
    if not slowed.any():
        return None
    names = sorted({n for r in reasons[slowed] for n in r.split("+")} - BENIGN_THROTTLE)
    return (f"the GPU was throttled after {int(slowed.sum())} of {len(frame)} cases "
            f"({', '.join(names)}): its clocks were held down, so those times are slower")


def summary_lines(frame: pd.DataFrame) -> list[str]:
    """The state lines of a report's machine section: governor, CPU MHz, GPU clocks and
    temperature ranges, where recorded."""
    lines = []
    governors = sorted({g for g in frame.get("cpu_governor", pd.Series(dtype=str)).dropna() if g})
    if governors:
        lines.append(f"- CPU frequency governor: {', '.join(governors)}")
    for column, label, unit in (("cpu_mhz", "CPU frequency", "MHz"),
                                ("gpu_sm_mhz", "GPU SM clock", "MHz"),
                                ("gpu_mem_mhz", "GPU memory clock", "MHz"),
                                ("gpu_power_w", "GPU power", "W"),
                                ("gpu_temp_c", "GPU temperature", "C")):
        values = _numeric(frame, column).dropna()
        if not values.empty:
            lines.append(f"- {label}: {values.min():,.0f} to {values.max():,.0f} {unit}")
    return lines
