"""A batch's life in one flow run (`run_batch`): start, dispatch once, suspend until the batch completes, then
finish from the database and publish the summary. The operator's runs (`submit-robot-job`, `retry-failed-items`,
flows/submit.py) run it after creating their job; the flow `orchestrate-robot-job` runs it only as the
reconciler's recovery run, for a job whose run died (never on the click → robot path).

A resumed flow run executes its flow again from the top; every step is idempotent and the dispatch is claimed in
the database, so the robot receives each job at most once. A recovery run finds the dispatch claimed and only waits.

Our clock decides, not Prefect's: the suspend timeout outlasts the job's deadline by a reconciler interval and a
margin, so the reconciler closes an overdue job first and resumes the run, which then ends `Failed` with the
Spanish reason and publishes the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun, State
from prefect.flow_runs import suspend_flow_run
from prefect.runtime import flow_run
from pydantic import BaseModel, Field
from sqlmodel import Session

from domain.batches.jobs import get_job, pending_item_count, start_job
from domain.batches.lookups import job_of_run
from domain.db import UnitOfWork
from domain.models import FINISHED_JOB_STATUSES, JobStatus, RobotJob, utcnow
from flows import runtime
from flows.alerts import emit_batch_finished
from flows.deployments import ORCHESTRATE, RECONCILE_INTERVAL_S, SUSPEND_MARGIN_S
from flows.dispatch import DispatchResult, dispatch_once
from relay.progress import publish_progress
from relay.run_input import BatchCompleted, pause_key


class JobFailed(Exception):
    """The job ended `failed`: the flow run fails with the job's reason."""


class JobOutcome(BaseModel):
    job_id: str
    status: str = Field(description="Estado final del lote.")
    success_count: int
    error_count: int
    total_items: int
    failure_reason: str | None = None

    @classmethod
    def of(cls, job: RobotJob) -> JobOutcome:
        """From the job's row alone: the run's result needs no count of deadline-closed items (`job_result` makes
        one, for the run input), so the finish path does not pay for it."""
        return cls(job_id=job.id, **{name: getattr(job, name) for name in cls.model_fields if name != "job_id"})


class JobSnapshot(BaseModel):
    status: str
    pending_items: int
    deadline_at: datetime | None = None


# Side effects live in tasks; none is retried (retries 0 for dispatch) and none is cached: a rerun must
# re-read the database, whose guards make each step idempotent.
@task(name="start-job", retries=0, cache_policy=NO_CACHE, persist_result=False)
def start_job_task(job_id: str, flow_run_id: str) -> JobSnapshot:
    settings, engine = runtime.settings(), runtime.engine()
    with UnitOfWork(engine) as uow:
        start_job(
            uow.session,
            job_id,
            flow_run_id=flow_run_id,
            seconds_per_item=settings.callback_seconds_per_item,
            base_seconds=settings.callback_base_seconds,
        )
        uow.commit()
    return snapshot(job_id)


@task(name="dispatch-to-robot", retries=0, cache_policy=NO_CACHE, persist_result=False)
def dispatch_task(job_id: str) -> DispatchResult:
    return dispatch_once(runtime.engine(), runtime.settings(), job_id)


@task(name="read-job", retries=0, cache_policy=NO_CACHE, persist_result=False)
def snapshot_task(job_id: str) -> JobSnapshot:
    return snapshot(job_id)


@task(name="publish-summary", retries=0, cache_policy=NO_CACHE, persist_result=False)
def finish_task(job_id: str) -> JobOutcome:
    # Imported here, not at the top: the summary's rendering is not needed before the robot has the batch, and
    # every flow run is a fresh process whose imports sit on the click → robot path (BENCHMARKS.md).
    from flows.artifacts import publish_summary

    engine = runtime.engine()
    publish_summary(engine, job_id)
    with UnitOfWork(engine, readonly=True) as uow:
        return JobOutcome.of(get_job(uow.session, job_id))


def publish_final_progress(flow: Any, flow_run: FlowRun, state: State) -> None:
    """Hook of the batch flows (on completion, on failure): the job's progress artifact at its final count.

    A hook because Prefect runs it once the run's final state is set: the progress (cosmetic; the webhook already
    published it after the last result) no longer sits between the resume and `Completed`. It matters for a job
    our deadline closed, which no callback announced. Never raises (publish_progress does not).
    """
    engine = runtime.engine()
    with UnitOfWork(engine, readonly=True) as uow:
        job = job_of_run(uow.session, str(flow_run.id))
    if job is not None:
        publish_progress(engine, job.id)


# The hooks every batch flow carries (submit, retry, recovery).
BATCH_HOOKS: dict[str, Any] = {"on_completion": [publish_final_progress], "on_failure": [publish_final_progress]}


def snapshot(job_id: str) -> JobSnapshot:
    with UnitOfWork(runtime.engine(), readonly=True) as uow:
        return read_snapshot(uow.session, job_id)


def read_snapshot(session: Session, job_id: str) -> JobSnapshot:
    job = get_job(session, job_id)
    return JobSnapshot(
        status=job.status, pending_items=pending_item_count(session, job_id), deadline_at=job.deadline_at
    )


def suspend_timeout_s(deadline_at: datetime | None, *, now: datetime | None = None) -> int:
    """The one rule: time left to the job's deadline, plus the reconciler's interval, plus a margin.

    The reconciler runs every RECONCILE_INTERVAL_S, so it closes an overdue job and resumes its run before this
    timeout expires; a deadline already past (a recovery run) still leaves it that long.
    """
    left = 0.0 if deadline_at is None else max(0.0, (deadline_at - (now or utcnow())).total_seconds())
    return int(left) + 1 + RECONCILE_INTERVAL_S + SUSPEND_MARGIN_S


def run_batch(
    job_id: str,
    run_id: str,
    *,
    job: JobSnapshot | None = None,
    started: JobSnapshot | None = None,
    announce: Callable[[], None] | None = None,
) -> JobOutcome:
    """The batch's life in the current flow run: start, dispatch once, suspend until every order has its result,
    finish from the database. Shared by the operator's runs (submit, retry) and the reconciler's recovery run.

    `job`: the job as this run found it after a resume (already started and dispatched by this run): straight to
    the suspend, whose key already holds the resume's input, or to the finish. `started`: the job as the operator's
    create task started it (no start task: the dispatch follows at once). `announce`: what the operator's run
    publishes about its batch (run name, rejected orders), done once the robot has the batch, not before.
    """
    logger = get_run_logger()
    if job is None:
        job = started or start_job_task(job_id, run_id)
        if job.status not in FINISHED_JOB_STATUSES:
            dispatch = dispatch_task(job_id)
        # What the UI shows of the batch, once the robot has it: the click → robot path waits for none of it.
        publish_progress(runtime.engine(), job_id)
        if announce is not None:
            announce()
        if job.status not in FINISHED_JOB_STATUSES:
            job = snapshot_task(job_id)  # last, so the suspend decision sees the results that came meanwhile
            if dispatch.outcome_unknown:
                logger.warning(
                    "Envío sin respuesta del robot: %s Plazo del lote: %s UTC.",
                    dispatch.reason,
                    f"{job.deadline_at:%Y-%m-%d %H:%M:%S}" if job.deadline_at else "sin plazo",
                )
            elif not dispatch.sent and dispatch.reason is None:
                logger.info("El lote ya había sido enviado (o reclamado) por otra ejecución: no se reenvía; se espera.")
    # Callbacks can beat the robot's 200: suspend only if some item is still waiting for its result.
    if job.status not in FINISHED_JOB_STATUSES and job.pending_items > 0:
        # The process exits here; the resume (outbox "resume" event) runs the flow again from the top.
        completed = suspend_flow_run(
            wait_for_input=BatchCompleted,
            timeout=suspend_timeout_s(job.deadline_at),
            key=pause_key(job_id),
        )
        logger.info(
            "Lote %s: reanudado; %s pedido(s) con resultado (%s creados, %s con error).",
            job_id,
            completed.success_count + completed.error_count,
            completed.success_count,
            completed.error_count,
        )
        if completed.timed_out:
            logger.warning(
                "Plazo del lote vencido: %s pedido(s) sin resultado del robot se cerraron como error (timeout).",
                completed.timed_out_items,
            )
    # The database, not the run input, says how the job ended.
    outcome = finish_task(job_id)
    emit_batch_finished(job_id)  # alerts: an event if the batch ended with orders in error (flows/alerts.py)
    if outcome.status == JobStatus.FAILED:
        raise JobFailed(f"Lote fallido: {outcome.failure_reason or 'sin motivo registrado'} (lote {job_id})")
    if outcome.status != JobStatus.COMPLETED:
        # Not expected (a resume comes when the job finished); the reconciler starts a run that waits for it.
        raise JobFailed(
            f"El lote sigue {outcome.status} tras reanudar; el reconciliador iniciará una ejecución que "
            "espere sus resultados (sin reenviarlo)"
        )
    return outcome


@flow(name=ORCHESTRATE, retries=0, persist_result=False, **BATCH_HOOKS)
def orchestrate_robot_job(job_id: str) -> JobOutcome:
    """Recuperación (la inicia el reconciliador, nunca un operador): retoma un lote cuya ejecución murió; no lo
    reenvía si ya fue enviado, espera sus resultados y publica el resumen.

    Args:
        job_id: Id del lote (robot job) a retomar.
    """
    return run_batch(job_id, str(flow_run.get_id()))
