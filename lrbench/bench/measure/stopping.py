"""Stopping a run between cases when the scheduler asks (preemption, the end of ``--time``).

A signal handler may run at any bytecode of the main thread: inside a case, in pytest's log flush,
in the middle of a CSV write. So it does nothing but :meth:`StopRequest.request`, which sets two
attributes (no I/O, no lock, no raise). The runner reads the request between cases and ends the
benchmark session there (``session.shouldstop``); whoever called the runner then decides what
stopping means (a shard job takes submitit's checkpoint path, see
:mod:`lrbench.bench.cluster.job`).

A case can outlast the scheduler's patience. :meth:`StopRequest.overdue` says when the case in
flight has gone on for longer than ``grace_s`` after the request; that case is recorded with a row
saying so (:meth:`StopRequest.stopped_row`, reason ``stopped: ...``) and the process ends. Such a
row does not count as done: ``--resume`` runs the case again and its new row replaces it
(:func:`lrbench.bench.results.records.read`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from lrbench.bench.matrix.cases import Case
from lrbench.bench.results.records import STOPPED


@dataclass
class StopRequest:
    """Shared between a signal handler (writes), the runner and a watchdog thread (read).

    ``grace_s``: how long the case in flight may go on after the request before it is given up.
    """

    grace_s: float = 20.0
    signal: int | None = None  # what asked (a signal number), once asked
    requested_at: float | None = None  # time.monotonic() of the request
    in_flight: Case | None = None  # the case being run, set by the runner
    started_at: float | None = None  # when the case in flight started
    # Held while a row is appended and while the process is given up: a row is either written
    # whole before the give-up or not at all.
    rows: threading.Lock = field(default_factory=threading.Lock)
    given_up: bool = False  # a watchdog recorded the case in flight and is ending the process

    def __post_init__(self) -> None:
        if not self.grace_s > 0:
            raise ValueError(f"grace_s: expected a number of seconds > 0, got {self.grace_s!r}")

    def request(self, signum: int = 0) -> None:
        """Ask the run to stop; safe in a signal handler (two attribute writes, nothing else)."""
        if self.requested_at is None:
            self.signal = signum
            self.requested_at = time.monotonic()

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def reason(self) -> str:
        return f"stop requested (signal {self.signal})" if self.signal else "stop requested"

    def overdue(self, now: float | None = None) -> bool:
        """True when a case is in flight and ``grace_s`` has passed since the request (or since
        the case started, if it started after the request)."""
        if self.requested_at is None or self.in_flight is None or self.started_at is None:
            return False
        since = max(self.requested_at, self.started_at)
        return (time.monotonic() if now is None else now) - since > self.grace_s

    def stopped_row(self) -> dict:
        """The row of the case in flight when it is given up (status ``error``; see the reason)."""
        case = self.in_flight
        ran = time.monotonic() - (self.started_at or time.monotonic())
        return {"case_id": case.case_id, **case.as_row(), "status": "error",
                "reason": f"{STOPPED} still running {ran:.0f} s into the case and more than "
                          f"{self.grace_s:g} s (the grace period) after the scheduler's "
                          f"{self.reason()}; it runs again when the run resumes (this row is then "
                          "replaced)"}
