"""The harness on CPU with toy implementations: gate before timing, reasons recorded,
kill-and-resume, shards merged, peak memory measured."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from lrbench.bench.matrix.cases import expand, shard, with_impl
from lrbench.bench.measure import targets
from lrbench.bench.measure.machine import allocator_settings, huge_page_mode
from lrbench.bench.measure.memory import peak_extra_bytes
from lrbench.bench.measure.runner import Timing, run_matrix
from lrbench.bench.results import records
from tests.bench_toys import ARMED, CALLS, LAYOUTS, TINY, preset, registered_toys
from tests.helpers import outcome, plant_medians

TIMING = Timing(min_rounds=1, max_time=0.001)
SHAPES = [TINY, {**TINY, "k": 5}]


@pytest.fixture
def toys():
    with registered_toys():
        yield


def _benchmarked_names(summary) -> set[str]:
    data = json.loads(summary.json_path.read_text())
    return {bench["param"] for bench in data["benchmarks"]}


def test_wrong_implementation_is_recorded_failed_and_never_timed(toys, tmp_path):
    cases = expand(preset(["unfold", "toy_wrong"]))
    summary = run_matrix(cases, tmp_path, timing=TIMING)
    rows = records.load(tmp_path).set_index("impl")
    assert set(rows.loc["toy_wrong", "status"]) == {"failed"}
    assert all("accuracy gate" in r for r in rows.loc["toy_wrong", "reason"])
    assert rows.loc["toy_wrong", "median_s"].isna().all()
    assert rows.loc["toy_wrong", "max_abs_err"].gt(0).all()
    # the gate ran it (once per shape, forward and backward), the timer never did
    assert CALLS["toy_wrong"] == 1
    timed = _benchmarked_names(summary)
    assert timed == {c.case_id for c in cases if c.impl == "unfold"}
    assert set(rows.loc["unfold", "status"]) == {"ok"}
    assert (rows.loc["unfold", "speedup_vs_unfold"] == 1.0).all()


def test_each_memory_format_is_gated_and_timed_in_that_format(toys, tmp_path):
    cases = expand(preset(["unfold", "toy_wrong_nhwc"], formats=("contiguous", "channels_last")))
    run_matrix(cases, tmp_path, timing=TIMING)
    rows = records.load(tmp_path)
    assert len(rows) == 8 and set(rows["memory_format"]) == {"contiguous", "channels_last"}
    assert rows["case_id"].str.contains("-s1-channels_last:").sum() == 4  # a case id per format
    by = rows.set_index(["impl", "memory_format"])["status"]
    # wrong only on channels_last inputs: the gate must have given it channels_last inputs
    assert set(by.loc[("toy_wrong_nhwc", "channels_last")]) == {"failed"}
    assert set(by.loc[("toy_wrong_nhwc", "contiguous")]) == {"ok"}
    assert set(by.loc["unfold"]) == {"ok"}
    # speedups pair rows of one format: the baseline's channels_last row, not its NCHW one
    ok = rows[rows["status"] == "ok"].set_index("case_id")
    for case_id, row in ok.iterrows():
        baseline = ok.loc[with_impl(case_id, "unfold")]
        assert baseline["memory_format"] == row["memory_format"]
        assert row["speedup_vs_unfold"] == pytest.approx(baseline["median_s"] / row["median_s"])


@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
@pytest.mark.parametrize("target", ["op", "layer", "conv3x3"])
def test_the_timed_call_gets_the_case_memory_format(toys, fmt, target):
    group = {**preset(["toy_wrong_nhwc"], formats=(fmt,))["groups"][0], "target": target}
    case, = expand({"groups": [group]}, {"pass": ["fwd_bwd"]})
    prepared = targets.build(case)
    prepared.fn()
    assert prepared.memory_format == fmt
    if target != "conv3x3":  # the op's x (the layer's input): the gradient's probe call, timed one
        assert [fmt] * 2 == LAYOUTS
    else:  # the convolution gives the gradient of its input in the input's format
        memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        grad_x = prepared.fn()[0]
        assert grad_x.is_contiguous(memory_format=memory_format) and not grad_x.is_contiguous(
            memory_format=torch.contiguous_format if fmt == "channels_last" else torch.channels_last)


def test_raising_implementation_is_recorded_with_its_reason(toys, tmp_path):
    run_matrix(expand(preset(["toy_raises", "unfold"])), tmp_path, timing=TIMING)
    rows = records.load(tmp_path)
    raised = rows[rows["impl"] == "toy_raises"]
    assert len(raised) == 2 and set(raised["status"]) == {"error"}
    assert raised["reason"].str.contains("RuntimeError: toy failure").all()
    assert set(rows[rows["impl"] == "unfold"]["status"]) == {"ok"}


def test_out_of_memory_is_named_as_such(toys, tmp_path):
    run_matrix(expand(preset(["toy_oom"], passes=("fwd",))), tmp_path, timing=TIMING)
    row = records.load(tmp_path).iloc[0]
    assert row["status"] == "error"
    assert row["reason"].startswith("accuracy gate: out of memory: RuntimeError")


def test_unrunnable_case_is_a_skipped_row_with_the_registry_reason(toys, tmp_path):
    config = preset(["unfold", "toy_wrong"])
    config["groups"][0]["dtypes"] = ["float16"]
    run_matrix(expand(config), tmp_path, timing=TIMING)
    rows = records.load(tmp_path).set_index("impl")
    assert rows.loc["toy_wrong", "status"].tolist() == ["skipped", "skipped"]
    assert rows.loc["toy_wrong", "reason"].str.contains("dtype float16 not supported").all()


def test_killed_run_resumed_has_the_rows_of_an_uninterrupted_run(toys, tmp_path):
    cases = expand(preset(["unfold", "im2col_matmul", "toy_interrupt"], shapes=SHAPES))
    run_matrix(cases, tmp_path / "whole", timing=TIMING)

    ARMED["interrupt"] = True  # the run is killed when it reaches toy_interrupt
    first = run_matrix(cases, tmp_path / "killed", timing=TIMING)
    assert first.interrupted
    partial = records.load(tmp_path / "killed")
    assert 0 < len(partial) < len(cases)

    ARMED["interrupt"] = False
    second = run_matrix(cases, tmp_path / "killed", resume=True, timing=TIMING)
    assert not second.interrupted and second.already_done == len(partial)
    resumed = outcome(tmp_path / "killed")
    assert resumed["case_id"].is_unique
    pd.testing.assert_frame_equal(resumed, outcome(tmp_path / "whole"))


def test_resume_drops_a_line_cut_short_by_a_kill(tmp_path):
    cases = expand(preset(["unfold"], passes=("fwd",)))
    run_matrix(cases, tmp_path, timing=TIMING)
    path = records.results_path(tmp_path)
    text = path.read_text()
    path.write_text(text[: text.rindex(",")])  # the last line loses its status column
    with pytest.warns(records.DroppedLines, match="1 line"):  # said, not silent
        assert records.done_ids(tmp_path) == set()
    with pytest.warns(records.DroppedLines):
        run_matrix(cases, tmp_path, resume=True, timing=TIMING)
    assert outcome(tmp_path)["status"].tolist() == ["ok"]
    assert records.read(tmp_path).dropped == 0  # the cut line was removed, the new row whole


def test_sharded_runs_merged_equal_the_unsharded_run(toys, tmp_path, monkeypatch):
    plant_medians(monkeypatch, {"unfold": 0.004, "im2col_matmul": 0.001, "toy_wrong": 0.002})
    cases = expand(preset(["unfold", "im2col_matmul", "toy_wrong"], shapes=SHAPES))
    run_matrix(cases, tmp_path / "all", timing=TIMING)
    pieces = []
    for i in (1, 2, 3):
        run_matrix(shard(cases, i, 3), tmp_path / f"shard{i}", timing=TIMING)
        pieces.append(tmp_path / f"shard{i}")
    merged = records.merge_runs(pieces)
    records.write(merged, tmp_path / "merged")
    pd.testing.assert_frame_equal(outcome(tmp_path / "merged"), outcome(tmp_path / "all"))
    # speedups are recomputed across pieces, each against unfold's row of the same case: 4 ms
    # over 1 ms, whichever shard either row came from
    im2col = merged[(merged["impl"] == "im2col_matmul") & (merged["status"] == "ok")]
    assert len(im2col) == 4 and im2col["speedup_vs_unfold"].tolist() == [4.0] * 4
    assert im2col["speedup_vs_baseline"].tolist() == [4.0] * 4


def test_merge_prefers_ok_rows_and_dedupes(tmp_path):
    cases = expand(preset(["unfold"], passes=("fwd",)))
    run_matrix(cases, tmp_path / "a", timing=TIMING)
    frame = records.load(tmp_path / "a")
    frame.loc[:, ["status", "reason"]] = ["error", "flaky"]
    records.write(frame, tmp_path / "b")
    merged = records.merge_runs([tmp_path / "a", tmp_path / "b"])
    assert merged["status"].tolist() == ["ok"]


@pytest.mark.parametrize(("environ", "expected"), [
    ({"PATH": "/bin", "HOME": "/root"}, "default"),
    ({"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000", "PATH": "/bin"},
     "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000"),
    ({"MALLOC_CONF": "background_thread:true", "LD_PRELOAD": "libjemalloc.so.2"},
     "LD_PRELOAD=libjemalloc.so.2 MALLOC_CONF=background_thread:true"),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0", "THP_MEM_ALLOC_ENABLE": "1",
      "TCMALLOC_RELEASE_RATE": "0"},
     "GLIBC_TUNABLES=glibc.malloc.mmap_max=0 TCMALLOC_RELEASE_RATE=0 THP_MEM_ALLOC_ENABLE=1"),
    ({"MALLOC_ARENA_MAX": "", "LD_PRELOAD": ""}, "default"),  # set but empty: no setting
    ({"LD_PRELOAD": "a.so\n b.so"}, "LD_PRELOAD=a.so b.so"),  # one line in the CSV
])
def test_allocator_settings_name_what_changes_allocation(environ, expected):
    assert allocator_settings(environ, huge_pages="") == expected
    assert allocator_settings(environ, huge_pages="madvise") == f"{expected}; transparent_hugepage=madvise"


@pytest.mark.parametrize(("text", "mode"), [
    ("always [madvise] never\n", "madvise"),
    ("[always] madvise never\n", "always"),
    ("always madvise [never]\n", "never"),
    ("garbled\n", ""),
    (None, ""),  # no such file: not Linux, or no huge pages
])
def test_huge_page_mode_is_the_bracketed_word(tmp_path, text, mode):
    path = tmp_path / "enabled"
    if text is not None:
        path.write_text(text)
    assert huge_page_mode(path) == mode


def test_rows_carry_the_machine_and_the_closed_form(tmp_path, monkeypatch):
    plant_medians(monkeypatch, {"unfold": 1e-6})
    cases = expand(preset(["unfold"], passes=("fwd",)))
    run_matrix(cases, tmp_path, timing=TIMING)
    row = records.load(tmp_path).iloc[0]
    s = cases[0].shape
    assert row["macs"] == s.B * (2 * s.G + s.C) * s.k**2 * s.Ho * s.Wo == 2592  # 1*(4+4)*9*36
    assert row["median_s"] == 1e-6  # planted
    assert row["gmacs_per_s"] == pytest.approx(2.592)  # 2592 MACs in 1 us: 2.592e9 a second
    assert row["items_per_s"] == pytest.approx(1e6)  # B = 1 in 1 us
    assert row["threads"] == torch.get_num_threads()
    assert row["torch"] == torch.__version__ and row["git_rev"] and row["cpu"]
    assert row["allocator"] == allocator_settings()  # read back as text, "default" or NAME=value
    assert row["output_bytes"] == s.B * s.C * s.Ho * s.Wo * 4
    assert row["peak_bytes"] >= row["output_bytes"]


def test_cpu_peak_memory_is_measured():
    n = 1_000_000

    def two_buffers():
        a = torch.ones(n)  # 4 MB, freed at return
        return a + 1  # 4 MB more at the peak; the output

    peak = peak_extra_bytes(two_buffers, "cpu")
    assert 8 * n <= peak < 8 * n + 64 * 1024
    assert peak_extra_bytes(lambda: None, "cpu") == 0
    with pytest.raises(ValueError, match="device"):
        peak_extra_bytes(lambda: None, "tpu")


def test_network_case_is_gated_timed_and_counted(tmp_path, monkeypatch):
    plant_medians(monkeypatch, {"unfold": 0.5})
    config = {"description": "test", "timing": {}, "groups": [{
        "target": "lrnet50", "impls": ["unfold"], "shapes": [{"B": 2, "H": 32, "W": 32}],
        "dtypes": ["float32"], "devices": ["cpu"], "passes": ["fwd"]}]}
    run_matrix(expand(config), tmp_path, timing=TIMING)
    row = records.load(tmp_path).iloc[0]
    assert row["status"] == "ok", row["reason"]
    assert row["oracle"] == "lrnet50 reference float64" and row["max_abs_err"] >= 0
    # gated in both memory formats the timing may pick, within the suite's network limit
    assert row["gate_value"] in ("logits contiguous", "logits channels_last")
    assert 0 <= row["err_over_limit"] <= 1 and row["limit_source"] == "suite"
    assert row["atol"] > 0 and row["rtol"] == 0
    assert row["macs"] > 0 and row["items_per_s"] == pytest.approx(4.0)  # B = 2 in 0.5 s


def test_a_run_killed_with_sigkill_resumes_to_the_same_rows(tmp_path):
    """A real kill: `lrbench run` in a subprocess, SIGKILLed once some rows are written."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "lrbench", "run", "--preset", "quick", "--impl",
            "unfold,reference", "--kernel", "3", "--size", "6,8", "--channels", "4", "--m", "2",
            "--batch", "1", "--pass", "fwd", "--min-rounds", "2", "--max-time", "0.02",
            "--passes", "2"]  # a further pass to resume, not the preset's five
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([*args, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    csv, deadline = records.results_path(killed), time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if csv.exists() and len(csv.read_text().splitlines()) >= 3:  # header + 2 rows
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    partial = len(records.load(killed))
    subprocess.run([*args, "--out", str(killed), "--resume"], env=env, check=True,
                   capture_output=True)
    subprocess.run([*args, "--out", str(whole)], env=env, check=True, capture_output=True)
    resumed = outcome(killed)
    assert resumed["case_id"].is_unique and len(resumed) > partial
    pd.testing.assert_frame_equal(resumed, outcome(whole))
