"""Writes that survive a kill at any instant: a CSV line cut short is kept out and counted (never
silently, never glued to the next row); a held run lock always names its holder with a real PID."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from lrbench.bench.results import records, runlock, status
from lrbench.bench.results.manifest import Manifest, ShardPlan


def _rows(path, *case_ids):
    for case_id in case_ids:
        records.append_row(path, {"case_id": case_id, "impl": "unfold", "status": "ok",
                                  "median_s": 0.001})


def test_a_cut_off_last_line_is_kept_out_counted_and_said(tmp_path):
    csv = tmp_path / "results.csv"
    _rows(csv, "op:a", "op:b")
    whole = csv.read_bytes()
    csv.write_bytes(whole + b"op:c,unfold,1,4,6,6,3,2,1,float32,cpu,fw")  # a kill mid-row
    loaded = records.read(tmp_path)
    assert loaded.dropped == 1 and list(loaded.rows["case_id"]) == ["op:a", "op:b"]
    with pytest.warns(records.DroppedLines, match="1 line"):
        assert records.done_ids(tmp_path) == {"op:a", "op:b"}

    # the next row starts a line of its own: the cut one is removed first, with a warning
    with pytest.warns(records.DroppedLines, match="removed its last line"):
        _rows(csv, "op:c")
    assert csv.read_bytes().startswith(whole) and csv.read_text().count("\n") == 4
    loaded = records.read(tmp_path)
    assert loaded.dropped == 0 and list(loaded.rows["case_id"]) == ["op:a", "op:b", "op:c"]


def test_a_complete_row_without_its_newline_is_not_recorded(tmp_path):
    """A row counts once its newline is written: a kill between the row and its newline leaves a
    line that a reader keeps out (even though it looks whole), so the case runs again."""
    csv = tmp_path / "results.csv"
    _rows(csv, "op:a", "op:b")
    csv.write_bytes(csv.read_bytes()[:-1])
    assert records.read(tmp_path).dropped == 1
    assert set(records.read(tmp_path).rows["case_id"]) == {"op:a"}


def test_unreadable_lines_are_counted_and_status_shows_them(tmp_path):
    plan = Manifest(executor="in-process", label="t", shards=[
        ShardPlan(index=1, folder=".", case_ids=["op:a", "op:b", "op:c"])])
    plan.save(tmp_path)
    csv = tmp_path / "results.csv"
    _rows(csv, "op:a")
    with csv.open("a") as handle:  # too many fields, and a row without a valid status
        handle.write("op:x," + ",".join(["1"] * (len(records.COLUMNS) + 3)) + "\n")
        handle.write("op:y,unfold\n")
    _rows(csv, "op:b")
    loaded = records.read(tmp_path)
    assert loaded.dropped == 2 and list(loaded.rows["case_id"]) == ["op:a", "op:b"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # status counts them without a warning of its own
        manifest, shards = status.run_status(tmp_path)
    assert shards[0].dropped == 2 and shards[0].pending == 1
    assert "2 line(s) of" in status.render(tmp_path, manifest, shards)


CHURN = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location('runlock', sys.argv[2])
runlock = sys.modules['runlock'] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runlock)
print('go', flush=True)
for _ in range(int(sys.argv[3])):
    try:
        runlock.acquire(sys.argv[1]).release()
    except runlock.FolderInUse:
        pass
"""


# Runs alone (scripts/test.sh's second pytest call): it needs the churning processes to get the CPU
# while it looks, which other tests' load on both cores can starve (seen once in CI under xdist).
@pytest.mark.slow
def test_a_held_lock_always_names_a_live_pid_while_runs_come_and_go(tmp_path):
    """Two processes take and give back the folder 300 times each while this one looks: every
    holder seen has a positive PID, one of theirs (never the placeholder of a half-written
    lock file)."""
    procs = [subprocess.Popen([sys.executable, "-c", CHURN, str(tmp_path), runlock.__file__,
                               "300"], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    pids = {proc.pid for proc in procs}
    seen = set()
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "go"
        while any(proc.poll() is None for proc in procs):
            holder = runlock.live_holder(tmp_path)
            if holder is not None:
                assert holder.pid is not None and holder.pid > 0, holder
                assert holder.pid in pids, holder
                seen.add(holder.pid)
    finally:
        for proc in procs:
            proc.wait(timeout=120)
    assert all(proc.returncode == 0 for proc in procs)
    assert seen, "the looker never saw the folder held"


def test_a_lock_file_is_born_with_its_holder(tmp_path):
    with runlock.hold(tmp_path) as lock:
        text = (tmp_path / runlock.LOCK_NAME).read_text()
        assert f'"pid": {os.getpid()}' in text and lock.holder.pid == os.getpid()
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != runlock.LOCK_NAME]
        assert leftovers == []  # the temporary name is gone once the file is in place
