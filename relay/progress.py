"""A job's progress on its flow run: a Prefect progress artifact keyed per job, and (from the webhook) log lines
saying which results arrived and why orders failed. Best effort, never raises."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import get_current_settings
from sqlalchemy import Engine

from domain.batches.progress import JobCounts, errors_among, job_counts
from domain.batches.publications import claim_publication, renew_publication
from domain.db import UnitOfWork
from relay.prefect_api import prefect_client
from relay.run_log import send_run_logs

log = logging.getLogger("relay.progress")


def progress_key(job_id: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only: job ids are lowercase UUIDs."""
    return f"robot-job-{job_id.lower()}-progress"


def progress_description(done: int, total: int, success: int, error: int) -> str:
    return f"Pedidos procesados: {done} de {total} ({success} creados, {error} con error)"


# Per flush of one job's results: error lines beyond this are counted, not listed (the summary lists them all).
MAX_ERROR_LINES = 20


def results_lines(
    job_id: str, counts: JobCounts, errors: list[tuple[str, str | None, str | None]]
) -> list[tuple[int, str]]:
    """The run-log lines of one flush: the counts, then each new error (order, type, Spanish reason), bounded."""
    lines = [
        (
            logging.INFO,
            f"Lote {job_id}: resultados recibidos: {counts.done} de {counts.total} "
            f"({counts.success} creados, {counts.error} con error)",
        )
    ]
    for order_name, error_type, message in errors[:MAX_ERROR_LINES]:
        kind = f" ({error_type})" if error_type else ""
        lines.append(
            (logging.WARNING, f"Lote {job_id}: pedido {order_name} con error{kind}: {(message or 'sin detalle')[:500]}")
        )
    if len(errors) > MAX_ERROR_LINES:
        lines.append(
            (
                logging.WARNING,
                f"Lote {job_id}: y {len(errors) - MAX_ERROR_LINES} pedido(s) más con error "
                "(el resumen del lote los lista todos)",
            )
        )
    return lines


def log_results(engine: Engine, job_id: str, item_ids: list[str]) -> bool:
    """Write, in one API call, the job's counts and the errors among `item_ids` (errors this process just recorded;
    none at a job's end still logs its final counts) into the job's flow run logs. False when nothing was written."""
    if not get_current_settings().api.url:
        return False
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            counts = job_counts(uow.session, job_id)
            errors = errors_among(uow.session, job_id, item_ids)
    except Exception as exc:
        log.warning("results of job %s not logged: %s", job_id, exc)
        return False
    if not counts.flow_run_id:
        return False
    lines = results_lines(job_id, counts, errors)
    return send_run_logs(counts.flow_run_id, lines, logger_name="robotjobs.webhook")


# Through the client's plain `request`, not `update_artifact`/`create_artifact`: those also emit a
# `prefect.artifact.updated`/`created` event per call, which starts Prefect's events worker (a thread with its own
# event loop and websocket) in every webhook worker, and which nothing here consumes (automations run on our own
# events). Measured (benchmarks/artifact_update_bench.py, Prefect server on SQLite): per update, client CPU 2.4-2.7 ->
# 1.2-1.3 ms and the server's 9.9 -> 6.3-6.9 ms; a job's progress is updated about once a second while it reports.
def _update_progress_artifact(client: SyncPrefectClient, artifact_id: UUID, percent: float, description: str) -> None:
    client.request("PATCH", "/artifacts/{id}", path_params={"id": artifact_id},
                   json={"data": percent, "description": description})  # fmt: skip


def _create_progress_artifact(client: SyncPrefectClient, artifact: ArtifactCreate) -> None:
    client.request("POST", "/artifacts/", json=artifact.model_dump(mode="json", exclude_unset=True))


# Per job, in this process: the id of the progress artifact to update and the last state published through it.
# Read once per job (not before every update); forgotten when the update says the artifact is gone.
_published: dict[str, tuple[UUID, tuple[float, str] | None]] = {}
_published_lock = threading.Lock()
MAX_REMEMBERED_JOBS = 1_000


def _remember(job_id: str, artifact_id: UUID, state: tuple[float, str] | None) -> None:
    with _published_lock:
        if job_id not in _published and len(_published) >= MAX_REMEMBERED_JOBS:
            _published.pop(next(iter(_published)))  # the oldest job first
        _published[job_id] = (artifact_id, state)


def _forget(job_id: str) -> None:
    with _published_lock:
        _published.pop(job_id, None)


def publish_progress(engine: Engine, job_id: str) -> float | None:
    """Create or update the job's progress artifact from the database; the percentage, or None on any failure.

    One API call per publication once the artifact's id is known (updated by id; looked up again if it is gone),
    none when this process already published the same state.
    """
    return _publish(engine, job_id)[0]


def publish_progress_changed(engine: Engine, job_id: str) -> bool:
    """`publish_progress` by the job's progress holder (ProgressPublisher): True when the artifact was written now;
    False when this process had already published this very state, or the publication failed (it is tried again at
    the holder's next read, which finds the state still unpublished).

    A state written is also a counts line in the job's run logs ("resultados recibidos: ..."), from the counts this
    publication read: callbacks that recorded only successes leave their run-log lines to it (webhook/app.py
    `notify_after_commit`), so the counts reach the run about as often as the artifact changes, from one worker.
    """
    _, written, counts = _publish(engine, job_id)
    # Not the final counts: the callback that finished the job logs them with its resume (AfterCommitWork.finish),
    # and a holder in another worker publishes the final state again at its next read.
    if written and counts is not None and counts.flow_run_id and counts.done < counts.total:
        send_run_logs(counts.flow_run_id, results_lines(job_id, counts, []), logger_name="robotjobs.webhook")
    return written


def _published_line(job_id: str, percent: float) -> None:
    # An API call made (benchmarks/webhook_bench.py counts these); in the webhook, a JSON line (webhook/logs.py).
    log.info("progress_published", extra={"event": "progress_published", "fields": {"job_id": job_id, "pct": percent}})


def _publish(engine: Engine, job_id: str) -> tuple[float | None, bool, JobCounts | None]:
    """(percentage or None on failure, whether an API call wrote it, the counts it published)."""
    if not get_current_settings().api.url:
        return None, False, None  # no Prefect configured: nothing to publish to, and no database read for nothing
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            counts = job_counts(uow.session, job_id)
        flow_run_id, total = counts.flow_run_id, counts.total
        percent = round(100.0 * counts.done / total, 1) if total else 100.0
        description = progress_description(counts.done, total, counts.success, counts.error)
        state = (percent, description)
        with prefect_client(timeout_s=5.0) as client:
            known = _published.get(job_id)
            if known is not None:
                if known[1] == state:
                    return percent, False, counts  # a duplicate result: the artifact already says this
                try:
                    _update_progress_artifact(client, known[0], percent, description)
                    _remember(job_id, known[0], state)
                    _published_line(job_id, percent)
                    return percent, True, counts
                except PrefectHTTPStatusError as exc:
                    if exc.response.status_code != 404:
                        raise
                    _forget(job_id)  # deleted meanwhile: look it up (or create it) below
            key = progress_key(job_id)
            latest = client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key])), limit=1
            )
            if latest:
                _update_progress_artifact(client, latest[0].latest_id, percent, description)
                _remember(job_id, latest[0].latest_id, state)
            else:
                # Not remembered: another process may create the key at the same moment, and only the newest
                # version shows in the UI; the next publication reads which one that is.
                _create_progress_artifact(
                    client,
                    ArtifactCreate(
                        key=key,
                        type="progress",
                        data=percent,
                        description=description,
                        flow_run_id=UUID(flow_run_id) if flow_run_id else None,
                    ),
                )
        _published_line(job_id, percent)
        return percent, True, counts
    except Exception as exc:  # progress is decoration: it must never break a callback or a flow
        log.warning("progress of job %s not published: %s", job_id, exc)
        return None, False, None


# Across all webhook workers, one publisher per job at a time (a claim in the database, `robot_job_publications`).
# The worker whose claim wins holds the job's progress for LEASE_S and owes every result committed meanwhile a
# publication: it publishes (at once, unless many jobs report: the budget below), reads the job again every
# PUBLISH_EVERY_S (publishing and renewing its claim when the state changed, so the lease runs on while results
# arrive) and reads it once more after its claim is LEASE_S old. A worker that sees another's claim younger than
# LEASE_S therefore leaves its own result to that holder and remembers the claim: until it nears its end
# (TRUST_MARGIN_S: clocks of different hosts, a slow commit) it touches neither the database nor Prefect for that job.
# Measured before (every worker claiming each job about once a second, 3 of 4 losing): 432 lost claims at 2.3 ms of
# CPU each per 2,000 callbacks, 32 senders on 20 jobs (BENCHMARKS.md round 6). A holder that dies leaves at most
# LEASE_S of results to the next callback's worker, which then claims.
PUBLISH_EVERY_S = 0.9
LEASE_S = 20.0
# The Prefect server's budget for progress: at most MAX_PUBLISH_PER_S artifact writes a second from every webhook
# worker in all. Each holder reads its jobs at an interval that grows with the number of jobs reporting (those it
# holds and those it has seen another process claim within the lease: every worker takes results of every reporting
# job, so each sees about all of them), never past half the lease (its claim is renewed well before others may take it
# over, and the closing read still follows the lease). "At most about once a second" per job stays true; one or two
# jobs reporting are read every PUBLISH_EVERY_S or 1 s as before, 20 jobs each every 10 s. A claim's first read keeps
# to the budget too: while the interval is longer than PUBLISH_EVERY_S it comes at a random point within the interval
# (as known when it comes due), not at once: 20 batches whose results start together were 20 artifact lookups and
# writes in the same instant.
# Measured (benchmarks/webhook_bench.py --prefect, 32 senders on 20 jobs, 4 workers): every job every 0.9 s was 20
# artifact PATCHes a second and most of the Prefect server's CPU (2.2-3.2 s against 0.6-0.9 s with no progress at
# all); a budget per worker (2 a second each, 5 s lease) still made 95-113 per 2,000 callbacks (BENCHMARKS.md rounds
# 10 and 11).
MAX_PUBLISH_PER_S = 2.0
TRUST_MARGIN_S = 0.5
DUE_SLACK_S = 0.005  # a holder's read run this little before its time (timers, clocks) is read then, not put off
_STRIPES = 64  # runs of the same job in one process take turns (a per-job lock, striped to stay bounded)


class ProgressPublisher:
    """One process's progress publication across processes: `publisher(job_id)` answers None when it has nothing
    more to do for the job now, or the seconds after which to run it again (this process holds the job's claim and
    owes it a later read). Never raises for the claim; thread-safe.

    `publish(engine, job_id)` writes the job's current state and answers whether it wrote anything, as
    `publish_progress_changed` does. Only a written change renews the claim: while Prefect fails, the holder tries at
    each read until its lease ends, then lets the job go (a bounded number of tries, not a loop).
    """

    def __init__(
        self,
        engine: Engine,
        publish: Callable[[Engine, str], bool],
        *,
        every_s: float = PUBLISH_EVERY_S,
        max_per_s: float = MAX_PUBLISH_PER_S,
        lease_s: float = LEASE_S,
        trust_margin_s: float = TRUST_MARGIN_S,
        clock: Callable[[], float] = time.time,
        stagger: Callable[[], float] = random.random,
    ):
        self._engine, self._publish, self._clock, self._stagger = engine, publish, clock, stagger
        self._every_s, self._lease_s, self._trust_s = every_s, lease_s, lease_s - trust_margin_s
        self._max_per_s = max_per_s
        self._held: dict[str, float] = {}  # jobs this process holds: the time its claim holds
        self._due: dict[str, float] = {}  # jobs this process holds: when its next read is due
        self._first: dict[str, float] = {}  # held jobs not yet published: the stagger's fraction of the interval
        self._seen: dict[str, float] = {}  # jobs another process holds: the claim time read
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]

    def __call__(self, job_id: str) -> float | None:
        with self._stripes[hash(job_id) % _STRIPES]:
            held_since = self._held.get(job_id)
            if held_since is not None:
                wait = self._due.get(job_id, 0.0) - self._clock()
                if wait > DUE_SLACK_S:
                    # Its read is not due yet (a result committed since the last one): that read covers it. Without
                    # this the pool's per-job coalescing (1 s) ran the holder's reads, whatever its interval.
                    return wait
                first = self._first_read_later(job_id, held_since)
                if first is not None:
                    return self._next_read(job_id, first)
                return self._next_read(job_id, self._follow_up(job_id, held_since))
            seen = self._seen.get(job_id)
            if seen is not None and self._clock() < seen + self._trust_s:
                return None  # its holder reads the job after this result was committed
            return self._next_read(job_id, self._claim(job_id))

    def _next_read(self, job_id: str, wait: float | None) -> float | None:
        if wait is None:
            self._due.pop(job_id, None)
        else:
            self._due[job_id] = self._clock() + wait
        return wait

    def _claim(self, job_id: str) -> float | None:
        try:
            with UnitOfWork(self._engine) as uow:
                # The transaction first (SQLite: the write lock), then the time: a claim is stamped when it is made,
                # not before a wait for the lock, so it cannot lapse early.
                uow.session.connection()
                now = self._clock()
                holder = claim_publication(uow.session, job_id, "progress", lease_s=self._lease_s, now=now)
                uow.commit()
        except Exception as exc:  # the database is in trouble: publish unclaimed rather than not at all
            log.warning("progress of job %s published without its claim: %s", job_id, exc)
            self._publish(self._engine, job_id)
            return None
        if holder is not None:
            if len(self._seen) >= MAX_REMEMBERED_JOBS:
                self._seen.clear()  # forgetting only costs a claim attempt
            self._seen[job_id] = holder
            return None if holder + self._lease_s > now else 0.01  # 0.01: the claim vanished meanwhile, try again
        self._seen.pop(job_id, None)
        self._held[job_id] = now
        interval = self._interval()
        if interval > self._every_s:
            # More jobs report than may be published for at once: the first read too waits its turn, somewhere
            # within the interval, so that jobs whose results start together (a burst of batches) do not all call
            # Prefect in the same instant. A job reporting alone is published at once, as before.
            self._first[job_id] = self._stagger()
            first = self._first_read_later(job_id, now)
            if first is not None:
                return first
        self._publish(self._engine, job_id)
        return interval

    def _first_read_later(self, job_id: str, held_since: float) -> float | None:
        """For a held job not yet published: the seconds to its first read if that is still ahead, else None (it is
        read now). The interval is taken again: a worker claiming at the start of a burst has seen few of the other
        jobs yet, and its first reads would otherwise all fall within the first second or two."""
        fraction = self._first.get(job_id)
        if fraction is None:
            return None
        wait = held_since + fraction * self._interval() - self._clock()
        if wait > DUE_SLACK_S:
            return wait
        del self._first[job_id]
        return None

    def _interval(self) -> float:
        """Seconds to the holder's next read of a job: PUBLISH_EVERY_S, or longer while more jobs are reporting than
        may be published for in that time (MAX_PUBLISH_PER_S), never past half the lease."""
        return min(max(self._every_s, self._reporting() / self._max_per_s), self._lease_s / 2)

    def _reporting(self) -> int:
        """The jobs this process knows to be reporting: those it holds, and those whose claim by another process it
        saw within that claim's lease."""
        now = self._clock()
        # A copy first (one C call, under the GIL): other threads add to `_seen` for other jobs meanwhile, and a
        # dict that changes size while a generator walks it raises.
        seen = list(self._seen.values())
        return len(self._held) + sum(1 for claimed in seen if claimed + self._lease_s > now)

    def _follow_up(self, job_id: str, held_since: float) -> float | None:
        read_at = self._clock()  # before the read: a closing read must start after the claim's lease
        if self._publish(self._engine, job_id):
            now = self._clock()
            try:
                with UnitOfWork(self._engine) as uow:
                    renewed = renew_publication(uow.session, job_id, "progress", held_since=held_since, now=now)
                    uow.commit()
            except Exception as exc:  # keep the claim it has: its lease still binds this holder's reads
                log.warning("progress claim of job %s not renewed: %s", job_id, exc)
                return self._interval()
            if not renewed:  # it lapsed and another process holds the job now: that one publishes
                del self._held[job_id]
                return None
            self._held[job_id] = now
            return self._interval()
        if read_at >= held_since + self._lease_s:
            del self._held[job_id]  # the closing read: nothing changed since the last publication
            return None
        return min(self._interval(), held_since + self._lease_s - read_at + 0.01)


def progress_publisher(engine: Engine, *, clock: Callable[[], float] = time.time) -> Callable[[str], float | None]:
    """This process's progress publisher over Prefect (keep one per process: it remembers the claims it holds and
    has seen): a `ProgressPublisher` that answers None at once, claiming nothing, while no Prefect API is configured
    (read per call: tests swap settings)."""
    publisher = ProgressPublisher(engine, publish_progress_changed, clock=clock)

    def publish(job_id: str) -> float | None:
        return publisher(job_id) if get_current_settings().api.url else None

    return publish
