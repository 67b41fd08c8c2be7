"""Derived metrics, computed in one place from planted rows: exact values, the baseline as data."""

from __future__ import annotations

import pandas as pd
import pytest

from lrbench.bench.results import metrics, records


def _row(impl, median_s, *, baseline="unfold", target="op", pass_="fwd", status="ok", B=8,
         macs=2_000_000_000):
    shape = f"B{B}-C16-8x8-k3-m4-s1"
    return {"case_id": f"{target}:{impl}:{shape}:float32:cpu:{pass_}", "target": target,
            "impl": impl, "B": B, "pass": pass_, "dtype": "float32", "device": "cpu",
            "median_s": median_s, "macs": macs, "baseline": baseline, "status": status}


def _frame(rows):
    return pd.DataFrame(rows).reindex(columns=records.COLUMNS)


def test_speedup_is_the_baselines_median_over_this_one_on_the_same_case():
    frame = metrics.derive(_frame([_row("unfold", 0.5), _row("fast", 0.1),
                                   _row("fast", 0.4, pass_="fwd_bwd"),
                                   _row("unfold", 2.0, pass_="fwd_bwd")]))
    by = frame.set_index(["impl", "pass"])
    assert by.loc[("fast", "fwd"), "speedup_vs_baseline"] == pytest.approx(5.0)
    assert by.loc[("fast", "fwd_bwd"), "speedup_vs_baseline"] == pytest.approx(5.0)
    assert by.loc[("unfold", "fwd"), "speedup_vs_baseline"] == pytest.approx(1.0)
    # the column of earlier versions carries the same number while the baseline is unfold
    assert by.loc[("fast", "fwd"), "speedup_vs_unfold"] == pytest.approx(5.0)


def test_another_baseline_is_read_from_the_rows():
    frame = metrics.derive(_frame([_row("reference", 1.0, baseline="reference"),
                                   _row("unfold", 0.25, baseline="reference")]))
    unfold = frame.set_index("impl").loc["unfold"]
    assert unfold["speedup_vs_baseline"] == pytest.approx(4.0)
    assert pd.isna(unfold["speedup_vs_unfold"])


def test_rate_columns_are_exact_and_only_where_they_apply():
    frame = metrics.derive(_frame([_row("fast", 0.25), _row("fast", 0.5, pass_="fwd_bwd"),
                                   _row("broken", 0.1, status="failed")]))
    by = frame.set_index(["impl", "pass"])
    assert by.loc[("fast", "fwd"), "gmacs_per_s"] == pytest.approx(8.0)  # 2e9 MACs / 0.25 s
    assert by.loc[("fast", "fwd"), "items_per_s"] == pytest.approx(32.0)  # B=8 / 0.25 s
    assert pd.isna(by.loc[("fast", "fwd_bwd"), "gmacs_per_s"])  # forward MACs only
    assert by.loc[("broken", "fwd")][["gmacs_per_s", "items_per_s",
                                      "speedup_vs_baseline"]].isna().all()


def test_no_baseline_timed_means_no_speedup_and_derive_is_idempotent():
    once = metrics.derive(_frame([_row("fast", 0.1), _row("conv", 0.2, target="conv3x3",
                                                          baseline="")]))
    assert once["speedup_vs_baseline"].isna().all()
    pd.testing.assert_frame_equal(metrics.derive(once), once)


def test_rows_written_before_the_baseline_column_get_the_default(tmp_path):
    old = _frame([_row("unfold", 0.5), _row("fast", 0.1)]).drop(columns=["baseline"])
    old.to_csv(tmp_path / "results.csv", index=False)
    loaded = records.load(tmp_path).set_index("impl")
    assert loaded.loc["fast", "baseline"] == "unfold"
    assert loaded.loc["fast", "speedup_vs_baseline"] == pytest.approx(5.0)
