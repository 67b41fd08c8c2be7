"""Files that readers share: atomic writes and advisory file locks.

Every file that a run, a merge, a lock or a cache writes for others to read goes through
:func:`atomic_write` or :func:`atomic_open`: the content goes to a temporary file in the same
folder (named by host and PID, so processes on several nodes of a shared file system never meet),
is flushed to disk, and is renamed over the target. A reader sees the old file or the new one,
never half of one, and a kill at any instant leaves one of the two.

Locks are ``flock`` locks, which the kernel drops when their holder dies (even by SIGKILL):
:func:`try_lock` tries once, :func:`wait_lock` retries until a deadline. A lock file that says who
holds it is born whole and locked (:func:`create_locked`, :func:`replace_locked`): its content is
written and the lock taken before the file appears under its name, so no reader ever finds a held
lock file without its holder's details.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``with atomic_open(path) as handle: ...``: write a file that appears whole or not at all.

    ``mode`` is ``"w"`` or ``"wb"``; ``kwargs`` go to :func:`open` (``newline``, ``encoding``).
    If the block raises, the target is left as it was and the temporary file is removed.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write(path: str | Path, content: str | bytes) -> Path:
    """Write ``content`` (text as UTF-8, or bytes) to ``path`` atomically; returns ``path``."""
    binary = isinstance(content, bytes)
    with atomic_open(path, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
        f.write(content)
    return Path(path)


def _write_locked(tmp: Path, content: bytes) -> int:
    """``tmp`` created with ``content``, flushed to disk and flock'ed (where the file system can):
    the open descriptor."""
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        try_lock(fd)  # nobody else knows this file yet: taken at once (or no flock here)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_locked(path: str | Path, content: bytes) -> int | None:
    """Create ``path`` holding ``content`` and locked (exclusive ``flock``) from its first instant.

    Returns the open descriptor, which holds the lock until it is closed, or ``None`` if ``path``
    exists already. The file is written under a temporary name and hard-linked into place, which
    fails when the name is taken.
    """
    path = Path(path)
    tmp = _temporary(path)
    fd = _write_locked(tmp, content)
    try:
        os.link(tmp, path)
    except FileExistsError:
        os.close(fd)
        return None
    except OSError:  # a file system without hard links: created exclusively, then written
        os.close(fd)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        try_lock(fd)
        os.write(fd, content)
        os.fsync(fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return fd


def replace_locked(path: str | Path, content: bytes) -> int:
    """Replace ``path`` with a new file holding ``content``, locked from its first instant (the
    caller must hold the lock of the file it replaces); returns the new descriptor."""
    path = Path(path)
    tmp = _temporary(path)
    fd = _write_locked(tmp, content)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return fd


def try_lock(fd: int, shared: bool = False) -> bool | None:
    """Try ``flock`` on ``fd`` once, without waiting.

    Returns True when taken, False when another process holds it, None when this file system has
    no ``flock`` (some network mounts).
    """
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return None
        raise
    return True


def wait_lock(fd: int, timeout_s: float, poll_s: float = 0.2) -> bool | None:
    """:func:`try_lock` until it is taken or ``timeout_s`` seconds have passed.

    Returns True when taken, False on time-out, None when this file system has no ``flock``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        taken = try_lock(fd)
        if taken is not False or time.monotonic() >= deadline:
            return taken
        time.sleep(min(poll_s, max(timeout_s / 10, 0.01)))


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
