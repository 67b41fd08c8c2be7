"""Derived metrics of a run's rows, computed in this one place from the measured columns.

Measured columns (written by the runner): ``median_s``, ``macs``, ``B``, ``status``,
``baseline``... Derived here, for every ``ok`` row:

- ``gmacs_per_s``: closed-form forward MACs / median, for forward passes (``fwd``) only;
- ``items_per_s``: ``B`` / median (images per second for the networks);
- ``speedup_vs_baseline``: the baseline implementation's median on the same case (same target,
  shape, dtype, device and pass) / this median; the baseline is the row's ``baseline`` column,
  set by the matrix (:data:`lrbench.bench.cases.DEFAULT_BASELINE` unless a preset group names
  another);
- ``speedup_vs_unfold``: the same number where the baseline is ``unfold`` (the column of earlier
  versions, kept for the scripts that read it).

:func:`derive` is idempotent: loading, merging and reporting all call it.
"""

from __future__ import annotations

import pandas as pd

from lrbench.bench.cases import DEFAULT_BASELINE, TARGET_AXES, parse_case_id, with_impl

FORWARD_PASSES = ("fwd",)  # the passes that the closed-form (forward) MAC count describes


def _baselines(frame: pd.DataFrame) -> pd.Series:
    """Each row's baseline; rows of CSVs written before the column existed get the default
    where their target varies the implementation."""
    baseline = frame["baseline"].fillna("").astype(str)
    varies = frame["target"].map(lambda t: TARGET_AXES.get(t, {}).get("impl", "") is None)
    varies = varies.astype(bool)
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
    timed = pd.Series(median[ok].to_numpy(), index=frame.loc[ok, "case_id"].to_numpy())
    timed = timed[~timed.index.duplicated(keep="last")]
    keys = [with_impl(cid, base) if base else "" for cid, base
            in zip(frame["case_id"], frame["baseline"], strict=True)]
    frame["speedup_vs_baseline"] = (pd.Series(keys, index=frame.index).map(timed)
                                    / median).where(ok)
    frame["speedup_vs_unfold"] = frame["speedup_vs_baseline"].where(frame["baseline"] == "unfold")
    return frame


def impl_of(case_id: str) -> str:
    """The implementation as run, inside a case id (``unfold``, ``unfold@inductor``)."""
    return parse_case_id(case_id)["impl"]


def shape_of(case_id: str) -> str:
    """The shape label inside a case id (``B8-C100-56x56-k7-m8-s1``)."""
    return parse_case_id(case_id)["shape"]
