"""compare flags regressions; the report is drawn from the CSV only, with only the plots it has
data for; the size exponent is fitted, not assumed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lrbench.bench.comparison.compare import compare_runs, parse_threshold
from lrbench.bench.matrix.cases import expand
from lrbench.bench.measure.runner import Timing, run_matrix
from lrbench.bench.results import plots, records
from lrbench.bench.results.report import write_report
from tests.bench_toys import TINY, preset
from tests.helpers import with_rounds

TIMING = Timing(min_rounds=1, max_time=0.001)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real tiny run: unfold and im2col_matmul over a k sweep and a size sweep."""
    out = tmp_path_factory.mktemp("run")
    shapes = ([{**TINY, "k": k} for k in (1, 3, 5)]
              + [{**TINY, "H": size, "W": size} for size in (4, 8)])
    run_matrix(expand(preset(["unfold", "im2col_matmul"], shapes=shapes)), out, timing=TIMING)
    return out


def _sides(run_dir, tmp_path, factor: float, impl: str, spread: float = 0.02):
    """BASE and NEW with synthetic rounds; NEW's ``impl`` rows ``factor`` times slower."""
    frame = records.load(run_dir)
    records.write(with_rounds(frame, spread=spread), tmp_path / "base")
    records.write(with_rounds(frame, spread=spread, seed=1, factor=factor,
                              mask=frame["impl"] == impl), tmp_path / "new")
    return tmp_path / "base", tmp_path / "new"


def test_compare_flags_a_planted_2x_slowdown(run_dir, tmp_path):
    base, new = _sides(run_dir, tmp_path, 2.0, "im2col_matmul")
    result = compare_runs(base, new, threshold=0.10)
    frame = records.load(run_dir)
    assert set(result.regressions["case_id"]) == set(frame[frame["impl"] == "im2col_matmul"]["case_id"])
    assert result.regressions["ratio"].between(1.9, 2.1).all() and result.failed
    assert (result.regressions["p_value"] < 0.01).all()
    others = result.table[~result.table["case_id"].isin(result.regressions["case_id"])]
    assert set(others["verdict"]) == {"unchanged"}


def test_compare_passes_an_unchanged_run(run_dir):
    result = compare_runs(run_dir, run_dir, threshold=0.10)  # the same real rounds both sides
    assert len(result.table) == len(records.load(run_dir)) and not result.failed
    assert set(result.table["verdict"]) <= {"unchanged", "unsure"}
    assert result.table["ratio"].eq(1).all()


def test_compare_tolerates_a_slowdown_under_the_threshold(run_dir, tmp_path):
    base, new = _sides(run_dir, tmp_path, 1.03, "unfold")
    result = compare_runs(base, new, threshold=0.10)
    assert set(result.table["verdict"]) == {"unchanged"} and not result.failed


def test_compare_does_not_call_a_shift_inside_wide_noise(run_dir, tmp_path):
    base, new = _sides(run_dir, tmp_path, 1.15, "unfold", spread=0.6)
    result = compare_runs(base, new, threshold=0.10)
    assert result.regressions.empty and "unsure" in set(result.table["verdict"])
    assert result.table["unstable"].all()


def test_runs_without_rounds_are_unsure_with_the_reason(run_dir, tmp_path):
    frame = records.load(run_dir)
    frame["median_s"] = frame["median_s"] * 3  # an old CSV: medians only, wildly slower
    frame["rounds_s"] = ""
    records.write(frame, tmp_path)
    result = compare_runs(run_dir, tmp_path, threshold=0.10)
    assert set(result.table["verdict"]) == {"unsure"} and not result.failed
    assert result.table["note"].str.contains("no rounds in NEW").all()


def test_several_runs_without_rounds_are_compared_on_their_medians(run_dir, tmp_path):
    from lrbench.bench.comparison.compare import compare_frames

    frame = records.load(run_dir).assign(rounds_s="")
    frame = frame[frame["status"] == "ok"].iloc[[0]]
    runs = [frame.assign(median_s=frame["median_s"] * (1 + 0.01 * i)) for i in range(8)]
    slower = [run.assign(median_s=run["median_s"] * 2) for run in runs]
    result = compare_frames(pd.concat(runs), pd.concat(slower), threshold=0.10)
    row = result.table.iloc[0]
    assert row["verdict"] == "slower" and row["base_rounds"] == 8 and "run medians" in row["note"]


@pytest.mark.parametrize("text", ["10", "abc%", "-5%", "0%", "", "ten percent"])
def test_threshold_must_be_a_percentage(text):
    with pytest.raises(ValueError, match="threshold"):
        parse_threshold(text)


def test_threshold_parses():
    assert parse_threshold("10%") == pytest.approx(0.10)
    assert parse_threshold(" 2.5% ") == pytest.approx(0.025)


def test_report_has_tables_and_only_the_plots_with_data(run_dir):
    path = write_report(run_dir)
    text = path.read_text()
    for name in ("time_vs_k.png", "time_vs_size.png", "memory_vs_k.png",
                 "speedup_vs_baseline.png"):
        assert (run_dir / name).stat().st_size > 1000 and f"]({name})" in text
    assert not (run_dir / "networks.png").exists() and not (run_dir / "per_stage.png").exists()
    assert "each implementation against the baseline (unfold)" in text and "im2col_matmul" in text
    assert "Scaling with input size" in text
    assert text.count("\n| op:") == len(records.load(run_dir))  # every timed case listed


def test_sweep_picks_the_family_with_the_most_sizes():
    frame = pd.DataFrame([{
        "case_id": f"op:x:B1-C4-{h}x{h}-k3-m2-s1:float32:cpu:fwd", "target": "op", "impl": "x",
        "B": 1, "C": 4, "H": h, "W": h, "k": 3, "m": 2, "stride": 1, "dtype": "float32",
        "device": "cpu", "pass": "fwd", "status": "ok",
        "median_s": 1e-6 * h**1.5, "macs": 100 * h * h,
    } for h in [8, 16, 32, 64]])
    assert np.isclose(plots.sweep(frame, "H")["H"].nunique(), 4)
    assert plots.sweep(frame.iloc[:1], "H").empty


def test_network_rows_get_their_table_and_throughput_plot(run_dir, tmp_path):
    frame = records.load(run_dir)
    network = frame.iloc[[0]].copy()
    network[["case_id", "target", "impl", "H", "W", "pass"]] = [
        "lrnet50:unfold:B1-32x32:float32:cpu:train", "lrnet50", "unfold", 32, 32, "train"]
    network["items_per_s"] = 1 / network["median_s"]
    records.write(pd.concat([frame, network], ignore_index=True), tmp_path)
    text = write_report(tmp_path).read_text()
    assert "## Whole networks" in text and "lrnet50:unfold:B1-32x32" in text
    assert (tmp_path / "networks.png").stat().st_size > 1000


def test_compare_flags_a_case_that_broke(run_dir, tmp_path):
    frame = records.load(run_dir)
    frame.loc[0, ["status", "reason", "median_s"]] = ["failed", "accuracy gate", float("nan")]
    records.write(frame, tmp_path)
    result = compare_runs(run_dir, tmp_path, threshold=0.10)
    assert result.broken == [frame.loc[0, "case_id"]] and result.regressions.empty


def test_repeats_with_a_run_missing_are_compared_pass_by_pass(run_dir, tmp_path):
    from lrbench.bench.comparison.compare import compare_frames

    frame = records.load(run_dir)
    frame = frame[frame["status"] == "ok"].iloc[[0]]
    base = pd.concat([with_rounds(frame, seed=s) for s in range(3)])
    new = pd.concat([with_rounds(frame, seed=10 + s, factor=2.0) for s in range(2)])
    row = compare_frames(base, new, threshold=0.10).table.iloc[0]
    assert row["verdict"] == "slower" and row["pairs"] == 0 and row["passes"] == 6  # 2 runs x 3


def test_runs_of_one_pass_get_no_slower_verdict_and_say_why(run_dir, tmp_path):
    from lrbench.bench.comparison.compare import compare_frames

    frame = records.load(run_dir)
    base = with_rounds(frame, passes=1)
    new = with_rounds(frame, seed=1, passes=1, factor=2.0)
    result = compare_frames(base, new, threshold=0.10)
    assert not result.failed and set(result.table["verdict"]) == {"unsure"}
    assert (result.table["ratio"] > 1.9).all() and (result.table["p_value"] < 1e-6).all()
    assert result.table["note"].str.contains("one pass a side").all()


def test_a_comparison_of_many_unchanged_cases_under_drift_calls_none(run_dir):
    """69 cases, the same code both sides, every pass moved by 12% drift: the p-values adjusted
    over the cases leave no call; a 2x slowdown of three of them is still caught."""
    from lrbench.bench.comparison.compare import compare_frames

    row = records.load(run_dir)
    row = row[row["status"] == "ok"].iloc[[0]]
    frame = pd.concat([row.assign(case_id=f"{row['case_id'].iloc[0]}-{i}") for i in range(69)],
                      ignore_index=True)
    for seed in range(5):
        base = with_rounds(frame, seed=seed, passes=5, drift=0.12)
        new = with_rounds(frame, seed=100 + seed, passes=5, drift=0.12)
        result = compare_frames(base, new, threshold=0.10)
        assert result.counts()["slower"] == result.counts()["faster"] == 0, seed
        slowed = with_rounds(frame, seed=100 + seed, passes=5, drift=0.05, factor=2.0,
                             mask=frame.index < 3)
        caught = compare_frames(with_rounds(frame, seed=seed, passes=5, drift=0.05), slowed,
                                threshold=0.10)
        assert set(caught.regressions["case_id"]) == set(frame["case_id"][:3]), seed
        assert (caught.table["p_adjusted"] >= caught.table["p_value"]).all()


def test_adjusting_for_many_cases_turns_a_lone_marginal_call_unsure():
    from lrbench.bench.comparison.compare import _adjust

    table = pd.DataFrame({"verdict": ["slower"] + ["unchanged"] * 9, "p_value": [0.005] + [0.5] * 9,
                          "note": [""] * 10})
    adjusted = _adjust(table, alpha=0.01)
    assert adjusted.loc[0, "verdict"] == "unsure" and adjusted.loc[0, "p_adjusted"] == 0.05
    assert "adjusted for the 10 cases" in adjusted.loc[0, "note"]
    assert _adjust(table.iloc[:1], alpha=0.01).loc[0, "verdict"] == "slower"
