"""A job's progress on its flow run: a Prefect progress artifact keyed per job, and (from the webhook) log lines
saying which results arrived and why orders failed. Best effort, never raises."""

from __future__ import annotations

import logging
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
from sqlmodel import select

from domain.batches.jobs import get_job
from domain.batches.publications import claim_publication
from domain.db import UnitOfWork
from domain.models import ItemStatus, Order, RobotJobItem
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
    job_id: str, *, total: int, success: int, error: int, errors: list[tuple[str, str | None, str | None]]
) -> list[tuple[int, str]]:
    """The run-log lines of one flush: the counts, then each new error (order, type, Spanish reason), bounded."""
    done = min(success + error, total)
    lines = [
        (logging.INFO, f"Lote {job_id}: resultados recibidos: {done} de {total} ({success} creados, {error} con error)")
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
    """Write, in one API call, the job's counts and the errors among `item_ids` (results this process just
    recorded) into the job's flow run logs. False when nothing was written."""
    if not get_current_settings().api.url:
        return False
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            job = get_job(uow.session, job_id)
            flow_run_id, total = job.flow_run_id, job.total_items
            success, error = job.success_count, job.error_count
            errors = (
                [
                    (name, error_type, message)
                    for name, error_type, message in uow.session.exec(
                        select(Order.name, RobotJobItem.error_type, RobotJobItem.error_message)
                        .join(Order, Order.id == RobotJobItem.order_id)
                        .where(
                            RobotJobItem.job_id == job_id,
                            RobotJobItem.id.in_(item_ids[:1000]),
                            RobotJobItem.status == ItemStatus.ERROR,
                        )
                        .order_by(Order.name)
                    ).all()
                ]
                if item_ids
                else []
            )
    except Exception as exc:
        log.warning("results of job %s not logged: %s", job_id, exc)
        return False
    if not flow_run_id:
        return False
    lines = results_lines(job_id, total=total, success=success, error=error, errors=errors)
    return send_run_logs(flow_run_id, lines, logger_name="robotjobs.webhook")


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
    if not get_current_settings().api.url:
        return None  # no Prefect configured: nothing to publish to, and no database read for nothing
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            job = get_job(uow.session, job_id)
            flow_run_id, total = job.flow_run_id, job.total_items
            success, error = job.success_count, job.error_count
        done = min(success + error, total)
        percent = round(100.0 * done / total, 1) if total else 100.0
        description = progress_description(done, total, success, error)
        state = (percent, description)
        with prefect_client(timeout_s=5.0) as client:
            known = _published.get(job_id)
            if known is not None:
                if known[1] == state:
                    return percent  # a duplicate result: the artifact already says this
                try:
                    _update_progress_artifact(client, known[0], percent, description)
                    _remember(job_id, known[0], state)
                    return percent
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
        return percent
    except Exception as exc:  # progress is decoration: it must never break a callback or a flow
        log.warning("progress of job %s not published: %s", job_id, exc)
        return None


# Across all webhook workers, at most one progress publication per job per this interval (a claim in the database,
# `robot_job_publications`); each worker's after-commit pool also coalesces its own submits per second.
PUBLISH_EVERY_S = 0.9


def coalesced_progress(
    engine: Engine,
    publish: Callable[[Engine, str], object],
    *,
    every_s: float = PUBLISH_EVERY_S,
    clock: Callable[[], float] = time.time,
) -> Callable[[str], float | None]:
    """`publish(engine, job_id)` once this process claims the job's progress: the function answers None when it
    published, or the seconds to wait when another process published less than `every_s` ago (run it again then: it
    reads the latest state, so the last state is always published). Never raises for the claim."""

    def publish_coalesced(job_id: str) -> float | None:
        try:
            with UnitOfWork(engine) as uow:
                # The transaction first (SQLite: the write lock), then the time: a claim is stamped when it is made,
                # not before a wait for the lock, so the next claim cannot come early.
                uow.session.connection()
                wait = claim_publication(uow.session, job_id, "progress", every_s=every_s, now=clock())
                uow.commit()
        except Exception as exc:  # the database is in trouble: publish unclaimed rather than not at all
            log.warning("progress of job %s published without its claim: %s", job_id, exc)
            wait = 0.0
        if wait > 0:
            return wait
        publish(engine, job_id)
        return None

    return publish_coalesced


def publish_progress_coalesced(engine: Engine, job_id: str, *, clock: Callable[[], float] = time.time) -> float | None:
    """`publish_progress`, at most once per PUBLISH_EVERY_S per job across processes: None when it published (or
    there was nothing to publish to), else the seconds to wait before trying again."""
    if not get_current_settings().api.url:
        return None  # no Prefect configured: no claim to write for nothing
    return coalesced_progress(engine, publish_progress, clock=clock)(job_id)
