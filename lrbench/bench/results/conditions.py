"""What made the numbers move: the machine's state recorded beside each row, summed up.

Each row records the 1-minute load average before and after its case (``load_1m``,
``load_1m_after``), the logical CPUs the run could use (``cpus``), the cpufreq governor and
frequency where readable, and on CUDA the GPU's clocks, power, temperature and throttle reasons
(:mod:`lrbench.bench.measure.machine`). The machine was **busy** when the load exceeded the CPUs
by more than :data:`BUSY_MARGIN`: more threads wanted to run than there were cores, so the run's
own threads waited for others' and its times are inflated and noisier. (The run's own threads
count in the load: a load up to the CPU count is the run itself.)

The **setup**: :data:`SETUP_COLUMNS`, the software and memory settings that change times without
changing the code under test: the versions of torch, Triton (fused_triton's compiler) and Python,
and ``allocator`` (the environment variables that change how the process gets memory, then the
system's transparent huge page mode; :func:`lrbench.bench.measure.machine.allocator_settings`).
Rows written before the huge page mode was recorded, and rows of systems without one, say
``default`` or ``NAME=value`` alone: such a value matches any with the same variables, whatever
the mode. Two sides of a comparison under different setups compare the setups
as well as the code, and a merged run with one machine under two setups mixes them in one table:
both are allowed (comparing allocators is a fair question), and both are said
(:func:`setup_differences`, :func:`mixed_setups`).
"""

from __future__ import annotations

import os

import pandas as pd

from lrbench.bench.measure.machine import split_allocator_settings
from lrbench.bench.results import metrics

BUSY_MARGIN = 0.5  # runnable threads beyond the CPUs, on average over a minute
# GPU throttle reasons that are states, not slowdowns
BENIGN_THROTTLE = {"", "none", "gpu_idle", "applications_clocks_setting"}
SETUP_COLUMNS = ("torch", "triton", "python", "allocator")


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


def above_peak_warning(frame: pd.DataFrame) -> str | None:
    """One sentence when timed rows ran faster than the machine's measured GEMM peak
    (``pct_of_peak`` above 100): either some library reaches more than the routes of
    :data:`lrbench.bench.measure.limits.ROUTES`, so the peak is too low, or the closed-form MACs
    count more than those cases do; ``None`` when none did (or none was recorded)."""
    pct = _numeric(frame, "pct_of_peak")
    above = pct > 100
    if not above.any():
        return None
    worst = pct[above].idxmax()
    return (f"{int(above.sum())} of {int(pct.notna().sum())} timed cases ran above 100% of the "
            f"measured GEMM peak (up to {pct[worst]:.0f}%, {frame.loc[worst, 'case_id']}): either "
            "some library reaches more on this machine than the routes the peak is measured by, "
            "and then every `% of peak` of that device and dtype is too high, by "
            f"{pct[worst] / 100:.2f}x at least, or the closed-form MACs count more than those cases "
            "do (docs/benchmarking.md, \"Machine limits and the roofline\")")


def _recorded_route(rows: pd.DataFrame) -> str:
    """The GEMM route that gave most of ``rows``' peaks ("" where none was recorded: rows written
    before ``peak_route`` was kept)."""
    if "peak_route" not in rows:
        return ""
    routes = rows["peak_route"].fillna("").astype(str)
    routes = routes[routes != ""]
    return routes.mode().iloc[0] if not routes.empty else ""


def measured_roofs(frame: pd.DataFrame) -> list[tuple[str, str, float, float, str]]:
    """``(device, dtype, peak GMAC/s, copy GB/s, route)`` per device and dtype: the medians of the
    rows' measured limits, and the route that gave most of their peaks; what every `% of peak`
    and the roofline are against. Rows without limits are left out."""
    needed = ["device", "dtype", "peak_gmacs_per_s", "peak_gb_per_s"]
    if any(column not in frame for column in needed):
        return []
    rows = frame.dropna(subset=needed[2:])
    return [(device, dtype, pd.to_numeric(group["peak_gmacs_per_s"]).median(),
             pd.to_numeric(group["peak_gb_per_s"]).median(), _recorded_route(group))
            for (device, dtype), group in rows.groupby(["device", "dtype"])]


def roofs_lines(frame: pd.DataFrame) -> list[str]:
    """The report machine section's line per device and dtype with :func:`measured_roofs`."""
    from lrbench.bench.measure.limits import roofs_text

    return [f"- measured roofs, {device} {dtype}: {roofs_text(peak, bandwidth, route)}"
            for device, dtype, peak, bandwidth, route in measured_roofs(frame)]


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


def same_setup(column: str, a: str, b: str) -> bool:
    """Do two recorded values of ``column`` name one setup?"""
    if column != "allocator":
        return a == b
    (vars_a, mode_a), (vars_b, mode_b) = split_allocator_settings(a), split_allocator_settings(b)
    return vars_a == vars_b and (mode_a is None or mode_b is None or mode_a == mode_b)


def _values(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame:
        return []
    cells = frame[column].dropna().astype(str)
    return sorted({cell for cell in cells if cell.strip()})


def _groups(values: list[str], column: str) -> dict[str, list[str]]:
    """``values`` as setups: each named by its fullest value, with the values it stands for. A
    value without a huge page mode joins the one value with a mode that it matches, where there is
    exactly one; otherwise it is a setup of its own."""
    full = [v for v in values if column != "allocator" or split_allocator_settings(v)[1] is not None]
    groups = {v: [v] for v in full}
    for value in values:
        if value in groups:
            continue
        matches = [v for v in full if same_setup(column, value, v)]
        groups.setdefault(matches[0] if len(matches) == 1 else value, []).append(value)
    return groups


def setup_differences(base: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """One sentence per setup column where a value of one side matches none of the other's."""
    found = []
    for column in SETUP_COLUMNS:
        base_values, new_values = _values(base, column), _values(new, column)
        if not base_values or not new_values:
            continue
        if (all(any(same_setup(column, a, b) for b in new_values) for a in base_values)
                and all(any(same_setup(column, a, b) for a in base_values) for b in new_values)):
            continue
        found.append(f"BASE and NEW ran with different {column} ({' | '.join(base_values)} in "
                     f"BASE; {' | '.join(new_values)} in NEW): the verdicts compare these setups "
                     "as well as the code")
    return found


def mixed_setups(frame: pd.DataFrame) -> list[str]:
    """One sentence per machine and setup column with more than one setup among its rows, each
    setup with its number of rows."""
    found = []
    machines = metrics.machine_of(frame)
    for machine in machines.unique():
        rows = frame[machines == machine]
        for column in SETUP_COLUMNS:
            groups = _groups(_values(rows, column), column)
            if len(groups) > 1:
                cells = rows[column].astype(str)
                counts = [f"{name} ({int(cells.isin(members).sum())} rows)"
                          for name, members in sorted(groups.items())]
                found.append(f"{machine}: rows ran with {len(groups)} different {column} values, "
                             f"{' | '.join(counts)}: their times are of different setups")
    return found


def side_notes(base: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """What a comparison of ``base`` with ``new`` says of their conditions: each side's busy machine
    and mixed setups (``BASE: ...``, ``NEW: ...``), then the setups that differ between them."""
    notes = []
    for name, rows in (("BASE", base), ("NEW", new)):
        for warning in (busy_warning(rows), *mixed_setups(rows)):
            if warning:
                notes.append(f"{name}: {warning}")
    return notes + setup_differences(base, new)
