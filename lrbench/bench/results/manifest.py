"""``OUT/plan.json``: what a run planned (case ids per shard) and, for a sharded run, its jobs.

``lrbench status`` compares it with the CSVs; the shards of a cluster run read it to know when
all of them have finished. A plain run has one shard, the folder itself (``"."``).
"""

from __future__ import annotations

import datetime
import json
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lrbench.files import atomic_write

PLAN = "plan.json"
SHARDS = "shards"


@dataclass
class ShardPlan:
    """One shard: its folder (relative to the run's), its case ids, and the jobs that ran it."""

    index: int
    folder: str
    case_ids: list[str]
    jobs: list[dict] = field(default_factory=list)  # {"job_id", "attempt", "state"}

    @property
    def job_state(self) -> str:
        return self.jobs[-1]["state"] if self.jobs else ""


@dataclass
class Manifest:
    """The plan of one run into one folder."""

    executor: str  # "in-process", "local" or "slurm"
    label: str
    shards: list[ShardPlan]
    host: str = field(default_factory=socket.gethostname)
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC)
                         .isoformat(timespec="seconds"))

    def save(self, out: str | Path) -> Path:
        """Write ``out/plan.json`` in one step (a reader never sees half a file)."""
        return atomic_write(Path(out) / PLAN, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, out: str | Path) -> Manifest | None:
        """The folder's plan, or ``None`` if it has none."""
        path = Path(out) / PLAN
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["shards"] = [ShardPlan(**shard) for shard in data["shards"]]
        return cls(**data)

    def shard_dir(self, out: str | Path, shard: ShardPlan) -> Path:
        return Path(out) / shard.folder


def shard_folder(index: int) -> str:
    """``OUT``-relative folder of shard ``index`` (1-based)."""
    return f"{SHARDS}/{index}"
