"""``lrbench ab`` on temporary git repositories: revisions resolved or refused, sides interleaved
in their own checkouts, each checkout's own code run (never the installed lrbench), a commit
that makes one implementation do its work sixteen times caught and named (and the untouched 3x3
conv not), an A/B with no slower case exiting 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from lrbench.bench.ab import interleave, revisions
from lrbench.bench.ab.interleave import ABPlan, run_ab
from lrbench.bench.ab.launch import IMPORTED_FROM_ELSEWHERE, SideRun, run_side
from lrbench.bench.results import records
from lrbench.cli import main
from tests.helpers import with_rounds

ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
# a small slice: unfold's op and layer and the 3x3 conv (the control) at 16x16, one thread
# (steadier on shared cores), 0.3 s of rounds a case in one pass (a run's median is not one
# moment's; the A/B's unit is the run, so further passes would only add time). Five pairs (four
# are the fewest whose t-test can reach alpha = 0.01, when the pairs agree). The slowdown is the
# work done sixteen times: the test checks the A/B's plumbing (scripts/compare_power.py measures
# its power), so the planted change must stand far beyond the machine's noise. On an AMD EPYC
# (2026-12-07) the run medians of one side varied 1.9x from run to run (unfold's op 0.30 to 0.58
# ms at BASE, conv3x3 0.06 to 0.12 ms, pinned to either core alike): a doubling with 8 pairs came
# out 1.39x [1.21, 2.57], p = 0.03, unsure.
SLICE = ["--impl", "unfold", "--kernel", "3", "--size", "16", "--channels", "16", "--m", "4",
         "--batch", "1", "--pass", "fwd", "--threads", "1", "--min-rounds", "10",
         "--max-time", "0.3", "--passes", "1"]
UNFOLD_OP = "op:unfold:B1-C16-16x16-k3-m4-s1:float32:cpu:fwd"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def fake_side_runner(calls: list, rows_of: Callable[[str, int], pd.DataFrame]):
    """A side runner that runs nothing: it records ``(side, revision, args)`` in ``calls`` and
    writes ``rows_of(side, number of the call)`` where the run would have written its rows."""
    def fake(checkout: Path, args: list[str], log: Path) -> SideRun:
        side = checkout.name
        calls.append((side, git(checkout, "rev-parse", "HEAD"), args))
        records.write(rows_of(side, len(calls)), Path(args[args.index("--out") + 1]))
        return SideRun(returncode=0, seconds=0.1, log=log)

    return fake


@pytest.fixture
def skeleton(tmp_path) -> Path:
    """A repository with the files a revision needs, and nothing that runs."""
    repo = tmp_path / "repo"
    for path in revisions.NEEDED:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text("")
    git(repo, "init", "-q")
    commit_all(repo, "one")
    (repo / "lrbench" / "cli.py").write_text("# two\n")
    commit_all(repo, "two")
    return repo


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of this lrbench (working tree) as a git repository of its own, one commit."""
    repo = tmp_path_factory.mktemp("ab") / "project"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".torch_ext")
    for folder in ("lrbench", "implementations"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    git(repo, "init", "-q")
    commit_all(repo, "lrbench as it is")
    return repo


def test_revisions_resolve_and_unknown_ones_are_named(skeleton):
    assert revisions.resolve(skeleton, "HEAD~1").sha == git(skeleton, "rev-parse", "HEAD~1")
    with pytest.raises(revisions.RevisionError, match="unknown revision 'nope'"):
        revisions.resolve(skeleton, "nope")
    with pytest.raises(revisions.RevisionError, match="unknown revision 'HEAD~2'"):
        revisions.resolve(skeleton, "HEAD~2")  # a clone with too little history
    (skeleton / "implementations" / "__init__.py").unlink()
    commit_all(skeleton, "three")
    with pytest.raises(revisions.RevisionError, match="has no implementations/__init__.py"):
        revisions.resolve(skeleton, "HEAD")


def test_bad_input_exits_2_with_the_reason(skeleton, tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(skeleton)
    unknown = runner.invoke(main, ["ab", "no-such-rev", "--out", str(tmp_path / "o")])
    assert unknown.exit_code == 2 and "unknown revision 'no-such-rev'" in unknown.output
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    used = runner.invoke(main, ["ab", "HEAD~1", "--out", str(tmp_path / "used")])
    assert used.exit_code == 2 and "did not write" in used.output
    assert (tmp_path / "used" / "keep.txt").exists()
    monkeypatch.chdir(tmp_path)
    outside = runner.invoke(main, ["ab", "HEAD~1", "--out", str(tmp_path / "o")])
    assert outside.exit_code == 2 and "not in a git repository" in outside.output


def test_sides_run_interleaved_in_their_own_checkouts(skeleton, tmp_path):
    """A fake side runner: records what ran where and writes rows whose truth is known (the new
    revision's first case twice as slow)."""

    a, b = "op:a:B1-C8-8x8-k3-m4-s1:float32:cpu:fwd", "op:b:B1-C8-8x8-k3-m4-s1:float32:cpu:fwd"
    base_row = {"case_id": a, "target": "op", "impl": "a", "status": "ok", "median_s": 1e-3,
                "cpu": "X", "threads": 1}
    rows = pd.DataFrame([base_row, {**base_row, "case_id": b, "impl": "b"}])
    calls = []
    fake = fake_side_runner(calls, lambda side, i: with_rounds(
        rows, seed=i, factor=2.0 if side == "new" else 1.0, mask=rows["case_id"] == a))

    base, new = revisions.resolve(skeleton, "HEAD~1"), revisions.resolve(skeleton, "HEAD")
    plan = ABPlan(base=base, new=new, run_args=["--preset", "quick"], repeats=3,
                  out=tmp_path / "out")
    result = run_ab(plan, skeleton, on_event=lambda line: None, runner=fake)
    assert [c[0] for c in calls] == ["base", "new"] * 3
    assert all(sha == (base.sha if side == "base" else new.sha) for side, sha, _ in calls)
    assert calls[2][2] == ["run", "--preset", "quick", "--out", str(tmp_path / "out/base/2")]
    assert list(result.comparison.regressions["case_id"]) == [a]
    assert result.comparison.table.set_index("case_id").loc[b, "verdict"] == "unchanged"
    assert result.comparison.regressions["base_rounds"].item() == 3 * 30  # every run's rounds
    assert "| slower |" in (tmp_path / "out" / "comparison.md").read_text()
    assert (tmp_path / "out" / "comparison.csv").exists() and (tmp_path / "out" / "ab.json").exists()
    assert "lrbench-ab-" not in git(skeleton, "worktree", "list")  # checkouts removed


def test_the_launcher_refuses_an_lrbench_from_outside_the_checkout(tmp_path):
    checkout = tmp_path / "checkout"  # implementations/ but no lrbench/: the installed one loads
    (checkout / "implementations").mkdir(parents=True)
    (checkout / "implementations" / "__init__.py").write_text("")
    ran = run_side(checkout, ["--help"], tmp_path / "log.txt")
    assert ran.returncode == IMPORTED_FROM_ELSEWHERE
    assert "lrbench came from" in ran.log.read_text()


def _ab(project: Path, out: Path, repeats: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrbench", "ab", "HEAD~1", "HEAD", *SLICE,
                           "--repeats", str(repeats), "--out", str(out)], cwd=project,
                          capture_output=True, text=True, timeout=900)


def test_an_ab_with_no_slower_case_exits_0_and_says_so(skeleton, tmp_path, monkeypatch):
    """The command's verdict path, timing nothing: both sides' rows from one distribution (a fake
    side runner) give exit 0 and "no confirmed regression". (Real runs of unchanged code: the
    slow test's untouched 3x3 conv below, and the main job's A/B of every commit.)"""

    row = {"case_id": UNFOLD_OP, "target": "op", "impl": "unfold", "status": "ok",
           "median_s": 1e-3, "cpu": "X", "threads": 1}
    calls = []
    fake = fake_side_runner(calls, lambda side, i: with_rounds(pd.DataFrame([row]), seed=i))
    real = interleave.run_ab
    monkeypatch.setattr(interleave, "run_ab", lambda plan, repo, on_event=print:
                        real(plan, repo, on_event, runner=fake))
    monkeypatch.chdir(skeleton)
    done = CliRunner().invoke(main, ["ab", "HEAD~1", "HEAD", *SLICE, "--repeats", "4",
                                     "--out", str(tmp_path / "ab")])
    assert done.exit_code == 0, done.output
    assert "no confirmed regression" in done.output
    table = pd.read_csv(tmp_path / "ab" / "comparison.csv")
    assert list(table["verdict"]) == ["unchanged"] and len(calls) == 8  # 4 runs a side


@pytest.mark.slow
def test_a_commit_doing_one_implementations_work_sixteen_times_is_caught_and_named(project, tmp_path):
    path = project / "implementations" / "unfold.py"
    text = path.read_text().replace("def local_relation_unfold(", "def _unfold_once(", 1)
    text = text.replace("\nregister(", '''
def local_relation_unfold(*args):
    for _ in range(15):  # the work, done sixteen times
        _unfold_once(*args)
    return _unfold_once(*args)


register(''', 1)
    path.write_text(text)
    commit_all(project, "unfold does its work sixteen times")
    done = _ab(project, tmp_path / "ab", repeats=5)
    assert done.returncode == 1, done.stdout + done.stderr
    named = done.stderr.splitlines()[-1].split(": ", 1)[1].split(", ")
    # unfold's cases (the op, or the layer built on it: on a busy machine one of the two may stay
    # unsure), never the untouched 3x3 conv
    assert named and all(":unfold:" in case for case in named), done.stdout + done.stderr

    table = pd.read_csv(tmp_path / "ab" / "comparison.csv").set_index("case_id")
    assert table.loc[UNFOLD_OP, "ratio"] > 4
