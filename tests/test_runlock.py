"""One run per output folder: a held folder is refused at once naming its holder; a lock left by
a killed run is taken over; a shard's lock holds the whole run's folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from lrbench.bench.results import runlock

# runlock.py loaded as a file: the holder starts without importing torch (lrbench's package)
HOLD = ("import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('runlock', {runlock.__file__!r})\n"
        "runlock = sys.modules['runlock'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(runlock)\n"
        "lock = runlock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(60)")


def _holding_process(folder):
    """A separate process that holds ``folder`` until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_folder_is_refused_naming_the_holder_and_freed_by_a_kill(tmp_path):
    proc = _holding_process(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(runlock.FolderInUse) as refused:
            runlock.acquire(tmp_path)
        assert time.monotonic() - started < 5  # at once, not after waiting for the holder
        holder = refused.value.holder
        assert holder.pid == proc.pid and holder.host == socket.gethostname()
        message = str(refused.value)
        assert f"PID {proc.pid}" in message and socket.gethostname() in message
        assert holder.started[:4].isdigit() and "started" in message
        assert runlock.live_holder(tmp_path).pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the killed run left its file behind; the next run takes the folder over and says whose
    assert (tmp_path / runlock.LOCK_NAME).exists()
    assert runlock.live_holder(tmp_path) is None
    with runlock.hold(tmp_path) as lock:
        assert lock.took_over is not None and lock.took_over.pid == proc.pid
        assert runlock.live_holder(tmp_path).pid == os.getpid()
    assert not (tmp_path / runlock.LOCK_NAME).exists()  # a clean end leaves nothing


def test_two_holds_in_one_process_conflict_and_release_frees(tmp_path):
    with runlock.hold(tmp_path), pytest.raises(runlock.FolderInUse, match=f"PID {os.getpid()}"):
        runlock.acquire(tmp_path)
    with runlock.hold(tmp_path) as lock:
        assert lock.took_over is None


def test_a_running_shard_holds_the_run_folder(tmp_path):
    shard = tmp_path / runlock.SHARDS / "2"
    proc = _holding_process(shard)
    try:
        with pytest.raises(runlock.FolderInUse) as refused:
            runlock.acquire(tmp_path)
        assert refused.value.holder.pid == proc.pid and str(shard) in str(refused.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with runlock.hold(tmp_path):
        pass


def test_without_flock_a_dead_pid_of_this_host_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "try_lock", lambda fd, shared=False: None)  # e.g. an NFS mount
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    info = {"host": socket.gethostname(), "pid": int(dead.stdout), "started": "then"}
    (tmp_path / runlock.LOCK_NAME).write_text(json.dumps(info))
    with runlock.hold(tmp_path) as lock:
        assert lock.took_over.pid == info["pid"]
    other = {"host": "another-node", "pid": 1, "started": "then"}
    (tmp_path / runlock.LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(runlock.FolderInUse, match="another-node"):
        runlock.acquire(tmp_path)


def test_lrbench_run_into_a_held_folder_is_refused_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from lrbench.cli import main

    proc = _holding_process(tmp_path)
    try:
        result = CliRunner().invoke(main, ["run", "--preset", "quick", "--impl", "unfold",
                                           "--size", "8", "--out", str(tmp_path)])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert result.exit_code == 1
    assert f"in use by another lrbench run: PID {proc.pid} on host {socket.gethostname()}" \
        in result.output
    assert not (tmp_path / "results.csv").exists() and not (tmp_path / "plan.json").exists()
