"""Derived metrics of a run's rows, computed in this one place from the measured columns.

Measured columns (written by the runner): ``median_s``, ``macs``, ``B``, ``status``,
``baseline``... Derived here, for every ``ok`` row:

- ``gmacs_per_s``: closed-form forward MACs / median, for forward passes (``fwd``) only;
- ``items_per_s``: ``B`` / median (images per second for the networks);
- ``speedup_vs_baseline``: the baseline implementation's median on the same case (same target,
  shape, dtype, device and pass) and the same machine (:func:`machine_of`) / this median; the
  baseline is the row's ``baseline`` column, set by the matrix
  (:data:`lrbench.bench.matrix.cases.DEFAULT_BASELINE` unless a preset group names another);
- ``speedup_vs_unfold``: the same number where the baseline is ``unfold`` (the column of earlier
  versions, kept for the scripts that read it);
- efficiency against the machine's measured limits (``peak_gmacs_per_s``, ``peak_gb_per_s``,
  :mod:`lrbench.bench.measure.limits`), for every pass, with the pass's closed-form MACs
  (:func:`lrbench.bench.matrix.macs.pass_macs`: backward = 2x forward) and minimal bytes
  (``min_bytes``, :func:`lrbench.bench.matrix.macs.case_min_bytes`): ``achieved_gmacs_per_s``,
  ``pct_of_peak`` (of the GEMM peak), ``intensity_macs_per_byte``, the roofline
  ``min(peak, intensity * bandwidth)`` as ``roofline_gmacs_per_s`` with the roof that binds
  (``roofline_bound``: ``compute`` or ``memory``) and ``pct_of_roofline``.

:func:`derive` is idempotent: loading, merging and reporting all call it.
"""

from __future__ import annotations

import pandas as pd

from lrbench.bench.matrix.cases import (
    DEFAULT_BASELINE,
    FLOOR,
    TARGET_AXES,
    parse_case_id,
    with_impl,
)
from lrbench.bench.matrix.macs import PASS_MACS

FORWARD_PASSES = ("fwd",)  # the passes that the closed-form (forward) MAC count describes
# What tells machines apart: a time from one is never divided by a time from another.
MACHINE_COLUMNS = ("cpu", "gpu", "threads")


def machine_of(frame: pd.DataFrame) -> pd.Series:
    """Each row's machine, as a label: ``CPU model / GPU model / N threads``."""
    def label(cpu, gpu, threads) -> str:
        threads = pd.to_numeric(threads, errors="coerce")
        parts = [str(cpu) if str(cpu) not in ("", "nan") else "unknown CPU",
                 str(gpu) if str(gpu) not in ("", "nan") else "no GPU",
                 f"{int(threads)} threads" if pd.notna(threads) else "threads unknown"]
        return " / ".join(parts)

    columns = [frame[c] if c in frame else pd.Series("", index=frame.index)
               for c in MACHINE_COLUMNS]
    return pd.Series([label(*values) for values in zip(*columns, strict=True)], index=frame.index,
                     dtype=object)


def _baselines(frame: pd.DataFrame) -> pd.Series:
    """Each row's baseline; rows of CSVs written before the column existed get the default
    where their target varies the implementation (a network's floor rows have none)."""
    baseline = frame["baseline"].fillna("").astype(str)
    varies = frame["target"].map(lambda t: TARGET_AXES.get(t, {}).get("impl", "") is None)
    varies = varies.astype(bool) & (frame["impl"].astype(str) != FLOOR)
    return baseline.where((baseline != "") | ~varies, DEFAULT_BASELINE)


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every derived column recomputed from the measured ones (a copy)."""
    frame = frame.copy()
    ok = frame["status"] == "ok"
    median = pd.to_numeric(frame["median_s"], errors="coerce")
    macs = pd.to_numeric(frame["macs"], errors="coerce")
    forward = frame["pass"].isin(FORWARD_PASSES)
    frame["gmacs_per_s"] = (macs / median / 1e9).where(ok & forward)
    frame["items_per_s"] = (pd.to_numeric(frame["B"], errors="coerce") / median).where(ok)

    frame["baseline"] = _baselines(frame)
    machine = machine_of(frame)  # the baseline is looked up on the row's own machine
    timed = pd.Series(median[ok].to_numpy(),
                      index=(machine[ok] + "|" + frame.loc[ok, "case_id"]).to_numpy())
    timed = timed[~timed.index.duplicated(keep="last")]
    keys = [f"{where}|{with_impl(cid, base)}" if base else "" for where, cid, base
            in zip(machine, frame["case_id"], frame["baseline"], strict=True)]
    frame["speedup_vs_baseline"] = (pd.Series(keys, index=frame.index).map(timed)
                                    / median).where(ok)
    frame["speedup_vs_unfold"] = frame["speedup_vs_baseline"].where(frame["baseline"] == "unfold")
    return _efficiency(frame, ok, median, macs)


def _efficiency(frame: pd.DataFrame, ok: pd.Series, median: pd.Series,
                macs: pd.Series) -> pd.DataFrame:
    """The roofline columns (module docstring) from the pass's MACs, the minimal bytes and the
    measured limits; empty where one of them is missing."""
    def column(name: str) -> pd.Series:
        values = frame[name] if name in frame else pd.Series(float("nan"), index=frame.index)
        return pd.to_numeric(values, errors="coerce")

    peak, bandwidth, min_bytes = (column(c) for c in
                                  ("peak_gmacs_per_s", "peak_gb_per_s", "min_bytes"))
    work = macs * frame["pass"].map(PASS_MACS)  # the pass's closed-form MACs
    achieved = (work / median / 1e9).where(ok)
    intensity = work / min_bytes  # MACs per byte
    memory_roof = intensity * bandwidth
    roof = memory_roof.where(memory_roof < peak, peak)
    frame["achieved_gmacs_per_s"] = achieved
    frame["pct_of_peak"] = 100 * achieved / peak
    frame["intensity_macs_per_byte"] = intensity
    frame["roofline_gmacs_per_s"] = roof.where(peak.notna() & memory_roof.notna())
    bound = pd.Series("compute", index=frame.index).where(memory_roof >= peak, "memory")
    frame["roofline_bound"] = bound.where(frame["roofline_gmacs_per_s"].notna(), "")
    frame["pct_of_roofline"] = 100 * achieved / frame["roofline_gmacs_per_s"]
    return frame


def impl_of(case_id: str) -> str:
    """The implementation as run, inside a case id (``unfold``, ``unfold@inductor``)."""
    return parse_case_id(case_id)["impl"]


def shape_of(case_id: str) -> str:
    """The shape label inside a case id (``B8-C100-56x56-k7-m8-s1``)."""
    return parse_case_id(case_id)["shape"]
