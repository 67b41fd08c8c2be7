"""A run split into shards and run through submitit: one Slurm job array (a node to each shard)
or submitit's local executor (real subprocesses here, one shard after another).

``run_sharded`` holds ``OUT``, writes ``OUT/plan.json``, submits the shards (each a
:class:`lrbench.bench.cluster.job.ShardJob` writing ``OUT/shards/I/results.csv``), waits, and merges
the shards into ``OUT/results.csv``. A shard that ends with cases still pending (killed, crashed)
is resubmitted with ``resume`` up to ``max_retries`` times, unless it was cancelled (``scancel``:
someone meant it; ``--resume`` finishes it); preemption and timeouts are handled inside the job by
submitit's checkpointing (:mod:`lrbench.bench.cluster.job`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lrbench.bench.cluster.job import ShardJob
from lrbench.bench.cluster.merge import merge_shards, pending_ids
from lrbench.bench.cluster.options import ClusterOptions, require_submitit
from lrbench.bench.matrix.cases import shard
from lrbench.bench.matrix.plan import Plan
from lrbench.bench.results import records, runlock
from lrbench.bench.results.manifest import SHARDS, Manifest, ShardPlan, shard_folder

SUBMITIT_DIR = "submitit"
POLL_S = {"local": 0.5, "slurm": 30.0}  # the local shard times on the same cores
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default (2 min) would cut every real run short

# on_event(message): progress lines for the user
OnEvent = Callable[[str], None]


@dataclass
class ShardedSummary:
    """What ``run_sharded`` did."""

    csv_path: Path
    merged: int  # rows in OUT/results.csv
    pending: dict[int, int] = field(default_factory=dict)  # shard -> cases still missing
    submitit_dir: Path | None = None

    @property
    def complete(self) -> bool:
        return not any(self.pending.values())


def _executor(submitit, options: ClusterOptions, folder: Path, shards: int):
    if options.executor == "local":
        executor = submitit.LocalExecutor(folder=folder)
        params = {"timeout_min": options.time_min or LOCAL_TIMEOUT_MIN}
        if options.gpus_per_node is not None:
            params["gpus_per_node"] = options.gpus_per_node
        else:  # submitit would hide every GPU (CUDA_VISIBLE_DEVICES=""): keep this process's view
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            params["setup"] = ["unset CUDA_VISIBLE_DEVICES" if visible is None
                               else f"export CUDA_VISIBLE_DEVICES={shlex.quote(visible)}"]
        executor.update_parameters(**params)
        return executor
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise RuntimeError("--executor slurm needs Slurm's sbatch and srun on PATH; run it on "
                           "the cluster's login node (or use --executor local here)")
    executor = submitit.SlurmExecutor(folder=folder)
    try:
        executor.update_parameters(**options.slurm_parameters(shards))
    except ValueError as err:
        raise ValueError(f"--slurm-arg: submitit refused the Slurm parameters: {err}") from err
    return executor


def _plan_shards(out: Path, plan: Plan, options: ClusterOptions, resume: bool) -> Manifest:
    previous = Manifest.load(out) if resume else None
    plain = previous is None or previous.executor not in ("local", "slurm")
    if resume and plain and records.results_path(out).exists():  # its rows would be merged away
        raise ValueError(f"--resume: {out} holds the results of a run without --executor; "
                         "resume it without --executor, or give the sharded run another --out")
    if previous is not None and previous.executor in ("local", "slurm") \
            and len(previous.shards) != options.nodes:
        raise ValueError(f"--nodes {options.nodes}: {out} was split into "
                         f"{len(previous.shards)} shards; resume with --nodes "
                         f"{len(previous.shards)} (or start afresh without --resume)")
    shards = [ShardPlan(index=i, folder=shard_folder(i),
                        case_ids=[c.case_id for c in shard(plan.cases, i, options.nodes)])
              for i in range(1, options.nodes + 1)]
    if previous is not None:
        for new, old in zip(shards, previous.shards, strict=True):
            new.jobs = old.jobs
    return Manifest(executor=options.executor, label=plan.label, shards=shards)


def run_sharded(plan: Plan, out: str | Path, options: ClusterOptions, *, resume: bool = False,
                threads: int | None = None, on_event: OnEvent | None = None,
                plugins: tuple[str, ...] = ()) -> ShardedSummary:
    """Run ``plan`` into ``out`` as ``options.nodes`` shards through submitit; see the module.

    ``plugins`` (``--plugin`` modules or ``.py`` files) are loaded again in each shard's job.

    Raises:
        runlock.FolderInUse: another run holds ``out``.
        RuntimeError: submitit (the ``cluster`` extra) or Slurm is missing.
        ValueError: bad options (named), e.g. ``--nodes`` unlike the run being resumed.
    """
    submitit = require_submitit(options.executor)
    say = on_event or (lambda message: None)
    out = Path(out)
    with runlock.hold(out) as lock:
        if lock.took_over is not None:
            say(f"took over {out} from a run that is gone: {lock.took_over.describe()}")
        manifest = _plan_shards(out, plan, options, resume)
        # Slurm present, parameters accepted: checked before anything in OUT is replaced
        executor = _executor(submitit, options, out / SUBMITIT_DIR, options.nodes)
        if not resume:
            shutil.rmtree(out / SHARDS, ignore_errors=True)
            records.results_path(out).unlink(missing_ok=True)
        manifest.save(out)
        # Shards always resume: a fresh run has just emptied OUT/shards, and a job that Slurm
        # requeues on its own (node failure, an admin's requeue) reruns this very pickle.
        jobs = {s.index: ShardJob(out=str(out), index=s.index, count=options.nodes,
                                  cases=shard(plan.cases, s.index, options.nodes),
                                  timing=plan.timing, label=plan.label, resume=True,
                                  threads=threads, plugins=tuple(plugins),
                                  grace_s=options.grace_s)
                for s in manifest.shards}
        todo = [s for s in manifest.shards if pending_ids(out, s)]
        if not todo:
            say("every shard already has all its cases")
        elif options.executor == "local":  # one at a time: timings never overlap
            for s in todo:
                _drive(executor, manifest, out, [s], jobs, options, say, array=False)
        else:  # all at once, a node each
            _drive(executor, manifest, out, todo, jobs, options, say, array=True)
        pending = {s.index: len(pending_ids(out, s)) for s in manifest.shards}
        merged = 0
        if any(records.results_path(out / s.folder).exists() for s in manifest.shards):
            merged = len(merge_shards(out)[1])
    return ShardedSummary(csv_path=records.results_path(out), merged=merged, pending=pending,
                          submitit_dir=out / SUBMITIT_DIR)


def _drive(executor, manifest: Manifest, out: Path, shards: list[ShardPlan],
           jobs: dict[int, ShardJob], options: ClusterOptions, say: OnEvent, array: bool) -> None:
    """Submit ``shards``, poll until each has ended, resubmit (resuming) one that ended with
    cases pending, and keep ``plan.json``'s job states current."""
    by_index = {s.index: s for s in shards}
    attempts = dict.fromkeys(by_index, 0)
    running = {}

    def record(index: int, job, state: str) -> None:
        plan = by_index[index]
        entry = {"job_id": str(job.job_id), "attempt": attempts[index], "state": state}
        if plan.jobs and plan.jobs[-1]["job_id"] == entry["job_id"]:
            plan.jobs[-1] = entry
        else:
            plan.jobs.append(entry)
        manifest.save(out)

    def submit(indices: list[int], resume: bool) -> None:
        fns = [jobs[i] for i in indices]  # every ShardJob resumes from its CSV
        submitted = executor.submit_array(fns) if array and len(fns) > 1 else [
            executor.submit(fn) for fn in fns]
        for index, job in zip(indices, submitted, strict=True):
            attempts[index] += 1
            running[index] = job
            record(index, job, "SUBMITTED")
            say(f"shard {index}/{len(manifest.shards)}: {len(by_index[index].case_ids)} cases, "
                f"job {job.job_id}" + (f" (attempt {attempts[index]}, resuming)" if resume else ""))

    submit(sorted(by_index), resume=False)
    seen = {}
    while running:
        time.sleep(POLL_S[options.executor])
        for index, job in list(running.items()):
            plan = by_index[index]
            state = job.state
            if plan.job_state != state and not job.done():
                record(index, job, state)
            csv = records.results_path(out / plan.folder)
            size = csv.stat().st_size if csv.exists() else 0
            if seen.get(index, (None,))[0] != size:  # read the CSV only when it changed
                recorded = len(plan.case_ids) - len(pending_ids(out, plan))
                if seen.get(index, (None, None))[1] != recorded:
                    say(f"shard {index}/{len(manifest.shards)}: {recorded}/{len(plan.case_ids)} "
                        f"cases recorded")
                seen[index] = (size, recorded)
            if not job.done():
                continue
            del running[index]
            state = job.state  # its final state
            left = pending_ids(out, plan)
            record(index, job, "COMPLETED" if not left else f"ENDED ({state})")
            if not left:
                continue
            if state.startswith("CANCELLED"):  # someone cancelled it (scancel): not undone here
                say(f"shard {index}: job {job.job_id} was cancelled ({state}) with {len(left)} "
                    "cases pending; not resubmitted (rerun with --resume to finish it)")
                continue
            why = _job_error(job)
            if attempts[index] > options.max_retries:
                say(f"shard {index}: {len(left)} cases still pending after {attempts[index]} "
                    f"attempts; giving up (last job {job.job_id}: {why}); logs: "
                    f"{job.paths.stderr}")
                continue
            say(f"shard {index}: job {job.job_id} ended with {len(left)} cases pending ({why}); "
                "resubmitting it to resume")
            submit([index], resume=True)


def _job_error(job) -> str:
    """A short reason why a job ended without finishing its shard."""
    try:
        job.result()
    except Exception as err:  # submitit raises the job's own error or UncompletedJobError
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        return lines[-1][:200] if lines else type(err).__name__
    return "the job returned, but cases are missing from its CSV"
