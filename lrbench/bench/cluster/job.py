"""What one shard of a sharded run does inside its job (a submitit job on a node or locally).

It is the plain run path (:func:`lrbench.bench.measure.runner.run_matrix`, which holds the folder) on
``OUT/shards/I`` with that shard's cases. The last shard to finish merges all of them into
``OUT/results.csv``.

Preemption and the end of ``--time``: Slurm sends submitit's signal (USR2), then kills the job a
grace period later. submitit's own handler would checkpoint, requeue and exit right inside the
signal handler, wherever the main thread happens to be (a log flush, a CSV write, a ``finally``).
Here the handler only records the signal (:class:`lrbench.bench.measure.stopping.StopRequest`);
the runner stops between cases; when the matrix returns or raises, the main thread takes
submitit's checkpoint path (:meth:`ShardJob.checkpoint` resubmits the same shard, which resumes
from its CSV). A case still in flight ``grace_s`` after the signal is given up by a watchdog
thread: it records the case with a ``stopped:`` row, takes the checkpoint path itself and ends the
process before Slurm's kill. A shard with no case left pending just finishes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lrbench.bench.cluster.merge import merge_if_complete
from lrbench.bench.cluster.options import GRACE_S
from lrbench.bench.matrix.cases import Case
from lrbench.bench.measure.progress import progress_line
from lrbench.bench.measure.runner import Timing, run_matrix
from lrbench.bench.measure.stopping import StopRequest
from lrbench.bench.results import records
from lrbench.bench.results.manifest import shard_folder

WATCH_S = 0.2  # how often the watchdog looks at the case in flight


@dataclass(frozen=True)
class ShardJob:
    """Run shard ``index`` of ``count`` of a run into ``out`` (submitit pickles this object)."""

    out: str
    index: int
    count: int
    cases: list[Case]
    timing: Timing
    label: str
    resume: bool = False
    threads: int | None = None
    plugins: tuple[str, ...] = ()  # ``--plugin`` modules, loaded in the shard's process too
    grace_s: float = GRACE_S  # how long a case may go on after the preemption signal

    @property
    def folder(self) -> Path:
        return Path(self.out) / shard_folder(self.index)

    def __call__(self) -> dict:
        stop = StopRequest(grace_s=self.grace_s)
        checkpoint = _Checkpoint.install(stop)  # first: a signal from now on is only recorded
        try:
            return self._call(stop, checkpoint)
        except BaseException:
            if stop.requested:  # whatever the matrix raised: requeue, resuming from the CSV
                checkpoint.take()
            raise
        finally:
            checkpoint.uninstall()

    def _call(self, stop: StopRequest, checkpoint: _Checkpoint) -> dict:
        summary = self._run(stop, checkpoint)
        pending = {c.case_id for c in self.cases} - records.done_ids(self.folder)
        if pending and stop.requested:
            checkpoint.take()  # raises submitit's exit (requeued) or its error (not requeued)
        if pending:
            raise RuntimeError(f"shard {self.index} stopped with {len(pending)} case(s) pending "
                               f"({stop.reason() if stop.requested else 'interrupted'}); its "
                               f"rows are kept in {summary.csv_path}")
        merge_if_complete(self.out)  # a signal from here on changes nothing: the shard is done
        return {"index": self.index, "total": summary.total, "already_done": summary.already_done,
                "statuses": dict(summary.statuses)}

    def _run(self, stop: StopRequest, checkpoint: _Checkpoint):
        import torch

        import lrbench

        for module in self.plugins:
            lrbench.load_plugin(module)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        stream = sys.stdout  # the runner sends pytest's own output to the shard's log
        checkpoint.watch(records.results_path(self.folder))
        return run_matrix(self.cases, self.folder, resume=self.resume, timing=self.timing,
                          on_case=lambda i, n, row: print(progress_line(i, n, row), file=stream,
                                                          flush=True),
                          label=f"{self.label}-shard-{self.index}-of-{self.count}", stop=stop)

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption or timeout: the same shard again, resuming."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(dataclasses.replace(self, resume=True))


@dataclass
class _Checkpoint:
    """submitit's checkpoint path, taken once, by the main thread or by the watchdog.

    ``handler`` is submitit's own handler (checkpoint, requeue, exit); ``None`` outside a submitit
    job, where a signal only stops the run.
    """

    stop: StopRequest
    signum: int | None = None
    handler: object = None
    guard: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    taker: str | None = None  # "main" or "watchdog", once the path is taken
    ended: bool = False  # the run is over: the watchdog has nothing left to watch

    @classmethod
    def install(cls, stop: StopRequest) -> _Checkpoint:
        try:
            from submitit.core.job_environment import JobEnvironment

            signum = JobEnvironment._usr_sig()
        except (ImportError, RuntimeError):
            return cls(stop)
        previous = signal.getsignal(signum)
        if not callable(previous):  # not inside a submitit job
            return cls(stop)
        # only records the signal: no I/O, no submitit call, no raise
        signal.signal(signum, lambda number, frame: stop.request(number))
        return cls(stop, signum=signum, handler=previous)

    def uninstall(self) -> None:
        self.ended = True
        if self.signum is not None:
            signal.signal(self.signum, self.handler)

    def take(self) -> None:
        """submitit's checkpoint path (its handler checkpoints, requeues and exits): raises its
        ``SystemExit`` or its error. Returns outside a submitit job, or if the main thread took it
        already; waits for the end of the process if the watchdog took it."""
        if self.handler is None or not self._claim("main"):
            return
        print(f"shard stopped after the rows written so far ({self.stop.reason()}); "
              "checkpointing", file=sys.stderr, flush=True)
        self.handler(self.stop.signal, None)

    def _claim(self, who: str) -> bool:
        with self.guard:
            if self.taker is None:
                self.taker = who
                return True
            taker = self.taker
        if taker == "watchdog" and who == "main":
            while True:  # the watchdog is checkpointing and will end the process
                time.sleep(1)
        return False

    def watch(self, csv: Path) -> None:
        """Start the watchdog thread (a daemon) that gives up a case in flight past the grace."""
        if self.handler is not None:
            threading.Thread(target=self._watchdog, args=(csv,), daemon=True,
                             name="lrbench-grace").start()

    def _watchdog(self, csv: Path) -> None:
        stop = self.stop
        while not stop.overdue():
            if self.ended:
                return
            time.sleep(WATCH_S)
        with stop.rows:  # the main thread writes no row from now on
            if stop.in_flight is None or not self._claim("watchdog"):
                return  # the case ended meanwhile, or the main thread is checkpointing
            stop.given_up = True
            records.append_row(csv, stop.stopped_row())
        code = 1
        try:
            print(f"shard: the case in flight outlasted the grace period ({stop.grace_s:g} s); "
                  "recorded it as stopped, checkpointing", file=sys.stderr, flush=True)
            self.handler(stop.signal, None)
        except SystemExit as exit_:  # submitit requeued the job and asked to exit
            code = exit_.code if isinstance(exit_.code, int) else 0
        except BaseException as err:  # e.g. submitit's "not requeued": the driver resubmits
            print(f"shard: checkpoint failed: {err}", file=sys.stderr, flush=True)
        finally:
            sys.stderr.flush()
            _exit(code)


def _exit(code: int) -> None:
    """How the watchdog ends the process: at once, whatever the main thread is doing."""
    os._exit(code)
