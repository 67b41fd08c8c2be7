"""The two revisions of an A/B: resolved in the git repository of a folder, each checked out in a
temporary ``git worktree`` of its own, removed afterwards."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# what a revision must hold for ``lrbench ab`` to run it (the one-module-per-command layout)
NEEDED = ("lrbench/cli.py", "lrbench/bench/measure/runner.py", "implementations/__init__.py")


class RevisionError(ValueError):
    """A revision that cannot be run: unknown, or without the files ``lrbench ab`` needs."""


@dataclass(frozen=True)
class Revision:
    """A revision as the user named it and the commit it resolved to."""

    name: str
    sha: str

    @property
    def short(self) -> str:
        return self.sha[:12]


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=120,
                          check=check)


def repository(folder: str | Path) -> Path:
    """The top of the git repository holding ``folder``; RevisionError if there is none."""
    try:
        done = _git(Path(folder), "rev-parse", "--show-toplevel", check=False)
    except OSError as err:  # no git at all
        raise RevisionError(f"git is needed to check revisions out: {err}") from err
    if done.returncode != 0:
        raise RevisionError(f"{Path(folder).resolve()} is not in a git repository "
                            f"({done.stderr.strip()}); run lrbench ab in the repository")
    return Path(done.stdout.strip())


def resolve(repo: Path, name: str) -> Revision:
    """``name`` (a commit, branch, tag, ``HEAD~1`` ...) as a :class:`Revision`; RevisionError
    naming it when git does not know it or it lacks a file of :data:`NEEDED`."""
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
    if done.returncode != 0:
        hint = ""
        if _git(repo, "rev-parse", "--is-shallow-repository", check=False).stdout.strip() == "true":
            hint = " (this clone is shallow: fetch more history, e.g. git fetch --deepen=1)"
        raise RevisionError(f"unknown revision {name!r} in {repo}{hint}")
    sha = done.stdout.strip()
    for path in NEEDED:
        if _git(repo, "cat-file", "-e", f"{sha}:{path}", check=False).returncode != 0:
            raise RevisionError(f"revision {name!r} ({sha[:12]}) has no {path}: lrbench ab runs "
                                "revisions with lrbench's one-module-per-command layout")
    return Revision(name=name, sha=sha)


@contextlib.contextmanager
def checkouts(repo: Path, revisions: dict[str, Revision]) -> Iterator[dict[str, Path]]:
    """``with checkouts(repo, {"base": r1, "new": r2}) as paths:``: each revision in a detached
    git worktree under one temporary folder; all removed (and pruned) when the block ends."""
    top = Path(tempfile.mkdtemp(prefix="lrbench-ab-"))
    made: dict[str, Path] = {}
    try:
        for side, revision in revisions.items():
            path = top / side
            done = _git(repo, "worktree", "add", "--detach", "--quiet", str(path), revision.sha,
                        check=False)
            if done.returncode != 0:
                raise RevisionError(f"git worktree add of {revision.name!r} failed: "
                                    f"{done.stderr.strip()}")
            made[side] = path
        yield made
    finally:
        for path in made.values():
            _git(repo, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(top, ignore_errors=True)
        _git(repo, "worktree", "prune", check=False)
