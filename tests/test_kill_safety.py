"""Writes that survive a kill at any instant: a CSV line cut short is kept out and counted (never
silently, never glued to the next row); a held run lock always names its holder with a real PID."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location('runlock', sys.argv[2])
runlock = sys.modules['runlock'] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runlock)
print('ready', flush=True)
sys.stdin.readline()  # every churner starts at once, when the looker is looking
stop, cycles = sys.argv[3], 0
while cycles < int(sys.argv[4]) or not os.path.exists(stop):
    try:
        lock = runlock.acquire(sys.argv[1])
    except runlock.FolderInUse:
        continue
    if cycles % 2:
        time.sleep(0.001)  # half the holds last a moment, so that a looker can meet them
    lock.release()
    cycles += 1
"""


# Runs alone (scripts/test.sh's second pytest call): it needs the churning processes to get the CPU
# while it looks, which other tests' load on both cores can starve (seen once in CI under xdist).
@pytest.mark.slow
def test_a_held_lock_always_names_a_live_pid_while_runs_come_and_go(tmp_path):
    """Two processes take and give back the folder over and over (300 times each at least, and on
    until this one has seen both hold it) while this one looks: every holder seen has a positive
    PID, one of theirs (never the placeholder of a half-written lock file)."""
    folder, stop = tmp_path / "run", tmp_path / "stop"
    procs = [subprocess.Popen([sys.executable, "-c", CHURN, str(folder), runlock.__file__, str(stop),
                               "300"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    pids = {proc.pid for proc in procs}
    seen, looks = set(), 0
    deadline = time.monotonic() + 60
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        while any(proc.poll() is None for proc in procs):
            if (seen == pids and looks >= 1000) or time.monotonic() > deadline:
                stop.touch()
            holder = runlock.live_holder(folder)
            looks += 1
            if holder is not None:
                assert holder.pid is not None and holder.pid > 0, holder
                assert holder.pid in pids, holder
                seen.add(holder.pid)
    finally:
        stop.touch()
        for proc in procs:
            proc.stdin.close()  # a churner still waiting for its word reads EOF and goes on
        for proc in procs:
            proc.wait(timeout=120)
    assert all(proc.returncode == 0 for proc in procs)
    assert seen == pids, f"in {looks} looks the looker saw {len(seen)} of the 2 churners hold the folder"


def test_a_lock_file_is_born_with_its_holder(tmp_path):
    with runlock.hold(tmp_path) as lock:
        text = (tmp_path / runlock.LOCK_NAME).read_text()
        assert f'"pid": {os.getpid()}' in text and lock.holder.pid == os.getpid()
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != runlock.LOCK_NAME]
        assert leftovers == []  # the temporary name is gone once the file is in place
