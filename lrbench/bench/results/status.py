"""``lrbench status OUT``: per shard, the planned cases against the rows of its CSV.

Counts come from ``OUT/plan.json`` (what was planned) and each shard's ``results.csv`` (what is
recorded: ok, failed, error, skipped); pending = planned but not recorded yet. Lines of a CSV that
were kept out (cut short by a kill) are counted and shown. The job state is the
last one the driver recorded, a live Slurm state when ``sacct`` answers, and "running" while a
process holds the shard's folder.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lrbench.bench.results import records, runlock
from lrbench.bench.results.manifest import Manifest, ShardPlan

COUNTED = ("ok", "failed", "error", "skipped")


@dataclass
class ShardStatus:
    """One shard's progress."""

    index: int
    folder: Path
    planned: int
    counts: Counter  # recorded rows of planned cases, by status
    pending: int
    job: str  # job id and state, "" when unknown
    dropped: int = 0  # lines of its CSV kept out (cut short by a kill, or unreadable)

    @property
    def recorded(self) -> int:
        return sum(self.counts.values())


def _live_slurm_state(manifest: Manifest, out: Path, plan: ShardPlan) -> str | None:
    if manifest.executor != "slurm" or not plan.jobs or shutil.which("sacct") is None:
        return None
    try:
        import submitit

        job = submitit.SlurmJob(folder=out / "submitit", job_id=plan.jobs[-1]["job_id"])
        return job.state
    except Exception:  # sacct unreachable or the job forgotten: keep the recorded state
        return None


def _job(manifest: Manifest, out: Path, plan: ShardPlan) -> str:
    holder = runlock.live_holder(out / plan.folder)
    if holder is not None:
        state = f"running (PID {holder.pid} on {holder.host})"
    else:
        state = _live_slurm_state(manifest, out, plan) or plan.job_state
    if not plan.jobs:
        return state or ("not submitted yet" if manifest.executor in ("local", "slurm") else "")
    last = plan.jobs[-1]
    return f"job {last['job_id']} (attempt {last['attempt']}): {state}"


def run_status(out: str | Path) -> tuple[Manifest | None, list[ShardStatus]]:
    """The plan of ``out`` (``None`` if it has no ``plan.json``) and each shard's status."""
    out = Path(out)
    manifest = Manifest.load(out)
    if manifest is None:  # a run without a plan: what its CSV has, nothing known to be pending
        loaded = records.read(out) if records.results_path(out).exists() else None
        counts = Counter() if loaded is None else Counter(loaded.rows["status"])
        return None, [ShardStatus(index=1, folder=out, planned=sum(counts.values()),
                                  counts=counts, pending=0, job="",
                                  dropped=loaded.dropped if loaded else 0)]
    statuses = []
    for plan in manifest.shards:
        folder = out / plan.folder
        planned = set(plan.case_ids)
        counts, dropped = Counter(), 0
        if records.results_path(folder).exists():
            loaded = records.read(folder)
            rows, dropped = loaded.rows.drop_duplicates("case_id", keep="last"), loaded.dropped
            done = rows[rows["case_id"].isin(planned) & ~rows["reason"].str.startswith(
                records.STOPPED)]  # a stopped case runs again: pending
            counts = Counter(done["status"])
        statuses.append(ShardStatus(index=plan.index, folder=folder, planned=len(planned),
                                    counts=counts, pending=len(planned) - sum(counts.values()),
                                    job=_job(manifest, out, plan), dropped=dropped))
    return manifest, statuses


def render(out: str | Path, manifest: Manifest | None, statuses: list[ShardStatus]) -> str:
    """The table ``lrbench status`` prints."""
    head = (f"{out}: {manifest.executor} run '{manifest.label}', {len(statuses)} shard(s), "
            f"planned {manifest.created} on {manifest.host}" if manifest is not None
            else f"{out}: no plan.json (a run from before plans were recorded); CSV rows only")
    lines = [head, f"{'shard':<7}{'planned':>8}{'done':>6}" + "".join(f"{s:>8}" for s in COUNTED)
             + f"{'pending':>9}  job"]
    for s in statuses:
        lines.append(f"{s.index:<7}{s.planned:>8}{s.recorded:>6}"
                     + "".join(f"{s.counts.get(name, 0):>8}" for name in COUNTED)
                     + f"{s.pending:>9}  {s.job}")
    total = Counter()
    for s in statuses:
        total.update(s.counts)
    pending = sum(s.pending for s in statuses)
    lines.append(f"{'all':<7}{sum(s.planned for s in statuses):>8}{sum(total.values()):>6}"
                 + "".join(f"{total.get(name, 0):>8}" for name in COUNTED) + f"{pending:>9}")
    for s in statuses:
        if s.dropped:
            lines.append(f"shard {s.index}: {s.dropped} line(s) of "
                         f"{records.results_path(s.folder)} kept out (cut short by a kill, or "
                         "unreadable); their cases count as pending")
    merged = records.results_path(out)
    if len(statuses) > 1 or (manifest is not None and manifest.shards[0].folder != "."):
        state = (f"merged: {len(records.load(merged))} rows in {merged}" if merged.exists()
                 else "not merged yet (lrbench merge OUT)")
        lines.append(state)
    running = [s.index for s in statuses if "running" in s.job]
    if pending == 0:
        lines.append("finished")
    elif running or runlock.live_holder(out) is not None:
        lines.append(f"{pending} case(s) pending; the run is going")
    else:
        lines.append(f"{pending} case(s) pending and nothing running; continue with the same "
                     "command and --resume")
    return "\n".join(lines)
