"""Sharded runs through submitit: options refused before submission, N local shards equal a serial
run, a killed or preempted shard resumes, `lrbench status` counts, the merge of several machines.

The local executor starts real subprocesses (one Python with torch per shard job), so the shapes
are tiny and the shards few.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from lrbench.bench.cluster.options import ClusterOptions, make_options, parse_slurm_args, parse_time
from lrbench.bench.matrix.cases import shard
from lrbench.bench.matrix.plan import make_plan
from lrbench.bench.measure.runner import run_matrix
from lrbench.bench.results import records, runlock, status
from lrbench.bench.results.manifest import Manifest, ShardPlan, shard_folder
from lrbench.cli import main
from tests.helpers import outcome

# op only, unfold and im2col_matmul on 6x6 and 8x8, CPU and CUDA: 8 cases (the CUDA ones are
# skipped rows on a machine without a GPU), each well under a second
AXES = {"impl": "unfold,im2col_matmul", "kernel": "3", "size": "6,8", "channels": "4", "m": "2",
        "batch": "1", "pass": "fwd", "device": "cpu,cuda"}
ARGS = ["--preset", "kernel-sweep", *[f"--{k}={v}" for k, v in AXES.items()], "--min-rounds", "2",
        "--max-time", "0.02"]


def _plan(max_time: float = 0.02):
    return make_plan("kernel-sweep", AXES, None, min_rounds=2, max_time=max_time)


needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("submitit") is None,
    reason="submitit (the optional extra lrbench[cluster]) is not installed")


# --- options, checked before anything is submitted -------------------------------------------

@pytest.mark.parametrize(("text", "minutes"), [
    ("90", 90), ("1:30", 2), ("1:30:00", 90), ("2-00", 2880), ("1-12:30", 2190),
    ("0-00:00:30", 1)])
def test_slurm_time_formats_become_minutes(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["1h", "1:2:3:4", "", "0", "-5", "1-"])
def test_a_bad_time_is_refused_naming_the_option(text):
    with pytest.raises(ValueError, match="--time"):
        parse_time(text)


def test_bad_node_counts_and_misplaced_slurm_options_are_refused():
    with pytest.raises(ValueError, match="--nodes must be an integer >= 1"):
        ClusterOptions(executor="local", nodes=0)
    with pytest.raises(ValueError, match="--executor must be one of"):
        ClusterOptions(executor="pbs")
    with pytest.raises(ValueError, match="--partition: a Slurm option"):
        ClusterOptions(executor="local", partition="gpu")
    with pytest.raises(ValueError, match="--time is required with --executor slurm"):
        ClusterOptions(executor="slurm", nodes=2)
    for grace in (0, -1, "soon"):
        with pytest.raises(ValueError, match="--grace must be a number of seconds > 0"):
            ClusterOptions(executor="local", grace_s=grace)


def test_slurm_args_must_be_known_key_value_pairs():
    known = {"qos", "mem_per_gpu", "cpus_per_task", "account", "nodes"}
    assert parse_slurm_args(["qos=high", "mem-per-gpu=80G", "cpus_per_task=16"], known) == {
        "qos": "high", "mem_per_gpu": "80G", "cpus_per_task": 16}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_slurm_args(["qos"], known)
    with pytest.raises(ValueError, match="--slurm-arg colour: not a submitit Slurm parameter"):
        parse_slurm_args(["colour=red"], known)
    with pytest.raises(ValueError, match="--slurm-arg nodes: set by lrbench; use --nodes"):
        parse_slurm_args(["nodes=4"], known)


def test_without_submitit_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    for executor in ("local", "slurm"):
        with pytest.raises(RuntimeError, match=r"lrbench\[cluster\]"):
            make_options(executor, nodes=2)


@needs_submitit
def test_submitits_own_parameter_list_checks_the_names():
    options = make_options("slurm", nodes=3, partition="h100", gpus_per_node=8, time="1:30:00",
                           slurm_args=("qos=high", "account=lr"))
    with pytest.raises(ValueError, match="--slurm-arg gpu_type"):
        make_options("slurm", nodes=3, slurm_args=("gpu_type=h100",))
    params = options.slurm_parameters(shards=3)
    assert params == {"nodes": 1, "exclusive": True, "array_parallelism": 3, "job_name": "lrbench",
                      "qos": "high", "account": "lr", "partition": "h100", "gpus_per_node": 8,
                      "time": 90}
    # what sbatch would get for the array of 3 shards (submitit renders it; no cluster needed)
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command="true", folder="/tmp/x", map_count=3, **params)
    for line in ("#SBATCH --exclusive", "#SBATCH --nodes=1", "#SBATCH --array=0-2%3",
                 "#SBATCH --time=90", "#SBATCH --partition=h100", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --qos=high"):
        assert line in text.splitlines()


@needs_submitit
def test_slurm_executor_without_slurm_is_refused_before_submitting(tmp_path, monkeypatch):
    from lrbench.bench.cluster import submit

    monkeypatch.setattr(submit.shutil, "which", lambda name: None)
    options = make_options("slurm", nodes=2, time="10")
    records.append_row(tmp_path / "results.csv", {"case_id": "op:x", "status": "ok"})
    with pytest.raises(RuntimeError, match="sbatch and srun"):
        submit.run_sharded(_plan(), tmp_path, options)
    assert not (tmp_path / "submitit").exists() and not (tmp_path / "plan.json").exists()
    assert len(records.load(tmp_path)) == 1  # the folder's earlier results are untouched


# --- status ----------------------------------------------------------------------------------

def test_status_of_a_half_finished_run(tmp_path):
    plan = _plan()
    slices = [shard(plan.cases, i, 3) for i in (1, 2, 3)]
    Manifest(executor="local", label=plan.label, shards=[
        ShardPlan(index=i, folder=shard_folder(i), case_ids=[c.case_id for c in cases],
                  jobs=[{"job_id": f"10{i}", "attempt": 1, "state": "RUNNING"}] if i < 3 else [])
        for i, cases in enumerate(slices, start=1)]).save(tmp_path)
    # shard 1 finished (one case of each status), shard 2 has one row, shard 3 has not started
    one_each = ["ok", "failed", "error", "skipped"]
    for case, status_ in zip(slices[0], one_each, strict=False):
        records.append_row(tmp_path / shard_folder(1) / "results.csv",
                           {"case_id": case.case_id, "status": status_})
    csv2 = tmp_path / shard_folder(2) / "results.csv"
    records.append_row(csv2, {"case_id": slices[1][0].case_id, "status": "ok"})
    records.append_row(csv2, {"case_id": "op:unfold:B9-C4-6x6-k3-m2-s1:float32:cpu:fwd",
                              "status": "ok"})  # a row of an earlier plan: not counted

    manifest, shards = status.run_status(tmp_path)
    assert [s.planned for s in shards] == [len(c) for c in slices] == [3, 3, 2]
    assert [dict(s.counts) for s in shards] == [{"ok": 1, "failed": 1, "error": 1}, {"ok": 1}, {}]
    assert [s.pending for s in shards] == [0, 2, 2]
    assert shards[0].job == "job 101 (attempt 1): RUNNING" and shards[2].job == "not submitted yet"
    text = status.render(tmp_path, manifest, shards)
    assert "4 case(s) pending" in text and "not merged yet" in text
    lines = text.splitlines()
    assert lines[1].split() == ["shard", "planned", "done", "ok", "failed", "error", "skipped",
                                "pending", "job"]
    assert lines[2].split()[:8] == ["1", "3", "3", "1", "1", "1", "0", "0"]
    assert lines[5].split() == ["all", "8", "4", "2", "1", "1", "0", "4"]


# --- the command line, end to end ----------------------------------------------------------

def _wait_for(predicate, what: str, proc, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, f"the run ended before {what}:\n{proc.stdout.read()}"
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _timed_in_json(folder) -> dict[tuple[str, int], int]:
    """How many of a shard's pytest-benchmark JSONs timed each case id in each pass over the
    matrix (a further pass's JSON is named ``...-passN.json``)."""
    import collections
    import json
    import re

    counts = collections.Counter()
    for path in (folder / "pytest-benchmark").glob("*.json"):
        found = re.search(r"-pass(\d+)\.json$", path.name)
        index = int(found.group(1)) if found else 1
        counts.update((b["param"], index) for b in json.loads(path.read_text())["benchmarks"])
    return dict(counts)


def _shard_pid(out, index: int, rows: int):
    """The PID of shard ``index``'s job once its CSV has ``rows`` rows (from its run lock)."""
    folder = out / shard_folder(index)
    csv = records.results_path(folder)
    if not csv.exists() or len(csv.read_text().splitlines()) < rows + 1:
        return None
    holder = runlock.live_holder(folder)
    if holder is None:
        return None
    assert holder.pid is not None and holder.pid > 0, holder  # never os.kill(-1, ...)
    return holder.pid


@needs_submitit
def test_killed_and_preempted_shards_resume_to_the_rows_of_a_serial_run(tmp_path):
    """`lrbench run --executor local --nodes 3`: a second run into the folder is refused; shard 1
    is SIGKILLed and resubmitted, shard 2 is preempted (submitit's signal: checkpoint, requeue);
    each shard wrote its own slice, and the merged rows (cases and statuses) equal those of a
    serial run; `lrbench status` says so. (One test for all of it: each shard job is a Python
    process that imports torch.)"""
    axes = {**AXES, "impl": "unfold,im2col_matmul,reference"}
    passes = 2  # several passes (each case timed once in each, resumed or not); fewer than the preset's
    plan = make_plan("kernel-sweep", axes, None, min_rounds=2, max_time=0.02, passes=passes)
    run_matrix(plan.cases, tmp_path / "serial", timing=plan.timing)
    out = tmp_path / "sharded"
    args = [sys.executable, "-m", "lrbench", "run", "--preset", "kernel-sweep",
            *[f"--{k}={v}" for k, v in axes.items()], "--min-rounds", "2", "--max-time", "0.2",
            "--passes", str(passes), "--executor", "local", "--nodes", "3", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        _wait_for(lambda: runlock.live_holder(out), "the run held its folder", proc)
        second = CliRunner().invoke(main, ["run", *ARGS, "--out", str(out)])
        assert second.exit_code == 1 and "in use by another lrbench run" in second.output
        assert f"PID {proc.pid}" in second.output

        killed = _wait_for(lambda: _shard_pid(out, 1, rows=1), "shard 1 wrote a row", proc)
        assert killed != proc.pid
        os.kill(killed, signal.SIGKILL)
        preempted = _wait_for(lambda: _shard_pid(out, 2, rows=1), "shard 2 wrote a row", proc)
        os.kill(preempted, signal.SIGUSR2)  # what Slurm sends before preempting or timing out
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "shard 1: job" in output and "resubmitting it to resume" in output

    for i in (1, 2, 3):  # each shard wrote its own slice
        assert set(outcome(out / shard_folder(i))["case_id"]) == {
            c.case_id for c in shard(plan.cases, i, 3)}
    merged = outcome(out)
    assert merged["case_id"].is_unique
    pd.testing.assert_frame_equal(merged, outcome(tmp_path / "serial"))
    assert set(merged["status"]) == {"ok", "skipped"}
    manifest = Manifest.load(out)
    assert [len(s.jobs) for s in manifest.shards] == [2, 1, 1]  # shard 2 requeued in its job
    assert [s.jobs[-1]["state"] for s in manifest.shards] == ["COMPLETED"] * 3
    # The resumed attempt ran only what was missing, in a JSON of its own: no case timed twice.
    # Shard 1 was SIGKILLed (its first attempt wrote no JSON), so its rest is in a resumed one.
    # Shard 2 stopped cleanly between cases: its two attempts' JSONs hold each timed case once
    # (the signal may land during its last case, leaving the requeued attempt nothing to run).
    timed = {i: _timed_in_json(out / shard_folder(i)) for i in (1, 2)}
    for i in (1, 2):
        assert all(n == 1 for n in timed[i].values()), timed[i]
    assert list((out / shard_folder(1) / "pytest-benchmark").glob("*-resumed-*.json"))
    shard2 = records.load(out / shard_folder(2))
    assert set(timed[2]) == {(case, index) for case in shard2[shard2["status"] == "ok"]["case_id"]
                             for index in range(1, passes + 1)}
    assert {len(records.parse_passes(c)) for c in shard2[shard2["status"] == "ok"]["rounds_s"]} \
        == {passes}
    log = "".join(p.read_text() for p in (out / "submitit").glob("*_log.err"))
    assert "this job is preempted" in log

    shown = CliRunner().invoke(main, ["status", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "finished" in shown.output and f"merged: {len(plan.cases)} rows" in shown.output
    assert "(attempt 2): COMPLETED" in shown.output


# --- results of several machines -------------------------------------------------------------

def test_a_merge_of_two_machines_keeps_both_and_never_divides_across_them(tmp_path):
    plan = make_plan("kernel-sweep", {**AXES, "size": "6", "device": "cpu"}, None, min_rounds=2,
                     max_time=0.02)
    run_matrix(plan.cases, tmp_path / "cpu-box", timing=plan.timing)
    rows = records.load(tmp_path / "cpu-box")
    assert set(rows["status"]) == {"ok"} and set(rows["impl"]) == {"unfold", "im2col_matmul"}
    other = rows.copy()  # the same cases timed on another machine, every time 10x shorter
    other[["cpu", "gpu", "threads"]] = ["Other CPU 9000", "NVIDIA H100 80GB HBM3", 16]
    other["median_s"] = rows["median_s"] / 10
    records.write(other, tmp_path / "gpu-box")

    result = CliRunner().invoke(main, ["merge", str(tmp_path / "cpu-box"), str(tmp_path / "gpu-box"),
                                       "--out", str(tmp_path / "both")])
    assert result.exit_code == 0, result.output
    merged = records.load(tmp_path / "both")
    assert len(merged) == 2 * len(rows)  # one row per case and machine
    speedups = merged[merged["impl"] == "im2col_matmul"].set_index("cpu")["speedup_vs_baseline"]
    # each machine's speedup uses its own unfold time: equal here, never off by the factor 10
    assert speedups["Other CPU 9000"] == pytest.approx(speedups[rows["cpu"].iloc[0]])

    report = (tmp_path / "both" / "report.md")
    assert CliRunner().invoke(main, ["report", str(tmp_path / "both")]).exit_code == 0
    text = report.read_text()
    assert "These rows come from 2 machines" in text
    sections = text.split("\n## Machine ")[1:]
    assert len(sections) == 2
    assert sections[1].startswith("2: Other CPU 9000 / NVIDIA H100 80GB HBM3 / 16 threads")
    for section, frame in zip(sections, (rows, other), strict=True):  # each its own times only
        timed = [line.split("|") for line in section.splitlines() if line.startswith("| op:")]
        shown = {cells[1].strip(): float(cells[2]) for cells in timed}  # case -> median ms
        assert shown == pytest.approx(dict(zip(frame["case_id"], frame["median_s"] * 1e3,
                                               strict=True)), rel=0.01)
    refused = CliRunner().invoke(main, ["compare", str(tmp_path / "both"), str(tmp_path / "cpu-box")])
    assert refused.exit_code == 2 and "BASE has rows of 2 machines" in refused.output


@needs_submitit
def test_a_sharded_resume_never_merges_away_a_plain_runs_rows(tmp_path):
    from lrbench.bench.cluster.submit import run_sharded

    records.append_row(tmp_path / "results.csv", {"case_id": "op:x", "status": "ok"})
    with pytest.raises(ValueError, match="--resume: .* without --executor"):
        run_sharded(_plan(), tmp_path, make_options("local", nodes=2), resume=True)
    assert len(records.load(tmp_path)) == 1


# --- Slurm, faked: submitit's real SlurmExecutor against stand-in sbatch, srun and sacct --------
# Kept for what the one-node cluster of tests/test_slurm.py cannot show: the array's tasks on
# several nodes at once (here each stand-in task runs at once, in parallel). Everything one node
# can show (submission, requeue, preemption, cancellation, sacct's states) is tested there, for real.

FAKE_SBATCH = r"""#!/bin/bash
# Records the batch script, "runs" each array task in the background, answers like sbatch.
n=$(ls "$FAKE_SLURM"/sbatch-*.sh 2>/dev/null | wc -l); id=$((4242 + n))
cp "$1" "$FAKE_SLURM/sbatch-$id.sh"
range=$(sed -n 's/^#SBATCH --array=\([0-9]*-[0-9]*\).*/\1/p' "$1")
run() {  # job id, then the job's environment
  echo RUNNING > "$FAKE_SLURM/state-$1"
  if env "${@:2}" bash "$FAKE_SLURM/sbatch-$id.sh"; then state=COMPLETED; else state=FAILED; fi
  echo $state > "$FAKE_SLURM/state-$1"
}
if [ -n "$range" ]; then
  for i in $(seq "${range%-*}" "${range#*-}"); do
    echo PENDING > "$FAKE_SLURM/state-${id}_$i"
    (run "${id}_$i" SLURM_JOB_ID=$((id + 100 + i)) SLURM_ARRAY_JOB_ID=$id SLURM_ARRAY_TASK_ID=$i) \
      </dev/null >/dev/null 2>&1 &
  done
else
  echo PENDING > "$FAKE_SLURM/state-$id"
  (run "$id" SLURM_JOB_ID=$id) </dev/null >/dev/null 2>&1 &
fi
echo "Submitted batch job $id"
"""
FAKE_SRUN = r"""#!/bin/bash
while [[ "$1" == --* ]]; do case "$1" in --output|--error) shift 2;; *) shift;; esac; done
exec "$@"
"""
FAKE_SACCT = r"""#!/bin/bash
echo "JobID|State|NodeList"
while [ $# -gt 0 ]; do
  if [ "$1" = -j ]; then
    for f in "$FAKE_SLURM/state-$2" "$FAKE_SLURM/state-$2"_*; do
      [ -f "$f" ] && echo "$(basename "$f" | sed 's/^state-//')|$(cat "$f")|fakenode"
    done
  fi
  shift
done
"""


@needs_submitit
def test_a_slurm_job_array_through_stand_in_slurm_commands(tmp_path, monkeypatch):
    """The Slurm path without a cluster, both array tasks at once as on two nodes: one array of 2
    exclusive one-node tasks, each shard run by submitit's job code, states read back with sacct,
    rows merged."""
    from lrbench.bench.cluster import submit

    fake = tmp_path / "fake-slurm"
    fake.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("sacct", FAKE_SACCT)):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(fake))
    monkeypatch.setitem(submit.POLL_S, "slurm", 0.2)

    plan = make_plan("kernel-sweep", {**AXES, "size": "6", "device": "cpu"}, None, min_rounds=2,
                     max_time=0.02)
    options = make_options("slurm", nodes=2, partition="fakepart", time="10",
                           slurm_args=("qos=high",))
    summary = submit.run_sharded(plan, tmp_path / "out", options)

    assert summary.complete and summary.merged == len(plan.cases) == 2
    merged = outcome(tmp_path / "out")
    assert sorted(merged["case_id"]) == sorted(c.case_id for c in plan.cases)
    assert set(merged["status"]) == {"ok"}
    script = (fake / "sbatch-4242.sh").read_text().splitlines()
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --exclusive", "#SBATCH --nodes=1",
                 "#SBATCH --time=10", "#SBATCH --partition=fakepart", "#SBATCH --qos=high"):
        assert line in script
    assert not (fake / "sbatch-4243.sh").exists()  # one submission: the array
    manifest = Manifest.load(tmp_path / "out")
    assert [(s.jobs[-1]["job_id"], s.jobs[-1]["state"]) for s in manifest.shards] == [
        ("4242_0", "COMPLETED"), ("4242_1", "COMPLETED")]
