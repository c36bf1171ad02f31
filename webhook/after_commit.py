"""Work that follows a committed callback (resume the flow run, publish progress, log results in the run), off the
request's worker.

Measured (benchmarks/webhook_bench.py): one progress publication against a failing Prefect costs ~2 s; done on the
request's worker, it cut throughput from ~100 to ~4 req/s with sync workers. So a small per-process pool runs it,
coalescing per job (only the latest progress matters) and never raising. A task lost with its process is safe: the
resume stays in the outbox for the reconciler, and the next result republishes progress.

A notifier that cannot finish yet (the job's run has not reached its suspend: the last result beat it) answers
`RetryLater`; the pool's scheduler thread queues it again after that delay (no thread sleeps on it), until the kind's
retry budget runs out. Then the outbox keeps the event for the reconciler (every minute).
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.batches.progress import MAX_ITEMS
from webhook.logs import log

Notifier = Callable[..., Any]  # (job_id) -> Any; kinds submitted with `items`: (job_id, items) -> Any

# Items remembered per waiting task: as many as a flush reads (the counts in its line stay exact).
MAX_ITEMS_PER_TASK = MAX_ITEMS
# How long a resume keeps being retried here before it is left to the reconciler. A run reaches its suspend a few
# seconds after its last snapshot on a quiet machine, tens of seconds on a loaded one (a 5 s budget, slept on the
# pool's thread, lost that race in CI and left the run suspended until the next reconcile).
RETRY_BUDGET_S = {
    "resume": 120.0,
    # Progress: a publication that could not be made is tried again within a minute. The holder's reads every
    # second (relay/progress.py ProgressPublisher) are follow-ups, which spend no budget.
    "progress": 60.0,
}
# Per job, in each process, at most one run of a kind per this interval (its submits meanwhile merge into the next
# run, which reads the latest state). Progress: about once a second, as operators watch it. Results (run-log lines
# of the errors and counts): every 5 s. Measured (benchmarks/webhook_profile.py --prefect, 32 senders on 20 jobs, 4
# workers): at 1 s, 705 results flushes for 2,000 callbacks, each a database read and a POST /logs, the webhook's
# largest after-commit cost; a real robot reports about one order per 30 s per job, which neither interval delays.
# Since round 16 only callbacks that recorded errors queue results (webhook/app.py `notify_after_commit`); the counts
# alone come with the progress holder's publications.
COALESCE_S = {"progress": 1.0, "results": 5.0}
# A kind that, submitted with items, takes the items waiting in the same job's task of another kind (AfterCommit).
ABSORBS = {"resume": "results"}
# Kinds that run about once a second per job and worker while a batch reports (progress: the holder's reads, the
# other workers' results left to it): their routine `retry_later` and `notified` lines are logged at debug, not info
# (in the benchmark they were 600 lines per 2,000 callbacks). What they do is logged where it happens: relay's
# `progress_published` per artifact API call; failures and hand-overs to the reconciler stay loud.
QUIET_KINDS = {"progress"}


@dataclass(frozen=True)
class RetryLater:
    """A notifier's answer: not done yet, run it again in `after_s` seconds (within the kind's retry budget). With
    `follow_up`, the work was done and owes a later run (a progress holder's next read): its budget starts afresh."""

    after_s: float
    why: str = ""
    follow_up: bool = False


def _nothing(job_id: str) -> None:
    return None


@dataclass(frozen=True)
class AfterCommitWork:
    """What follows a committed callback, one typed field per kind of task the pool runs (`by_kind`).

    `resume`: the job finished (its run is resumed; progress included). `progress`: the job's progress artifact
    (its publication also logs the counts in the job's run). `results`: the errors callbacks recorded, with the counts,
    for the job's run logs; None when nothing logs them.
    """

    resume: Callable[[str], RetryLater | None] = _nothing
    progress: Callable[[str], object] = _nothing
    results: Callable[[str, list[str]], object] | None = None

    def finish(self, job_id: str, items: list[str] | None = None) -> RetryLater | None:
        """The "resume" kind: resume the run, then log in it the job's final counts and the errors the last callback
        recorded (`items`, possibly none: the counts are logged all the same), on the same thread. A retried resume
        comes without items: its lines were logged at its first run.

        Measured (benchmarks/latency_bench.py): run side by side on the pool's two threads, the results' POST /logs
        made a Prefect server on SQLite answer the resume 503 "database is locked" (~2 s) and the resume was
        retried: +3.4 s on 3 of 15 last result -> run Completed. After the resume, the logs wait ~0.1 s at most.
        """
        answer = self.resume(job_id)
        if items is not None and self.results is not None:
            try:
                self.results(job_id, items)
            except Exception as exc:  # run-log lines are decoration: the resume's answer is what counts
                log("warning", "results_notify_failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}"[:500])
        return answer

    def by_kind(self) -> dict[str, Notifier]:
        kinds: dict[str, Notifier] = {"resume": self.finish, "progress": self.progress}
        if self.results is not None:
            kinds["results"] = self.results
        return kinds


class AfterCommit:
    """`submit("resume"|"progress"|"results", job_id[, items=...])`; a duplicate of a task still waiting merges
    into it (its `items` are added to the waiting task's). A kind in `absorbs` takes, when submitted with items, the
    items waiting in the same job's task of the kind it names (ABSORBS: the resume takes the waiting results, so a
    finished job's results are logged right after its resume, not an interval later); that task then has nothing
    left to do and is skipped.

    Kinds in `coalesce_s` (COALESCE_S: progress 1 s, results 5 s) run at most once per interval per job: a submit
    within the interval of the last run is delayed to its end, and the submits meanwhile merge into that one run,
    which reads the latest state. So a 10,000-order batch is not 10,000 Prefect API calls, and the last state is
    always published. That holds per process; across gunicorn workers one worker at a time holds a job's progress
    (a claim in the database, relay/progress.py ProgressPublisher) and follows its publication up with `RetryLater`
    reads, while the others leave their results to it.
    """

    def __init__(
        self,
        notifiers: dict[str, Notifier],
        *,
        threads: int = 2,
        coalesce_s: dict[str, float] | None = None,
        retry_budget_s: dict[str, float] | None = None,
        absorbs: dict[str, str] | None = None,
    ):
        self._notifiers = notifiers
        self._threads = threads
        self._coalesce_s = COALESCE_S if coalesce_s is None else coalesce_s
        self._retry_budget_s = RETRY_BUDGET_S if retry_budget_s is None else retry_budget_s
        self._retry_until: dict[tuple[str, str], float] = {}
        self._queue: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue()
        self._waiting: set[tuple[str, str]] = set()
        self._items: dict[tuple[str, str], list[str]] = {}
        self._absorbs = ABSORBS if absorbs is None else absorbs
        self._emptied: set[tuple[str, str]] = set()  # waiting tasks whose items another kind took
        self._last_run: dict[tuple[str, str], float] = {}
        self._delayed = 0
        self._due: list[tuple[float, int, tuple[str, str, dict[str, Any]]]] = []  # a heap: (due, sequence, task)
        self._sequence = itertools.count()
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
                self._emptied.discard((kind, job_id))
                absorbed = self._absorbs.get(kind)
                taken = self._items.pop((absorbed, job_id), None) if absorbed else None
                if taken is not None:
                    kept.extend(taken[: MAX_ITEMS_PER_TASK - len(kept)])
                    self._emptied.add((absorbed, job_id))
            if (kind, job_id) in self._waiting:
                return
            self._waiting.add((kind, job_id))
            self._start()
            delay = self._last_run.get((kind, job_id), -1e9) + self._coalesce_s.get(kind, 0.0) - time.monotonic()
            if delay > 0:
                self._later(task, delay)
                return
        self._queue.put(task)

    def _later(self, task: tuple[str, str, dict[str, Any]], delay: float) -> None:
        """Queue `task` after `delay` seconds (called with the lock held and the task marked waiting)."""
        # On the one scheduler thread, not a `threading.Timer` each: a thread started per delayed task (about one
        # per job and second in every worker while batches report) was ~1 % of a webhook worker's CPU (py-spy).
        self._delayed += 1
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._sequence), task))
        self._lock.notify_all()  # the scheduler may be waiting for a later task

    def _retry(self, task: tuple[str, str, dict[str, Any]], started: float, answer: RetryLater) -> bool:
        """Run `task` again after `answer.after_s` if its kind's budget (counted from its first try) allows; a task
        submitted meanwhile already runs it again. False when the budget is spent."""
        kind, job_id, _ = task
        with self._lock:
            if answer.follow_up:
                self._retry_until.pop((kind, job_id), None)
                started = time.monotonic()
            until = self._retry_until.setdefault((kind, job_id), started + self._retry_budget_s.get(kind, 0.0))
            if time.monotonic() + answer.after_s > until:
                del self._retry_until[(kind, job_id)]
                return False
            if (kind, job_id) not in self._waiting:
                self._waiting.add((kind, job_id))
                self._later(task, answer.after_s)
        return True

    def _schedule(self) -> None:
        """The scheduler thread: queues each delayed task when it is due."""
        while True:
            with self._lock:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._lock.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, task = heapq.heappop(self._due)
            self._release(task)

    def _release(self, task: tuple[str, str, dict[str, Any]]) -> None:
        self._queue.put(task)
        with self._lock:
            self._delayed -= 1
            self._lock.notify_all()

    def join(self) -> None:
        """Wait until every submitted task ran, delayed ones included (tests, and an orderly shutdown)."""
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._delayed == 0)
            self._queue.join()
            with self._lock:
                if self._delayed == 0:  # a task that ran meanwhile may have asked for a retry
                    return

    def _start(self) -> None:
        import os

        # Threads do not survive fork: start them in the process that serves (a gunicorn worker), on first use.
        if self._started_in_pid == os.getpid():
            return
        self._started_in_pid = os.getpid()
        for n in range(self._threads):
            threading.Thread(target=self._work, name=f"after-commit-{n}", daemon=True).start()
        threading.Thread(target=self._schedule, name="after-commit-scheduler", daemon=True).start()

    def _work(self) -> None:
        while True:
            kind, job_id, context = self._queue.get()
            started = time.monotonic()
            with self._lock:
                # Runs from now on: a result arriving meanwhile queues a fresh task with the newer state.
                self._waiting.discard((kind, job_id))
                items = self._items.pop((kind, job_id), None)
                if (kind, job_id) in self._emptied:
                    self._emptied.discard((kind, job_id))
                    if items is None:  # another kind's task took its items and ran them
                        self._queue.task_done()
                        continue
                self._last_run[(kind, job_id)] = started
                if len(self._last_run) > 10_000:  # forget jobs idle for a minute
                    self._last_run = {k: t for k, t in self._last_run.items() if started - t < 60}
            try:
                if items is None:
                    answer = self._notifiers[kind](job_id)
                else:
                    answer = self._notifiers[kind](job_id, items)
                ms = round(1000 * (time.monotonic() - started))
                routine = "debug" if kind in QUIET_KINDS else "info"  # the level of what happens all the time
                if isinstance(answer, RetryLater):
                    if self._retry((kind, job_id, context), started, answer):
                        log(routine, f"{kind}_retry_later", job_id=job_id, **context, ms=ms, why=answer.why[:200])
                    else:
                        log("warning", f"{kind}_left_to_reconciler", job_id=job_id, **context, why=answer.why[:200])
                else:
                    with self._lock:
                        self._retry_until.pop((kind, job_id), None)
                    log(routine, f"{kind}_notified", job_id=job_id, **context, ms=ms)
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
