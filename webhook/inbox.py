"""The replayer of this host's spool: applies spooled callbacks in arrival order once the database answers.

Each gunicorn worker runs one replayer thread (started after fork, like webhook/after_commit.py's pool); the
spool's `flock` lets one process of the host replay at a time. The thread polls about once a second while the spool
holds entries, every few seconds when it is empty (entries left by a worker that died), and is kicked right after a
request is spooled. An entry is applied through the live request's code path (`apply`, given by the app), then
deleted; the apply records the entry's name as a receipt in the same transaction, so a crash between the commit and
the delete never applies it twice.

`apply` returns "recorded", "duplicate" (its receipt exists: applied before), "dead_lettered" or "dropped"
(unauthenticated or unattributable); a database error stops the round and keeps the order; any other error is
retried, and after `max_attempts` the entry is set aside in `held/` so it cannot block the queue forever.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from webhook.errors import DATABASE_DOWN
from webhook.logs import log
from webhook.spool import Spool, SpoolCorrupt, SpooledRequest

Apply = Callable[[SpooledRequest], str]


@dataclass
class ReplayReport:
    outcomes: Counter = field(default_factory=Counter)  # recorded / duplicate / dead_lettered / dropped / held
    busy: bool = False  # another process of this host holds the replay lock
    stopped_by: str | None = None  # "database_unavailable" or "error" when the round ended early
    remaining: int = 0
    seconds: float = 0.0

    @property
    def applied(self) -> int:
        return sum(self.outcomes.values())


class Inbox:
    """The spool plus its replayer: `queued()`, `spool()`, `replay()`, `start()`, `status()`."""

    def __init__(
        self,
        spool: Spool,
        apply: Apply,
        *,
        max_body_bytes: int,
        poll_s: float = 1.0,
        idle_poll_s: float = 5.0,
        max_attempts: int = 5,
        background: bool = True,
    ):
        self.spool = spool
        self._apply = apply
        self._max_body_bytes = max_body_bytes
        self._poll_s = poll_s
        self._idle_poll_s = idle_poll_s
        self._max_attempts = max_attempts
        self._background = background
        self._attempts: Counter[str] = Counter()
        self._kick = threading.Event()
        self._lock = threading.Lock()
        self._started_in_pid: int | None = None
        self._database_down_logged = False

    # -- the request path ------------------------------------------------------------------------------------
    def queued(self) -> bool:
        """Whether callbacks wait in this host's spool: new ones must then queue behind them."""
        return self.spool.has_entries()

    def spool_request(self, headers, body: bytes) -> str:
        """Write a request to the spool (SpoolFull when over the bound) and kick the replayer."""
        name = self.spool.write(headers, body)
        self.kick()
        return name

    def kick(self) -> None:
        self.start()
        self._kick.set()

    # -- the background thread -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start this process's replayer thread (once per process: threads do not survive fork)."""
        if not self._background:
            return
        with self._lock:
            if self._started_in_pid == os.getpid():
                return
            self._started_in_pid = os.getpid()
        threading.Thread(target=self._run, name="spool-replayer", daemon=True).start()

    def _run(self) -> None:
        while True:
            pending = self.spool.has_entries()
            self._kick.wait(self._poll_s if pending else self._idle_poll_s)
            self._kick.clear()
            try:
                if self.spool.has_entries():
                    self.replay()
            except Exception as exc:  # never let the thread die: the next poll tries again
                log("error", "spool_replay_failed", error=f"{type(exc).__name__}: {exc}"[:500], exc_info=exc)

    # -- replay ----------------------------------------------------------------------------------------------
    def replay(self, *, wait: bool = False) -> ReplayReport:
        """Apply every waiting entry in arrival order, if no other process of this host is doing it (or, with
        `wait`, once it is done). Stops at the first database error, keeping the rest in order."""
        report = ReplayReport()
        started = time.monotonic()
        with self.spool.replay_lock(wait=wait) as held:
            if not held:
                report.busy = True
                return report
            self.spool.remove_stale_temp_files()
            while report.stopped_by is None:
                names = self.spool.names()
                if not names:
                    break
                for name in names:
                    if not self._replay_one(name, report):
                        break
        report.seconds = time.monotonic() - started
        report.remaining = self.spool.stats().entries
        if report.applied:
            log(
                "info",
                "spool_replay_round",
                **dict(report.outcomes),
                remaining=report.remaining,
                stopped_by=report.stopped_by,
                seconds=round(report.seconds, 3),
                per_second=round(report.applied / report.seconds, 1) if report.seconds else None,
            )
        return report

    def _replay_one(self, name: str, report: ReplayReport) -> bool:
        """Apply and delete one entry; False when the round must stop here."""
        try:
            entry = self.spool.read(name)
        except FileNotFoundError:
            return True  # deleted by a replay outside the lock (a hand-run CLI that waited): nothing to do
        except SpoolCorrupt as exc:
            log("critical", "spool_entry_corrupt", spool_entry=name, error=str(exc)[:300])
            self.spool.hold(name)
            report.outcomes["held"] += 1
            return True
        try:
            outcome = self._apply(entry)
        except DATABASE_DOWN as exc:
            if not self._database_down_logged:
                log(
                    "warning",
                    "spool_replay_paused",
                    reason="database_unavailable",
                    error=type(exc).__name__,
                    waiting=len(self.spool.names()),
                )
                self._database_down_logged = True
            report.stopped_by = "database_unavailable"
            return False
        except Exception as exc:
            self._attempts[name] += 1
            attempts = self._attempts[name]
            if attempts < self._max_attempts:
                log(
                    "error",
                    "spool_replay_error",
                    spool_entry=name,
                    attempts=attempts,
                    error=f"{type(exc).__name__}: {exc}"[:500],
                    exc_info=exc,
                )
                report.stopped_by = "error"
                return False  # retried on the next poll; the entries behind it keep waiting, in order
            log(
                "critical",
                "spool_entry_held",
                spool_entry=name,
                attempts=attempts,
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
            self.spool.hold(name)
            del self._attempts[name]
            report.outcomes["held"] += 1
            return True
        if self._database_down_logged:
            log("info", "spool_replay_resumed")
            self._database_down_logged = False
        self.spool.delete(name)
        self._attempts.pop(name, None)
        report.outcomes[outcome] += 1
        return True

    # -- state -----------------------------------------------------------------------------------------------
    def status(self) -> dict:
        """The spool's state for /readyz: entries, bytes, bound, oldest age, replaying, full, held."""
        stats = self.spool.stats()
        return {
            "entries": stats.entries,
            "bytes": stats.bytes,
            "max_bytes": self.spool.max_bytes,
            "oldest_age_s": None if stats.oldest_age_s is None else round(stats.oldest_age_s, 1),
            "replaying": self.spool.someone_replays(),
            "full": stats.bytes + self._max_body_bytes + 1024 > self.spool.max_bytes,
            "held": stats.held,
        }
