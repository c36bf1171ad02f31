"""Flow `reconcile` (every minute): close jobs past their deadline, redeliver undelivered resume events, and resume
suspended runs whose job already finished but never got its resume.

The suspend timeout fails a flow run on the Prefect server without running any hook, so this flow is where
overdue jobs and their pending items are closed. Scheduling contract: one run per UTC-minute bucket (key
`reconcile:<minute>`, the work is cached under it), deployment concurrency 1, flow retries 3, and
`settings.reconciler_enabled` turns it off without a deploy.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from domain.db import UnitOfWork
from domain.errors import UnknownJob
from domain.jobs import TIMEOUT_MESSAGE, fail_job, get_job, jobs_past_deadline
from domain.models import FINISHED_JOB_STATUSES, ErrorType
from flows import runtime
from flows.artifacts import publish_summary
from flows.deployments import ORCHESTRATE, RECONCILE
from relay.prefect_api import prefect_calls
from relay.resume import Outcome, deliver_resume_events, resume_run
from relay.run_input import BatchCompleted


class ReconcileReport(BaseModel):
    enabled: bool = True
    key: str | None = Field(default=None, description="Idempotency key of the bucket this run reconciled.")
    timed_out_jobs: list[str] = Field(default_factory=list)
    redelivered: dict[str, int] = Field(default_factory=dict, description="Outcomes of resume events redelivered.")
    resumed_stranded: list[str] = Field(default_factory=list, description="Suspended runs resumed from the job row.")


def bucket_key(now: datetime | None = None) -> str:
    """`reconcile:<UTC minute>`: every trigger in the same minute is the same reconcile."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"reconcile:{now:%Y-%m-%dT%H:%MZ}"


def fail_overdue_jobs(engine) -> list[str]:
    failed = []
    with UnitOfWork(engine, readonly=True) as uow:
        overdue = jobs_past_deadline(uow.session)
    for job_id in overdue:
        with UnitOfWork(engine) as uow:
            if fail_job(uow.session, job_id, reason=TIMEOUT_MESSAGE, error_type=ErrorType.TIMEOUT,
                        error_message=TIMEOUT_MESSAGE):
                failed.append(job_id)
            uow.commit()
    for job_id in failed:
        # The job's own run may already be failed by the suspend timeout and never publish: publish here too.
        publish_summary(engine, job_id)
    return failed


def resume_stranded_runs(engine) -> list[str]:
    """Suspended `orchestrate-robot-job` runs whose job is finished: resume them from the job row."""
    resumed = []
    with prefect_calls(), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[ORCHESTRATE])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
            limit=200,
        )
    for run in runs:
        job_id = (run.parameters or {}).get("job_id")
        if not job_id:
            continue
        try:
            with UnitOfWork(engine, readonly=True) as uow:
                job = get_job(uow.session, job_id)
        except UnknownJob:
            continue
        if job.status not in FINISHED_JOB_STATUSES:
            continue
        run_input = BatchCompleted(job_id=job.id, status=job.status, success_count=job.success_count,
                                   error_count=job.error_count, total_items=job.total_items)
        outcome, _why = resume_run(str(run.id), run_input)
        if outcome == Outcome.RESUMED:
            resumed.append(job_id)
    return resumed


# Cached under the bucket key: a second run in the same minute (schedule overlap, manual trigger, flow retry
# after success) returns this result instead of reconciling again. A failed attempt is not cached.
@task(
    name="reconcile-bucket",
    cache_key_fn=lambda _context, parameters: parameters["key"],
    cache_expiration=timedelta(minutes=10),
    persist_result=True,
)
def reconcile_bucket(key: str) -> ReconcileReport:
    engine = runtime.engine()
    timed_out = fail_overdue_jobs(engine)
    stats = deliver_resume_events(engine, worker_id=f"reconciler-{flow_run.get_id()}", limit=100)
    stranded = resume_stranded_runs(engine)
    return ReconcileReport(key=key, timed_out_jobs=timed_out, redelivered=stats.as_dict(), resumed_stranded=stranded)


@flow(name=RECONCILE, retries=3, retry_delay_seconds=5, persist_result=False)
def reconcile(idempotency_key: str | None = None) -> ReconcileReport:
    """Mantenimiento cada minuto: cierra lotes vencidos y reanuda ejecuciones que quedaron esperando.

    Args:
        idempotency_key: Opcional. Por defecto 'reconcile:<minuto UTC>': dos ejecuciones del mismo minuto hacen el trabajo una vez.
    """
    logger = get_run_logger()
    if not runtime.settings().reconciler_enabled:
        logger.info("reconciler disabled by settings (RECONCILER_ENABLED=false)")
        return ReconcileReport(enabled=False)
    report = reconcile_bucket(idempotency_key or bucket_key())
    logger.info("reconcile: %s", report.model_dump())
    return report
