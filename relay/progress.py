"""A job's progress as a Prefect progress artifact on its flow run, keyed per job. Best effort, never raises."""

from __future__ import annotations

import logging
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from prefect.settings import get_current_settings
from sqlalchemy import Engine

from domain.db import UnitOfWork
from domain.jobs import get_job
from relay.prefect_api import prefect_calls

log = logging.getLogger("relay.progress")


def progress_key(job_id: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only: job ids are lowercase UUIDs."""
    return f"robot-job-{job_id.lower()}-progress"


def progress_description(done: int, total: int, success: int, error: int) -> str:
    return f"Pedidos procesados: {done} de {total} ({success} creados, {error} con error)"


def publish_progress(engine: Engine, job_id: str) -> float | None:
    """Create or update the job's progress artifact from the database; the percentage, or None on any failure."""
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
        key = progress_key(job_id)
        with prefect_calls(timeout_s=5.0), get_client(sync_client=True) as client:
            latest = client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key])), limit=1
            )
            if latest:
                client.update_artifact(latest[0].latest_id, ArtifactUpdate(data=percent, description=description))
            else:
                client.create_artifact(
                    ArtifactCreate(
                        key=key,
                        type="progress",
                        data=percent,
                        description=description,
                        flow_run_id=UUID(flow_run_id) if flow_run_id else None,
                    )
                )
        return percent
    except Exception as exc:  # progress is decoration: it must never break a callback or a flow
        log.warning("progress of job %s not published: %s", job_id, exc)
        return None
