"""The A/B itself: base, new, base, new ... in separate processes, then one comparison over every
round gathered.

Machine drift (another process, clocks, heat) that lasts longer than one run hits whichever side
runs then; interleaving the sides spreads it over both, and pooling the rounds of every repeat
lets the rank test see it as noise rather than as a change. Layout of ``out``::

    out/ab.json                 the revisions, the run options, the order and each run's time
    out/base/1/ ... out/base/N/ each base run (results.csv, pytest.log, plan.json) and its
    out/new/1/  ... out/new/N/  console log beside it (out/base/1.log)
    out/comparison.csv          the per-case table (lrbench.bench.comparison.compare)
    out/comparison.md           the same as Markdown (a pull-request comment)
"""

from __future__ import annotations

import datetime
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lrbench.bench.ab.launch import IMPORTED_FROM_ELSEWHERE, SideRun, run_side
from lrbench.bench.ab.revisions import Revision, checkouts
from lrbench.bench.comparison import compare, verdict_table
from lrbench.bench.results import conditions
from lrbench.files import atomic_write

SIDES = ("base", "new")
MANIFEST = "ab.json"


class SideFailed(RuntimeError):
    """A side's run did not complete (its code raised, or it could not be imported)."""


@dataclass(frozen=True)
class ABPlan:
    """What to compare and how.

    Attributes:
        base, new: the two revisions.
        run_args: ``lrbench run`` options, the same for both sides (without ``--out``).
        repeats: runs per side, interleaved base, new, base, new ...
        out: the folder of both sides' runs and the comparison.
        threshold, alpha: the comparison's bars (:func:`lrbench.bench.comparison.compare.compare_frames`).
    """

    base: Revision
    new: Revision
    run_args: list[str]
    repeats: int
    out: Path
    threshold: float = 0.10
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats: expected >= 1, got {self.repeats}")
        if "--out" in self.run_args:
            raise ValueError("run_args: --out is the A/B's own (OUT/base/I, OUT/new/I)")

    def order(self) -> list[tuple[str, int]]:
        """(side, repeat) in the order run: base 1, new 1, base 2, new 2, ..."""
        return [(side, i) for i in range(1, self.repeats + 1) for side in SIDES]


@dataclass
class ABResult:
    """The comparison and where everything was written."""

    comparison: compare.Comparison
    runs: dict[str, list[Path]]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# on_event(message): a progress line
OnEvent = Callable[[str], None]


def prepare_out(out: Path) -> None:
    """Make ``out`` ready: a new or empty folder, or one a previous A/B wrote (its runs replaced);
    a folder holding anything else is refused rather than overwritten."""
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ValueError(f"--out {out} holds files that lrbench ab did not write; "
                         "choose an empty or new folder")
    for side in SIDES:
        shutil.rmtree(out / side, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _save_manifest(plan: ABPlan, done: list[dict], finished: bool) -> None:
    manifest = {
        "base": asdict(plan.base), "new": asdict(plan.new), "run_args": plan.run_args,
        "repeats": plan.repeats, "threshold": plan.threshold, "alpha": plan.alpha,
        "python": sys.executable, "runs": done, "finished": finished,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    atomic_write(plan.out / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def run_ab(plan: ABPlan, repo: Path, on_event: OnEvent = print,
           runner: Callable[..., SideRun] = run_side) -> ABResult:
    """Check both revisions out, run them interleaved, compare; write everything under
    ``plan.out``. Raises SideFailed when a run does not complete (its log named)."""
    prepare_out(plan.out)
    revisions = {"base": plan.base, "new": plan.new}
    done: list[dict] = []
    _save_manifest(plan, done, finished=False)
    runs: dict[str, list[Path]] = {side: [] for side in SIDES}
    with checkouts(repo, revisions) as paths:
        for step, (side, i) in enumerate(plan.order(), start=1):
            folder = plan.out / side / str(i)
            on_event(f"[{step}/{len(plan.order())}] {side} {i}/{plan.repeats}: "
                     f"{revisions[side].name} ({revisions[side].short})")
            result = runner(paths[side], ["run", *plan.run_args, "--out", str(folder)],
                            plan.out / side / f"{i}.log")
            done.append({"side": side, "repeat": i, "folder": str(folder.relative_to(plan.out)),
                         "seconds": round(result.seconds, 2), "returncode": result.returncode})
            _save_manifest(plan, done, finished=False)
            if result.returncode != 0:
                why = ("its lrbench was imported from elsewhere, not from its checkout"
                       if result.returncode == IMPORTED_FROM_ELSEWHERE
                       else f"exit status {result.returncode}")
                raise SideFailed(f"the {side} run {i} ({revisions[side].name}, "
                                 f"{revisions[side].short}) failed ({why}); see {result.log}")
            on_event(f"      {result.seconds:.1f} s -> {folder}")
            runs[side].append(folder)
    _save_manifest(plan, done, finished=True)
    return _compare(plan, runs, done)


def _compare(plan: ABPlan, runs: dict[str, list[Path]], done: list[dict]) -> ABResult:
    sides = {side: compare.load_side(side.upper(), runs[side]) for side in SIDES}
    comparison = compare.compare_frames(sides["base"], sides["new"], plan.threshold, plan.alpha)
    notes = []
    for side, rows in sides.items():
        revs = sorted({rev for rev in rows["git_rev"] if rev})
        if revs and not all(rev.startswith(getattr(plan, side).short) for rev in revs):
            notes.append(f"{side.upper()} rows name revision(s) {', '.join(revs)}, "
                         f"not {getattr(plan, side).short}")
    notes += conditions.side_notes(sides["base"], sides["new"])
    records_path = plan.out / "comparison.csv"
    with_sides = comparison.table.assign(base_rev=plan.base.short, new_rev=plan.new.short)
    atomic_write(records_path, with_sides.to_csv(index=False))
    title = (f"lrbench ab {plan.base.name} ({plan.base.short}) vs {plan.new.name} "
             f"({plan.new.short}), {plan.repeats} interleaved run(s) a side")
    atomic_write(plan.out / "comparison.md", verdict_table.markdown(comparison, title, notes))
    seconds = {side: sum(d["seconds"] for d in done if d["side"] == side) for side in SIDES}
    return ABResult(comparison=comparison, runs=runs, seconds=seconds, notes=notes)

