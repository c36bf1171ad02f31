"""Work that follows a committed callback (resume the flow run, publish progress, log results in the run), off the
request's worker.

Measured (benchmarks/webhook_bench.py): one progress publication against a failing Prefect costs ~2 s; done on the
request's worker, it cut throughput from ~100 to ~4 req/s with sync workers. So a small per-process pool runs it,
coalescing per job (only the latest progress matters) and never raising. A task lost with its process is safe: the
resume stays in the outbox for the reconciler, and the next result republishes progress.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from webhook.logs import log

Notifier = Callable[..., Any]  # (job_id) -> Any; kinds submitted with `items`: (job_id, items) -> Any

# Items remembered per waiting task: a flush reports at most this many (the counts in its line stay exact).
MAX_ITEMS_PER_TASK = 1000


class AfterCommit:
    """`submit("resume"|"progress"|"results", job_id[, items=...])`; a duplicate of a task still waiting merges
    into it (its `items` are added to the waiting task's).

    Kinds in `coalesce_s` (progress and results: 1 s) run at most once per interval per job: a submit within the
    interval of the last run is delayed to its end, and the submits meanwhile merge into that one run, which reads
    the latest state. So a 10,000-order batch is not 10,000 Prefect API calls, and the last state is always published.
    """

    def __init__(self, notifiers: dict[str, Notifier], *, threads: int = 2, coalesce_s: dict[str, float] | None = None):
        self._notifiers = notifiers
        self._threads = threads
        self._coalesce_s = {"progress": 1.0, "results": 1.0} if coalesce_s is None else coalesce_s
        self._queue: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue()
        self._waiting: set[tuple[str, str]] = set()
        self._items: dict[tuple[str, str], list[str]] = {}
        self._last_run: dict[tuple[str, str], float] = {}
        self._delayed = 0
        self._lock = threading.Condition()
        self._started_in_pid: int | None = None

    def submit(
        self, kind: str, job_id: str, context: dict[str, Any] | None = None, *, items: list[str] | None = None
    ) -> None:
        if kind not in self._notifiers:
            return  # e.g. "results" in an app built with test notifiers only
        task = (kind, job_id, context or {})
        with self._lock:
            if items is not None:
                kept = self._items.setdefault((kind, job_id), [])
                kept.extend(items[: MAX_ITEMS_PER_TASK - len(kept)])
            if (kind, job_id) in self._waiting:
                return
            self._waiting.add((kind, job_id))
            self._start()
            delay = self._last_run.get((kind, job_id), -1e9) + self._coalesce_s.get(kind, 0.0) - time.monotonic()
            if delay > 0:
                self._delayed += 1
                timer = threading.Timer(delay, self._release, args=(task,))
                timer.daemon = True
                timer.start()
                return
        self._queue.put(task)

    def _release(self, task: tuple[str, str, dict[str, Any]]) -> None:
        self._queue.put(task)
        with self._lock:
            self._delayed -= 1
            self._lock.notify_all()

    def join(self) -> None:
        """Wait until every submitted task ran, delayed ones included (tests, and an orderly shutdown)."""
        with self._lock:
            self._lock.wait_for(lambda: self._delayed == 0)
        self._queue.join()

    def _start(self) -> None:
        import os

        # Threads do not survive fork: start them in the process that serves (a gunicorn worker), on first use.
        if self._started_in_pid == os.getpid():
            return
        self._started_in_pid = os.getpid()
        for n in range(self._threads):
            threading.Thread(target=self._work, name=f"after-commit-{n}", daemon=True).start()

    def _work(self) -> None:
        while True:
            kind, job_id, context = self._queue.get()
            started = time.monotonic()
            with self._lock:
                # Runs from now on: a result arriving meanwhile queues a fresh task with the newer state.
                self._waiting.discard((kind, job_id))
                items = self._items.pop((kind, job_id), None)
                self._last_run[(kind, job_id)] = started
                if len(self._last_run) > 10_000:  # forget jobs idle for a minute
                    self._last_run = {k: t for k, t in self._last_run.items() if started - t < 60}
            try:
                if items is None:
                    self._notifiers[kind](job_id)
                else:
                    self._notifiers[kind](job_id, items)
                log("info", f"{kind}_notified", job_id=job_id, **context, ms=round(1000 * (time.monotonic() - started)))
            except Exception as exc:
                # The result is committed; robot.batch.completed stays in the outbox and is redelivered.
                log(
                    "error",
                    f"{kind}_notify_failed",
                    job_id=job_id,
                    **context,
                    error=f"{type(exc).__name__}: {exc}"[:500],
                )
            finally:
                self._queue.task_done()
