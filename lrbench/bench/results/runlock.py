"""One run per output folder: a run holds ``FOLDER/.lrbench-run.lock`` while it writes there.

The lock is an advisory ``flock`` on that file, so the kernel drops it when the holder dies (even
by SIGKILL) and the next run takes the folder over; the file says who holds it (host, PID, start
time, command) so that a refused run can name the holder. The file is born with its holder's
details and its lock (:func:`lrbench.files.create_locked`; a take-over renames a new one into
place), so a reader never finds a held lock without them. A run also counts as holding ``FOLDER``
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
from lrbench.files import create_locked, replace_locked, try_lock

LOCK_NAME = ".lrbench-run.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a folder."""

    host: str
    pid: int | None  # None only for a lock file without details (written by an older lrbench)
    started: str
    command: str = ""

    def describe(self) -> str:
        pid = self.pid if self.pid is not None else "(unknown)"
        return f"PID {pid} on host {self.host}, started {self.started}" + (
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


def _parse(data: bytes) -> Holder | None:
    try:
        holder = Holder(**json.loads(data))
    except (ValueError, TypeError):
        return None
    return holder if isinstance(holder.pid, int) and holder.pid > 0 else None


def _read(path: Path) -> Holder | None:
    try:
        return _parse(path.read_bytes())
    except OSError:
        return None


def _read_fd(fd: int) -> Holder | None:
    return _parse(os.pread(fd, 1 << 16, 0))


def _still_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file named ``path`` (not replaced or removed since opened)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


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
    """Who holds ``folder`` now (itself, or one of its shards), or ``None`` if nobody does.

    A holder returned has a positive PID, except for a lock file left without details by an older
    lrbench (``pid`` is ``None`` then).
    """
    folder = Path(folder)
    paths = [folder / LOCK_NAME, *sorted((folder / SHARDS).glob(f"*/{LOCK_NAME}"))]
    for path in paths:
        holder = _holder_of(path)
        if holder is not None:
            return holder
    return None


def _holder_of(path: Path, looks: int = 20) -> Holder | None:
    for _ in range(looks):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            taken = try_lock(fd, shared=True)  # shared: two lookers never block each other
            if taken is None:
                return _held_without_flock(path)
            if taken:
                return None
            holder = _read_fd(fd)
            if holder is not None and _still_at(fd, path):
                return holder
        finally:
            os.close(fd)  # closing drops a lock we took only to test it
        time.sleep(0.01)  # a run taking the folder over is renaming its file into place
    return Holder(host="?", pid=None, started="?")


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
    me = Holder.me()
    record = json.dumps(asdict(me)).encode()
    deadline = time.monotonic() + 0.5
    while True:
        fd = create_locked(path, record)  # born with our details, locked
        if fd is not None:
            previous = None
            break
        try:
            old = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # released meanwhile
            continue
        taken = try_lock(old)
        if taken is False:
            os.close(old)
            if time.monotonic() < deadline:  # a looker (live_holder) holds it for a moment
                time.sleep(0.05)
                continue
            raise FolderInUse(folder, _holder_of(path))
        previous = _read_fd(old)
        if taken is None and (holder := _held_without_flock(path)) is not None:
            os.close(old)
            raise FolderInUse(folder, holder)
        if not _still_at(old, path):  # its holder released it, or another run took it over
            os.close(old)
            continue
        fd = replace_locked(path, record)  # ours in place while we hold the dead run's lock
        os.close(old)
        break
    for shard_lock in sorted((folder / SHARDS).glob(f"*/{LOCK_NAME}")):
        if (holder := live_holder(shard_lock.parent)) is not None:
            RunLock(folder=folder, holder=me, took_over=None, _fd=fd).release()
            raise FolderInUse(shard_lock.parent, holder)  # a shard of an earlier run still runs
    return RunLock(folder=folder, holder=me, took_over=previous, _fd=fd)


@contextlib.contextmanager
def hold(folder: str | Path) -> Iterator[RunLock]:
    """``with hold(out): ...``: the folder is this run's until the block ends."""
    lock = acquire(folder)
    try:
        yield lock
    finally:
        lock.release()
