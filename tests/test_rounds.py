"""Every timed case keeps its raw rounds (``rounds_s``), in seconds per call, and they travel with
the run through resume, shards and merge; the machine's state is recorded beside them."""

from __future__ import annotations

import json
import statistics
from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner
from pytest_benchmark.stats import Metadata

from lrbench.bench.matrix.cases import expand, shard
from lrbench.bench.measure import gputimer, limits, machine
from lrbench.bench.measure.runner import Timing, _stats_row, run_matrix
from lrbench.bench.results import conditions, records
from lrbench.bench.results.export import export
from lrbench.bench.results.report import write_report
from lrbench.cli import main
from tests.bench_toys import preset
from tests.test_gputimer import FakeDevice

TIMING = Timing(min_rounds=5, max_time=0.02)
def test_rounds_are_seconds_per_call_even_with_several_iterations_a_round():
    # pytest-benchmark's own bookkeeping, fed as its fixture feeds it: one round of 4 iterations
    # lasting 8 ms is 2 ms a call (Metadata.update divides by the iterations)
    fixture = SimpleNamespace(name="t", fullname="t", group=None, param=None, params=None,
                              extra_info={}, cprofile_stats=None)
    metadata = Metadata(fixture, iterations=4, options={})
    for total in (0.008, 0.012, 0.004):
        metadata.update(total)
    row = _stats_row(metadata.stats)
    assert row["rounds_s"] == pytest.approx([0.002, 0.003, 0.001])
    assert row["median_s"] == pytest.approx(statistics.median(row["rounds_s"]))


def test_a_run_records_its_rounds(tmp_path):
    run_matrix(expand(preset(["unfold"], passes=("fwd",))), tmp_path, timing=TIMING)
    row = records.load(tmp_path).iloc[0]
    rounds = records.parse_rounds(row["rounds_s"])
    assert len(rounds) == row["rounds"] >= 5
    assert statistics.median(rounds) == pytest.approx(row["median_s"], rel=1e-5)


def test_rounds_survive_shards_and_merge(tmp_path):
    cases = expand(preset(["unfold", "im2col_matmul"], passes=("fwd",)))
    pieces = []
    for i in (1, 2):
        run_matrix(shard(cases, i, 2), tmp_path / f"shard{i}", timing=TIMING)
        pieces.append(tmp_path / f"shard{i}")
    records.write(records.merge_runs(pieces), tmp_path / "merged")
    merged = records.load(tmp_path / "merged")
    assert len(merged) == 2
    for row in merged.itertuples():
        rounds = records.parse_rounds(row.rounds_s)
        assert len(rounds) == row.rounds and min(rounds) == pytest.approx(row.min_s, rel=1e-5)


def test_the_cuda_timer_hands_back_every_round_in_order():
    rounds = [0.003, 0.001, 0.004, 0.002]
    device = FakeDevice([0.01, *rounds])
    stats = gputimer.time_cuda(device.call, gputimer.GpuTiming(min_rounds=4, max_time=1e-9,
                                                               warmup=1), device=device)
    assert stats["rounds_s"] == pytest.approx(rounds)


def test_rows_record_the_machine_state(tmp_path):
    run_matrix(expand(preset(["unfold"], passes=("fwd",))), tmp_path, timing=TIMING)
    row = records.load(tmp_path).iloc[0]
    assert row["cpus"] >= 1 and row["load_1m_after"] >= 0
    assert (row["cpu_mhz"] > 0) == (machine.cpu_mhz() is not None)


def test_cpu_frequency_and_governor_come_from_cpufreq_where_present(tmp_path):
    for cpu, khz in (("cpu0", 2000000), ("cpu1", 3000000)):
        folder = tmp_path / cpu / "cpufreq"
        folder.mkdir(parents=True)
        (folder / "scaling_cur_freq").write_text(f"{khz}\n")
        (folder / "scaling_governor").write_text("performance\n")
    assert machine.cpu_mhz(tmp_path) == 2500.0
    assert machine.cpu_governor(tmp_path) == "performance"
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: X\ncpu MHz\t\t: 1000.0\ncpu MHz\t\t: 3000.0\n")
    assert machine.cpu_mhz(tmp_path / "none", info) == 2000.0
    assert machine.cpu_governor(tmp_path / "none") == ""


def test_nvidia_smi_line_becomes_the_gpu_columns():
    state = machine.parse_gpu_query("1755, 2619, 312.45, 61, 0x0000000000000024")
    assert state == {"gpu_sm_mhz": 1755.0, "gpu_mem_mhz": 2619.0, "gpu_power_w": 312.45,
                     "gpu_temp_c": 61.0, "gpu_throttle": "sw_power_cap+sw_thermal_slowdown"}
    assert machine.parse_gpu_query("[N/A], 2619, [N/A], 40, 0x0")["gpu_throttle"] == "none"
    with pytest.raises(ValueError, match="expected 5 fields"):
        machine.parse_gpu_query("1755, 2619")


def _state_rows(**columns) -> pd.DataFrame:
    return pd.DataFrame({"case_id": ["a", "b", "c"], **columns})


def test_a_busy_machine_is_named_with_its_load():
    quiet = _state_rows(load_1m=[1.0, 1.8, 2.0], load_1m_after=[1.9, 2.1, 2.2], cpus=[2, 2, 2])
    assert conditions.busy_warning(quiet) is None  # the run's own two threads
    busy = _state_rows(load_1m=[1.0, 4.2, 2.0], load_1m_after=[1.9, 2.1, 3.1], cpus=[2, 2, 2])
    warning = conditions.busy_warning(busy)
    assert "busy during 2 of 3 cases" in warning and "up to 4.2 on 2 CPUs" in warning
    assert conditions.busy_warning(_state_rows(load_1m=[None] * 3)) is None  # nothing recorded


def test_gpu_throttling_is_named_and_idle_is_not_a_slowdown():
    rows = _state_rows(gpu_throttle=["none", "gpu_idle", "sw_power_cap+hw_slowdown"])
    assert "1 of 3 cases (hw_slowdown, sw_power_cap)" in conditions.throttled_warning(rows)
    assert conditions.throttled_warning(_state_rows(gpu_throttle=["none", "gpu_idle", ""])) is None


def test_cases_above_the_measured_peak_say_the_peak_is_too_low():
    rows = _state_rows(pct_of_peak=[47.0, 162.0, 120.0])
    warning = conditions.above_peak_warning(rows)
    assert "2 of 3 timed cases ran above 100%" in warning and "up to 162%, b" in warning
    assert "too high, by 1.62x at least, or the closed-form MACs count more" in warning
    # untimed rows (failed, skipped) have no percentage and are not counted
    assert "1 of 2 timed" in conditions.above_peak_warning(_state_rows(pct_of_peak=[None, 101, 99]))
    assert conditions.above_peak_warning(_state_rows(pct_of_peak=[47.0, 100.0, None])) is None
    assert conditions.above_peak_warning(_state_rows(load_1m=[1, 1, 1])) is None  # no column


def test_the_report_warns_when_the_machine_was_busy(tmp_path):
    run_matrix(expand(preset(["unfold"], passes=("fwd",))), tmp_path, timing=TIMING)
    frame = records.load(tmp_path)
    assert frame.loc[0, "peak_route"] in limits.ROUTES  # the row says which route gave the peak
    frame["load_1m"], frame["cpus"] = 9.0, 2
    records.write(frame, tmp_path)
    text = write_report(tmp_path).read_text()
    assert "**Warning**: the machine was busy during 1 of 1 cases" in text
    route = frame.loc[0, "peak_route"]
    assert f"- measured roofs, cpu float32: GEMM {frame.loc[0, 'peak_gmacs_per_s']:.1f} GMAC/s " \
           f"({route}), copy" in text  # what every `% of peak` is against
    assert "above 100% of the measured GEMM peak" not in text
    frame["peak_gmacs_per_s"] = frame["achieved_gmacs_per_s"] / 2  # the case at 200% of it
    records.write(frame, tmp_path)
    text = write_report(tmp_path).read_text()
    assert "**Warning**: 1 of 1 timed cases ran above 100% of the measured GEMM peak (up to 200%" \
        in text


def test_export_github_action_benchmark(tmp_path):
    run_matrix(expand(preset(["unfold"], passes=("fwd",))), tmp_path, timing=TIMING)
    result = CliRunner().invoke(main, ["export", str(tmp_path), "--format",
                                       "github-action-benchmark", "--out", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "b.json").read_text())
    row = records.load(tmp_path).iloc[0]
    assert [e["name"] for e in entries] == [row["case_id"]]
    assert entries[0]["unit"] == "ms" and entries[0]["value"] == pytest.approx(row["median_s"] * 1e3)
    assert entries[0]["range"].startswith("± ") and "rounds" in entries[0]["extra"]
    with pytest.raises(ValueError, match="format: expected one of github-action-benchmark"):
        export(records.load(tmp_path), "csv")


def test_passes_time_each_case_again_and_keep_each_pass(tmp_path):
    """Three passes: each ok row holds three passes of rounds, its statistics over all of them;
    each pass has its own pytest-benchmark JSON and its own progress lines."""
    cases = expand(preset(["unfold", "im2col_matmul"], passes=("fwd", "fwd_bwd")))
    timing = Timing(min_rounds=3, max_time=0.005, passes=3)
    lines = []
    summary = run_matrix(cases, tmp_path, timing=timing,
                         on_case=lambda i, n, row: lines.append(row))
    rows = records.load(tmp_path)
    ok = rows[rows["status"] == "ok"]
    assert len(ok) == len(cases) == summary.statuses["ok"]
    for row in ok.itertuples():
        passes = records.parse_passes(row.rounds_s)
        assert len(passes) == 3 and all(len(p) >= 3 for p in passes)
        every = [t for p in passes for t in p]
        assert row.rounds == len(every) and row.min_s == pytest.approx(min(every))
        assert row.median_s == pytest.approx(statistics.median(every))
    assert sorted(p.name for p in (tmp_path / "pytest-benchmark").glob("*.json")) == [
        "run-pass2.json", "run-pass3.json", "run.json"]
    further = [row for row in lines if row.get("timing_pass")]
    assert sorted(r["timing_pass"] for r in further) == [2] * len(cases) + [3] * len(cases)


def test_resume_gives_rows_the_passes_they_lack(tmp_path):
    cases = expand(preset(["unfold"], passes=("fwd", "fwd_bwd")))
    run_matrix(cases, tmp_path, timing=Timing(min_rounds=3, max_time=0.005))
    assert {len(records.parse_passes(c)) for c in records.load(tmp_path)["rounds_s"]} == {1}
    before = records.load(tmp_path)
    run_matrix(cases, tmp_path, resume=True, timing=Timing(min_rounds=3, max_time=0.005, passes=2))
    after = records.load(tmp_path)
    assert {len(records.parse_passes(c)) for c in after["rounds_s"]} == {2}
    for b, a in zip(before["rounds_s"], after["rounds_s"], strict=True):
        assert records.parse_passes(a)[0] == records.parse_passes(b)[0]  # the first pass kept
    assert list(after["timestamp"]) == list(before["timestamp"])  # no case gated or run anew


def test_rounds_cells_keep_passes_apart_and_old_cells_read_as_one_pass():
    cell = records.format_passes([[1e-3, 2e-3], [3e-3]])
    assert records.parse_passes(cell) == [[1e-3, 2e-3], [3e-3]]
    assert records.parse_rounds(cell) == [1e-3, 2e-3, 3e-3]
    old = records.format_rounds([1e-3, 2e-3])
    assert records.parse_passes(old) == [[1e-3, 2e-3]] and records.parse_passes("") == []
    with pytest.raises(ValueError, match="passes must be >= 1"):
        Timing(passes=0)


def test_a_row_with_very_many_rounds_is_read_and_kept_through_passes(tmp_path):
    """A fast case's rounds over several passes outgrow the csv module's 131,072-character cell
    limit, under which pandas' python engine skipped the line without a word (rows lost at the
    next rewrite): they are read, and a further pass keeps every row."""
    run_matrix(expand(preset(["unfold"], passes=("fwd", "fwd_bwd"))), tmp_path, timing=TIMING)
    frame = records.load(tmp_path)
    first = frame.loc[0, "case_id"]
    frame.loc[0, "rounds_s"] = records.format_passes([[1e-5 + 1e-9 * i for i in range(12000)]])
    records.write(frame, tmp_path)
    assert len(frame.loc[0, "rounds_s"]) > 131072
    assert records.add_pass(tmp_path, first, [2e-5] * 3) == 2
    after = records.load(tmp_path)
    assert len(after) == len(frame) and after.loc[0, "rounds"] == 12003


def test_a_line_the_parser_skips_counts_as_dropped_and_blocks_a_rewrite(tmp_path, monkeypatch):
    run_matrix(expand(preset(["unfold"], passes=("fwd", "fwd_bwd"))), tmp_path, timing=TIMING)
    frame = records.load(tmp_path)
    frame.loc[0, "rounds_s"] = records.format_rounds([1e-5] * 200)  # 2,600 characters
    frame.loc[1, "rounds_s"] = records.format_rounds([1e-5] * 5)
    records.write(frame, tmp_path)
    monkeypatch.setattr(records, "_any_field_size", _field_limit(1000))  # as before the fix
    loaded = records.read(tmp_path)
    assert loaded.dropped == 1 and list(loaded.rows["case_id"]) == [frame.loc[1, "case_id"]]
    with pytest.raises(ValueError, match="cannot be read; not rewritten"):
        records.add_pass(tmp_path, frame.loc[0, "case_id"], [1e-3])
    monkeypatch.undo()
    assert len(records.load(tmp_path)) == len(frame)  # nothing lost


def _field_limit(limit: int):
    import contextlib
    import csv

    @contextlib.contextmanager
    def limited():
        before = csv.field_size_limit(limit)
        try:
            yield
        finally:
            csv.field_size_limit(before)

    return limited


def test_a_further_pass_writes_into_columns_read_as_integers(tmp_path):
    """A run whose spreads were all 0 reads them back as integers; a pass's float goes in."""
    run_matrix(expand(preset(["unfold"], passes=("fwd", "fwd_bwd"))), tmp_path, timing=TIMING)
    frame = records.load(tmp_path)
    frame[["iqr_s", "stddev_s"]] = 0
    records.write(frame, tmp_path)
    assert records.load(tmp_path)["iqr_s"].dtype.kind == "i"
    records.add_pass(tmp_path, frame.loc[0, "case_id"], [1e-3, 2e-3, 4e-3])
    assert records.load(tmp_path).loc[0, "iqr_s"] > 0
