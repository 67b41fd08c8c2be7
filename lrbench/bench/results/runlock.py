"""One run per output folder: a run holds ``FOLDER/.lrbench-run.lock`` while it writes there.

The lock is an advisory ``flock`` on that file, so the kernel drops it when the holder dies (even
by SIGKILL) and the next run takes the folder over; the file says who holds it (host, PID, start
time, command) so that a refused run can name the holder. A run also counts as holding ``FOLDER``
while a shard of it holds ``FOLDER/shards/I`` (the shards of a cluster run outlive its driver).

Where the file system has no ``flock`` (some network mounts), the file's content decides: a lock
of this host whose PID is gone is taken over; a lock of another host is refused (delete the file
once that run is known to be gone).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from lrbench.bench.results.manifest import SHARDS
from lrbench.files import try_lock

LOCK_NAME = ".lrbench-run.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a folder."""

    host: str
    pid: int
    started: str
    command: str = ""

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host}, started {self.started}" + (
            f" ({self.command})" if self.command else "")

    @classmethod
    def me(cls) -> Holder:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200] if sys.argv else ""
        return cls(host=socket.gethostname(), pid=os.getpid(), started=now, command=command)


class FolderInUse(RuntimeError):
    """Another live run holds the folder."""

    def __init__(self, folder: Path, holder: Holder | None) -> None:
        self.folder, self.holder = folder, holder
        who = holder.describe() if holder else "a process that left no details"
        super().__init__(f"{folder} is in use by another lrbench run: {who}. Wait for it to end "
                         "or stop it; a run killed earlier is taken over automatically.")


def _read(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _held_without_flock(path: Path) -> Holder | None:
    """The holder by the file's content alone (no flock here): ``None`` if it is gone."""
    holder = _read(path)
    if holder is None or (holder.host == socket.gethostname() and not _pid_alive(holder.pid)):
        return None
    return holder


def live_holder(folder: str | Path) -> Holder | None:
    """Who holds ``folder`` now (itself, or one of its shards), or ``None`` if nobody does."""
    folder = Path(folder)
    paths = [folder / LOCK_NAME, *sorted((folder / SHARDS).glob(f"*/{LOCK_NAME}"))]
    for path in paths:
        if not path.exists():
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            taken = try_lock(fd, shared=True)  # shared: two lookers never block each other
            if taken is False:
                return _read(path) or Holder(host="?", pid=-1, started="?")
            if taken is None and (holder := _held_without_flock(path)) is not None:
                return holder
        finally:
            os.close(fd)  # closing drops a lock we took only to test it
    return None


@dataclass
class RunLock:
    """A held folder; :meth:`release` (or leaving :func:`hold`) gives it back."""

    folder: Path
    holder: Holder
    took_over: Holder | None  # what a dead run left behind, if anything
    _fd: int

    def release(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.folder / LOCK_NAME)  # still under our flock: nobody can be inside
        os.close(self._fd)
        self._fd = -1


def acquire(folder: str | Path) -> RunLock:
    """Hold ``folder`` for this process, or raise :class:`FolderInUse` at once naming the holder.

    A lock left by a run that died (its flock dropped by the kernel, or its PID gone on this
    host) is taken over; ``RunLock.took_over`` says whose it was.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    deadline = time.monotonic() + 0.5
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        taken = try_lock(fd)
        if taken is False:
            os.close(fd)
            if time.monotonic() < deadline:  # a looker (live_holder) holds it for a moment
                time.sleep(0.05)
                continue
            raise FolderInUse(folder, _read(path))
        previous = _read(path)
        if taken is None and (holder := _held_without_flock(path)) is not None:
            os.close(fd)
            raise FolderInUse(folder, holder)
        try:  # the holder we raced with may have unlinked the file before we locked it
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    for shard_lock in sorted((folder / SHARDS).glob(f"*/{LOCK_NAME}")):
        if (holder := live_holder(shard_lock.parent)) is not None:
            os.close(fd)  # the folder itself was free, but a shard of an earlier run still runs
            raise FolderInUse(shard_lock.parent, holder)
    me = Holder.me()
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(asdict(me)).encode(), 0)
    os.fsync(fd)
    return RunLock(folder=folder, holder=me, took_over=previous, _fd=fd)


@contextlib.contextmanager
def hold(folder: str | Path) -> Iterator[RunLock]:
    """``with hold(out): ...``: the folder is this run's until the block ends."""
    lock = acquire(folder)
    try:
        yield lock
    finally:
        lock.release()
