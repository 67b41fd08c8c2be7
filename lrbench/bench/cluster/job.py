"""What one shard of a sharded run does inside its job (a submitit job on a node or locally).

It is the plain run path (:func:`lrbench.bench.measure.runner.run_matrix`, which holds the folder) on
``OUT/shards/I`` with that shard's cases. When the scheduler preempts the job or its time runs
out, submitit calls :meth:`ShardJob.checkpoint`, which resubmits the same shard with ``resume``: the
requeued job skips every case its CSV already has. The last shard to finish merges all of them
into ``OUT/results.csv``.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from lrbench.bench.cluster.merge import merge_if_complete
from lrbench.bench.matrix.cases import Case
from lrbench.bench.measure.progress import progress_line
from lrbench.bench.measure.runner import Timing, run_matrix
from lrbench.bench.results.manifest import shard_folder


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

    @property
    def folder(self) -> Path:
        return Path(self.out) / shard_folder(self.index)

    def __call__(self) -> dict:
        import torch

        import lrbench

        for module in self.plugins:
            lrbench.load_plugin(module)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        stream = sys.stdout  # the runner sends pytest's own output to the shard's log
        stopped: list[BaseException] = []
        restore = _stop_pytest_on_preemption(stopped)
        try:
            summary = run_matrix(self.cases, self.folder, resume=self.resume, timing=self.timing,
                                 on_case=lambda i, n, row: print(progress_line(i, n, row),
                                                               file=stream, flush=True),
                                 label=f"{self.label}-shard-{self.index}-of-{self.count}")
        except KeyboardInterrupt:  # preempted outside the benchmark session (before or after)
            if not stopped:
                raise
        finally:
            restore()
        if stopped:  # preempted: submitit has resubmitted us (checkpoint); leave as it asked
            raise stopped[0]
        if summary.interrupted:
            raise RuntimeError(f"shard {self.index} was interrupted; its rows are kept in "
                               f"{summary.csv_path}")
        merge_if_complete(self.out)
        return {"index": self.index, "total": summary.total, "already_done": summary.already_done,
                "statuses": dict(summary.statuses)}

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption or timeout: the same shard again, resuming."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(dataclasses.replace(self, resume=True))


def _stop_pytest_on_preemption(stopped: list[BaseException]):
    """Wrap submitit's preemption handler so that the benchmark session stops cleanly.

    submitit's handler checkpoints, requeues, then exits with ``SystemExit``; inside a pytest
    session that exit would be taken for a failing test and the run would go on. The wrapper
    keeps the handler's exit in ``stopped`` and raises ``KeyboardInterrupt`` instead, which the
    runner treats as an interruption (finished rows kept); the caller re-raises the exit after.
    Returns a function that restores the previous handler.
    """
    try:
        from submitit.core.job_environment import JobEnvironment

        signum = JobEnvironment._usr_sig()
    except (ImportError, RuntimeError):
        return lambda: None
    previous = signal.getsignal(signum)
    if not callable(previous):  # not inside a submitit job
        return lambda: None

    def on_preemption(number, frame):
        try:
            previous(number, frame)
        except BaseException as exit_:  # SystemExit (requeued) or submitit's "not requeued"
            stopped.append(exit_)
        else:
            stopped.append(SystemExit(0))
        print(f"shard preempted (signal {number}); stopping after the rows written so far",
              file=sys.stderr, flush=True)
        raise KeyboardInterrupt

    signal.signal(signum, on_preemption)
    return lambda: signal.signal(signum, previous)
