"""Preemption always requeues: submitit's signal, landed in every phase of a shard job, is only
recorded; the run stops between cases and the main thread takes submitit's checkpoint path (a
shard with nothing pending just finishes); a case that outlasts the grace period is recorded as
stopped and runs again on resume.

The shard job runs here with submitit's own signal handlers installed
(:func:`tests.helpers.submitit_local_job`); the run is held at the chosen instant by a file gate
(the ``waiting`` plugin implementation inside a case, a wrapped function elsewhere), never by
sleeping and hoping.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import signal
import subprocess
import sys
import threading

import pytest

from lrbench import registry
from lrbench.bench.cluster import job as shard_job
from lrbench.bench.cluster.job import ShardJob
from lrbench.bench.matrix.plan import make_plan
from lrbench.bench.measure import runner
from lrbench.bench.results import records
from tests.helpers import GATE_ENV, FileGate, outcome, submitit_local_job, wrap_with_gate
from tests.waiting_plugin import WAITING

pytestmark = pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                reason="submitit (the optional extra lrbench[cluster]) is not "
                                       "installed")

LOCAL_REQUEUE = 144  # submitit's exit code for "requeue me" under its local executor
AXES = {"impl": "unfold,waiting,im2col_matmul", "kernel": "3", "size": "6", "channels": "4",
        "m": "2", "batch": "1", "pass": "fwd", "device": "cpu"}


@pytest.fixture
def waiting(tmp_path, monkeypatch):
    """The ``waiting`` implementation registered, and its gate (unarmed)."""
    gate = FileGate(tmp_path / "gate")
    monkeypatch.setenv(GATE_ENV, str(gate.folder))
    with registry.registered(WAITING):
        yield gate


def _job(tmp_path, **changes) -> ShardJob:
    plan = make_plan("kernel-sweep", AXES, None, min_rounds=2, max_time=0.02)
    return ShardJob(out=str(tmp_path / "out"), index=1, count=1, cases=plan.cases,
                    timing=plan.timing, label="preempt", resume=True, **changes)


def _signal_at_the_gate(gate: FileGate) -> threading.Thread:
    """A thread that waits until the run is at the gate, sends submitit's signal (what Slurm sends
    before preempting), and lets the run go on."""
    def land():
        pid = gate.wait_entered()
        assert pid == os.getpid() > 0
        os.kill(pid, signal.SIGUSR2)
        gate.release()
    thread = threading.Thread(target=land, daemon=True)
    thread.start()
    return thread


# phase -> (what holds the run there, whether cases are still pending when the signal lands)
PHASES = {
    "inside a case": (None, True),
    "between cases": (lambda gate, mp: mp.setattr(
        shard_job, "progress_line", wrap_with_gate(gate, shard_job.progress_line)), True),
    "while the CSV is rewritten": (lambda gate, mp: mp.setattr(
        records, "atomic_open", _held_open(gate, records.atomic_open)), False),
    "while the JSON report is written": (lambda gate, mp: mp.setattr(
        runner, "atomic_write", wrap_with_gate(gate, runner.atomic_write)), False),
    "during the merge": (lambda gate, mp: mp.setattr(
        shard_job, "merge_if_complete", wrap_with_gate(gate, shard_job.merge_if_complete)),
        False),
}


def _held_open(gate: FileGate, atomic_open):
    """``atomic_open`` that waits at the gate once the content is written, before it is renamed
    into place: a signal lands in the middle of the CSV's rewrite."""
    @contextlib.contextmanager
    def held(path, *args, **kwargs):
        with atomic_open(path, *args, **kwargs) as handle:
            yield handle
            handle.flush()
            gate.enter()
    return held


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_signal_in_any_phase_requeues_from_the_csv_or_finishes(phase, waiting, tmp_path,
                                                                 monkeypatch):
    hold, pending = PHASES[phase]
    if hold is not None:  # the gate is elsewhere: `waiting` is plain unfold here
        monkeypatch.delenv(GATE_ENV)
        hold(waiting, monkeypatch)
    job = _job(tmp_path)
    expected = sorted(c.case_id for c in job.cases)
    waiting.arm()
    with submitit_local_job(job, tmp_path / "submitit") as paths:
        thread = _signal_at_the_gate(waiting)
        try:
            result = job()
        except SystemExit as exit_:  # submitit's checkpoint path: requeued, exit
            result = exit_
        thread.join(timeout=60)
    assert not thread.is_alive()
    rows = records.load(job.folder)
    assert rows["case_id"].is_unique and set(rows["status"]) == {"ok"}
    if not pending:  # everything recorded: the shard finishes, nothing is requeued
        assert isinstance(result, dict) and sorted(rows["case_id"]) == expected
        assert not paths.submitted_pickle.exists()
        return
    assert isinstance(result, SystemExit) and result.code == LOCAL_REQUEUE
    order = [c.case_id for c in job.cases]
    held_at = order.index(next(c.case_id for c in job.cases if c.impl == "waiting")) \
        if phase == "inside a case" else 0
    assert list(rows["case_id"]) == order[:held_at + 1]  # the case in flight ended, no other
    log = (job.folder / "pytest.log").read_text()
    assert f"stop requested (signal {int(signal.SIGUSR2)})" in log  # pytest ended the session

    # the requeued job: submitit's checkpoint, as the next attempt loads it
    from submitit.core.utils import DelayedSubmission

    again = DelayedSubmission.load(paths.submitted_pickle)
    assert isinstance(again.function, ShardJob) and again.function.resume
    assert again.result()["already_done"] == held_at + 1
    assert list(outcome(job.folder)["case_id"]) == expected
    assert outcome(job.folder)["status"].eq("ok").all()


GRACE_SCRIPT = """
import pickle, sys
from pathlib import Path
from lrbench import registry
from tests.helpers import submitit_local_job
from tests.waiting_plugin import WAITING
job = pickle.loads(Path(sys.argv[1]).read_bytes())
with registry.registered(WAITING), submitit_local_job(job, Path(sys.argv[2])):
    print("ready", flush=True)
    job()
"""


def test_a_case_past_the_grace_period_is_recorded_as_stopped_and_runs_again(waiting, tmp_path):
    """The shard job in a process of its own (its watchdog ends it): held inside the `waiting`
    case, signalled, never released; after --grace the case gets a 'stopped:' row and the job
    requeues itself; the resumed job runs that case again and its row replaces the stopped one."""
    job = _job(tmp_path, grace_s=0.5)
    (tmp_path / "job.pkl").write_bytes(pickle.dumps(job))
    waiting.arm()
    proc = subprocess.Popen([sys.executable, "-c", GRACE_SCRIPT, str(tmp_path / "job.pkl"),
                             str(tmp_path / "submitit")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        pid = waiting.wait_entered()
        assert pid == proc.pid > 0
        os.kill(pid, signal.SIGUSR2)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == LOCAL_REQUEUE, output
    assert "Requeued job 4242" in output  # submitit's own words
    # said where the shard's output goes meanwhile: its pytest log
    assert "outlasted the grace period (0.5 s)" in (job.folder / "pytest.log").read_text()
    lines = records.read(job.folder)
    assert lines.dropped == 0
    stopped = lines.rows[lines.rows["impl"] == "waiting"]
    assert list(stopped["status"]) == ["error"]
    assert stopped["reason"].iloc[0].startswith(records.STOPPED)
    assert "grace period" in stopped["reason"].iloc[0]
    assert stopped["case_id"].iloc[0] not in records.done_ids(job.folder)  # it runs again

    from submitit.core.utils import DelayedSubmission

    waiting.release()  # the resumed job passes the gate at once (it is no longer armed anyway)
    DelayedSubmission.load(tmp_path / "submitit" / "4242_submitted.pkl").result()
    final = outcome(job.folder)
    assert sorted(final["case_id"]) == sorted(c.case_id for c in job.cases)
    assert final["status"].eq("ok").all()  # the stopped row is replaced by the case's new row
