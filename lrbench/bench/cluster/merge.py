"""Joining a sharded run's pieces: ``OUT/shards/*/results.csv`` into ``OUT/results.csv``.

Both the driver (``lrbench merge``, the end of ``lrbench run --executor``) and the shards' jobs (the
last one to finish merges) call this module; it imports neither of them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lrbench.bench.results import records
from lrbench.bench.results.manifest import SHARDS, Manifest, ShardPlan


def pending_ids(out: str | Path, plan: ShardPlan) -> set[str]:
    """The shard's planned case ids that its CSV does not have yet."""
    return set(plan.case_ids) - records.done_ids(Path(out) / plan.folder)


def merge_shards(out: str | Path) -> tuple[Path, pd.DataFrame]:
    """Join ``OUT/shards/*/results.csv`` into ``OUT/results.csv`` (``lrbench merge OUT``).

    Returns the CSV's path and the merged rows.
    """
    out = Path(out)
    manifest = Manifest.load(out)
    folders = ([out / s.folder for s in manifest.shards] if manifest is not None
               else sorted((out / SHARDS).iterdir()))
    pieces = [folder for folder in folders if records.results_path(folder).exists()]
    if not pieces:
        raise FileNotFoundError(f"no shard results under {out / SHARDS}")
    merged = records.merge_runs(pieces)
    return records.write(merged, out), merged  # atomic: readers never see half a file


def merge_if_complete(out: str | Path) -> bool:
    """Merge the shards if every one of them has all its cases (the last shard to end does)."""
    manifest = Manifest.load(out)
    if manifest is None or any(pending_ids(out, s) for s in manifest.shards):
        return False
    merge_shards(out)
    return True
