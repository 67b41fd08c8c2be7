"""Helpers that several test modules share (one copy of each)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lrbench.bench.results import records
from lrbench.files import atomic_write


def outcome(location) -> pd.DataFrame:
    """A run's (case id, status) pairs, sorted: what two runs that should agree must share."""
    frame = records.load(location)
    return frame[["case_id", "status"]].sort_values("case_id").reset_index(drop=True)


# --- holding a run at a chosen instant, across processes -----------------------------------

GATE_ENV = "LRBENCH_TEST_GATE"  # the folder of the gate that tests/waiting_plugin.py waits at


@dataclass(frozen=True)
class FileGate:
    """A gate made of files in ``folder``, so that it works across processes without sleeps.

    The test :meth:`arm`\\ s it; the code under test calls :meth:`enter`, which (once, for the first
    caller while armed) says so in ``entered`` with its PID and waits until the test
    :meth:`release`\\ s it. Unarmed, :meth:`enter` returns at once.
    """

    folder: Path

    def arm(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "armed").touch()

    def enter(self, timeout_s: float = 300.0) -> None:
        try:
            (self.folder / "armed").unlink()  # one caller only: the one whose unlink succeeds
        except FileNotFoundError:
            return
        atomic_write(self.folder / "entered", str(os.getpid()))
        deadline = time.monotonic() + timeout_s
        while not (self.folder / "released").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate {self.folder} was never released")
            time.sleep(0.005)

    def wait_entered(self, timeout_s: float = 180.0) -> int:
        """The PID of the process held at the gate, once it is there (always > 0)."""
        entered = self.folder / "entered"
        deadline = time.monotonic() + timeout_s
        while not entered.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing entered the gate {self.folder} in {timeout_s} s")
            time.sleep(0.005)
        pid = int(entered.read_text())
        assert pid > 0, pid
        return pid

    def release(self) -> None:
        (self.folder / "released").touch()


def wrap_with_gate(gate: FileGate, fn, after: bool = False):
    """``fn`` that waits at ``gate`` before (or after) doing its work."""
    def gated(*args, **kwargs):
        if not after:
            gate.enter()
        result = fn(*args, **kwargs)
        if after:
            gate.enter()
        return result
    return gated


@contextlib.contextmanager
def submitit_local_job(job, folder: Path, job_id: str = "4242"):
    """Within the block, this process is the submitit local job ``job_id`` running ``job``:
    submitit's own signal handlers are installed (USR2: checkpoint, requeue with exit code 144).
    Yields the job's ``JobPaths`` (``submitted_pickle`` is where a checkpoint goes); the signal
    handlers and the environment are restored after."""
    from submitit.core.job_environment import JobEnvironment
    from submitit.core.utils import DelayedSubmission, JobPaths

    variables = {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": job_id,
                 "SUBMITIT_FOLDER": str(folder)}
    saved_env = {name: os.environ.get(name) for name in variables}
    signals = (signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT)
    saved_handlers = {number: signal.getsignal(number) for number in signals}
    os.environ.update(variables)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = JobPaths(folder, job_id=job_id, task_id=0)
        delayed = DelayedSubmission(job)
        delayed.set_timeout(60, 3)
        JobEnvironment()._handle_signals(paths, delayed)
        yield paths
    finally:
        for number, handler in saved_handlers.items():
            signal.signal(number, handler)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
