"""Flow `reconcile` (every minute): nothing stays stuck, and what Prefect shows agrees with the database.

In order, each step idempotent:
1. close jobs past their deadline (our clock decides: the suspend timeout outlasts the deadline by an interval and a
   margin, so this runs before Prefect's own timer, which would fail the run with no hook);
2. redeliver undelivered "resume" events: resume the runs of finished jobs (a timed-out job's run resumes with
   `timed_out` and ends `Failed`), and carry corrections of finished jobs to their runs;
3. resume suspended runs whose job finished but whose resume event was lost;
4. start a recovery run (`orchestrate-robot-job`) for jobs left `pending` whose creating run has ended (it died
   between creating and starting its job); past a limit, fail them as never sent;
5. give a job still `processing` whose run died (crashed, failed, cancelled) a recovery run that only waits: the
   dispatch is claimed once per job, so it is never sent again;
6. republish the summary of every finished job whose published summary is older than the job (Prefect was down,
   a run died before publishing), and make an ended run's state agree with its job.

Scheduling contract: one run per UTC-minute bucket (key `reconcile:<minute>`, the work is cached under it),
deployment concurrency 1, flow retries 3, and `settings.reconciler_enabled` turns it off without a deploy.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from domain.batches.jobs import (
    TIMEOUT_MESSAGE,
    fail_job,
    fail_unstarted_job,
    get_job,
    jobs_past_deadline,
    jobs_with_stale_summary,
    pending_jobs_older_than,
    processing_jobs,
)
from domain.batches.lookups import job_of_run
from domain.db import UnitOfWork
from domain.errors import UnknownJob
from domain.models import FINISHED_JOB_STATUSES, ErrorType
from domain.settings import Settings
from flows import runtime
from flows.deployments import ORCHESTRATE, RECONCILE, RETRY, SUBMIT, start_orchestration
from relay.artifacts import publish_summary
from relay.prefect_api import prefect_calls
from relay.resume import Outcome, deliver_resume_events, resume_run
from relay.run_input import run_input_of
from relay.run_log import log_in_job_run, log_in_run
from relay.settle import agree_run_state, read_run_state

log = logging.getLogger("flows.reconcile")

# A job's recovery runs along their idempotency keys (flows.deployments.orchestrate_key), one per recovery. Past
# this many runs something is wrong with the code, not the moment: stop and let the deadline close
# the job.
MAX_RUNS_PER_JOB = 5


class ReconcileReport(BaseModel):
    enabled: bool = True
    key: str | None = Field(default=None, description="Idempotency key of the bucket this run reconciled.")
    timed_out_jobs: list[str] = Field(default_factory=list)
    redelivered: dict[str, int] = Field(default_factory=dict, description="Outcomes of resume events redelivered.")
    resumed_stranded: list[str] = Field(default_factory=list, description="Suspended runs resumed from the job row.")
    started_pending: list[str] = Field(
        default_factory=list, description="Jobs left pending whose orchestration run was started (or found alive)."
    )
    abandoned_pending: list[str] = Field(
        default_factory=list, description="Jobs left pending past the limit, failed as never sent."
    )
    recovered: list[str] = Field(
        default_factory=list, description="Processing jobs whose run had ended: a recovery run waits for them."
    )
    republished: list[str] = Field(default_factory=list, description="Jobs whose summary was republished.")
    runs_settled: dict[str, str] = Field(
        default_factory=dict, description="Ended runs whose state was set to agree with their job (job → state)."
    )


def bucket_key(now: datetime | None = None) -> str:
    """`reconcile:<UTC minute>`: every trigger in the same minute is the same reconcile."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"reconcile:{now:%Y-%m-%dT%H:%MZ}"


def fail_overdue_jobs(engine) -> list[str]:
    """Close every job past its deadline; its run is resumed by the BATCH_COMPLETED event this writes (step 2)."""
    failed = []
    with UnitOfWork(engine, readonly=True) as uow:
        overdue = jobs_past_deadline(uow.session)
    for job_id in overdue:
        with UnitOfWork(engine) as uow:
            if fail_job(
                uow.session, job_id, reason=TIMEOUT_MESSAGE, error_type=ErrorType.TIMEOUT, error_message=TIMEOUT_MESSAGE
            ):
                failed.append(job_id)
            uow.commit()
        if job_id in failed:
            log_in_job_run(
                engine,
                log,
                logging.WARNING,
                job_id,
                f"Lote {job_id}: plazo vencido (reconciliador); los "
                "pedidos sin resultado se cerraron como error (timeout) y se reanuda la ejecución",
            )
    return failed


def resume_stranded_runs(engine) -> list[str]:
    """Suspended batch runs (the operator's, or recovery ones) whose job is finished: resume them from the job row."""
    resumed = []
    with prefect_calls(), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[SUBMIT, RETRY, ORCHESTRATE])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
            limit=200,
        )
    for run in runs:
        try:
            with UnitOfWork(engine, readonly=True) as uow:
                # A recovery run names its job; an operator's run is the job's `flow_run_id`.
                job_id = (run.parameters or {}).get("job_id")
                job = get_job(uow.session, job_id) if job_id else job_of_run(uow.session, str(run.id))
                if job is None:
                    continue
                job_id = job.id
                if job.status not in FINISHED_JOB_STATUSES:
                    continue
                run_input = run_input_of(uow.session, job)
        except UnknownJob:
            continue
        outcome, _why = resume_run(str(run.id), run_input)
        if outcome == Outcome.RESUMED:
            resumed.append(job_id)
            log_in_run(
                log,
                logging.INFO,
                f"Lote {job_id}: el reconciliador reanudó la ejecución (el lote terminó y "
                "su aviso de reanudación se había perdido)",
                flow_run_id=str(run.id),
            )
    return resumed


def ensure_orchestration(job_id: str) -> str | None:
    """The id of a live recovery run of the job: the first run along its keys that has not ended, created where the
    chain ends. None past MAX_RUNS_PER_JOB."""
    for recovery in range(MAX_RUNS_PER_JOB):
        run = start_orchestration(job_id, recovery=recovery)
        if not (run.state and run.state.is_final()):
            return str(run.id)
    log.error("job %s: %s orchestration runs ended without finishing it; no more are started", job_id, MAX_RUNS_PER_JOB)
    return None


def start_pending_jobs(engine, settings: Settings) -> tuple[list[str], list[str]]:
    """Jobs left `pending` whose creating run has ended: a recovery run starts them; past the give-up limit, fail
    them as never sent. A job whose run is still alive is that run's to start (it may be slow, not dead)."""
    with UnitOfWork(engine, readonly=True) as uow:
        orphans = pending_jobs_older_than(uow.session, settings.pending_orphan_after_s)
        expired = set(pending_jobs_older_than(uow.session, settings.pending_give_up_after_s))
        owners = {job_id: get_job(uow.session, job_id).flow_run_id for job_id in orphans}
    alive = _alive_runs([run_id for run_id in owners.values() if run_id])
    started, abandoned = [], []
    for job_id in orphans:
        if owners[job_id] in alive and job_id not in expired:
            continue
        if job_id in expired:
            with UnitOfWork(engine) as uow:
                if fail_unstarted_job(uow.session, job_id):
                    abandoned.append(job_id)
                uow.commit()
            if job_id in abandoned:
                log_in_job_run(
                    engine,
                    log,
                    logging.ERROR,
                    job_id,
                    f"Lote {job_id}: nunca se envió al robot; el "
                    f"reconciliador lo da por fallido tras {settings.pending_give_up_after_s:g} s pendiente",
                )
            continue
        try:
            if new_run := ensure_orchestration(job_id):
                started.append(job_id)
                log_in_run(
                    log,
                    logging.WARNING,
                    f"Lote {job_id}: seguía pendiente; el reconciliador inició esta "
                    "ejecución para enviarlo (una sola vez)",
                    flow_run_id=new_run,
                )
        except Exception as exc:  # Prefect refused (5xx) or did not answer: try again next minute, until the limit
            log_in_job_run(
                engine,
                log,
                logging.WARNING,
                job_id,
                f"Lote {job_id}: el reconciliador no pudo iniciar "
                f"su ejecución ({type(exc).__name__}); lo reintenta en un minuto",
            )
    return started, abandoned


def _alive_runs(run_ids: list[str]) -> set[str]:
    """Those of the flow runs that exist and have not ended."""
    if not run_ids:
        return set()
    with prefect_calls(), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(r) for r in run_ids])), limit=len(run_ids)
        )
    return {str(run.id) for run in runs if not (run.state and run.state.is_final())}


def recover_dead_runs(engine) -> list[str]:
    """Jobs still `processing` whose flow run has ended (or is unknown to Prefect): a recovery run waits for them."""
    with UnitOfWork(engine, readonly=True) as uow:
        waiting = processing_jobs(uow.session)
    if not waiting:
        return []
    alive = _alive_runs([run_id for _, run_id in waiting if run_id])
    recovered = []
    for job_id, run_id in waiting:
        if run_id in alive:
            continue
        try:
            new_run = ensure_orchestration(job_id)
        except Exception as exc:
            log.warning("job %s: no recovery run: %s: %s", job_id, type(exc).__name__, exc)
            continue
        if new_run and new_run != run_id:
            recovered.append(job_id)
            message = (
                f"Lote {job_id}: la ejecución {run_id or '-'} terminó sin cerrar el lote; el reconciliador "
                f"inició la ejecución de recuperación {new_run}, que no reenvía el lote y espera sus resultados"
            )
            for target in dict.fromkeys(r for r in (run_id, new_run) if r):
                log_in_run(log, logging.WARNING, message, flow_run_id=target)
    return recovered


def republish_stale_summaries(engine) -> tuple[list[str], dict[str, str]]:
    """Finished jobs whose summary is missing or older than the job: publish it; an ended run is made to agree."""
    with UnitOfWork(engine, readonly=True) as uow:
        stale = jobs_with_stale_summary(uow.session)
    republished, settled = [], {}
    for job_id in stale:
        try:
            with UnitOfWork(engine, readonly=True) as uow:
                job = get_job(uow.session, job_id)
                flow_run_id, status, reason = job.flow_run_id, job.status, job.failure_reason
                never_published = job.summary_published_at is None
            with prefect_calls(), get_client(sync_client=True) as client:
                if never_published and (alive := read_run_state(client, flow_run_id)) and not alive.is_final():
                    # Its run is still to finish (resumed, waiting for a worker, publishing now): it publishes the
                    # summary itself; a second version would race it. A run that dies ends final, then it is ours.
                    continue
                publish_summary(engine, job_id)
                republished.append(job_id)
                state = read_run_state(client, flow_run_id)
                if state is not None and state.is_final():
                    if changed := agree_run_state(client, flow_run_id, state, status, reason):
                        settled[job_id] = changed
            note = f"; estado de la ejecución ajustado a {settled[job_id]}" if job_id in settled else ""
            log_in_job_run(
                engine,
                log,
                logging.INFO,
                job_id,
                f"Lote {job_id}: el reconciliador publicó el resumen al día "
                f"(faltaba o era anterior al último cambio del lote){note}",
                flow_run_id=flow_run_id,
            )
        except Exception as exc:  # one job's trouble must not hold the others; it stays due
            log.warning("job %s: summary not republished: %s: %s", job_id, type(exc).__name__, exc)
    return republished, settled


# Cached under the bucket key: a second run in the same minute (schedule overlap, manual trigger, flow retry
# after success) returns this result instead of reconciling again. A failed attempt is not cached.
@task(
    name="reconcile-bucket",
    cache_key_fn=lambda _context, parameters: parameters["key"],
    cache_expiration=timedelta(minutes=10),
    persist_result=True,
)
def reconcile_bucket(key: str) -> ReconcileReport:
    settings, engine = runtime.settings(), runtime.engine()
    timed_out = fail_overdue_jobs(engine)
    stats = deliver_resume_events(engine, worker_id=f"reconciler-{flow_run.get_id()}", limit=100)
    stranded = resume_stranded_runs(engine)
    started, abandoned = start_pending_jobs(engine, settings)
    recovered = recover_dead_runs(engine)
    republished, settled = republish_stale_summaries(engine)
    return ReconcileReport(
        key=key,
        timed_out_jobs=timed_out,
        redelivered=stats.as_dict(),
        resumed_stranded=stranded,
        started_pending=started,
        abandoned_pending=abandoned,
        recovered=recovered,
        republished=republished,
        runs_settled=settled,
    )


@flow(name=RECONCILE, retries=3, retry_delay_seconds=5, persist_result=False)
def reconcile(idempotency_key: str | None = None) -> ReconcileReport:
    """Mantenimiento cada minuto: cierra lotes vencidos, reanuda ejecuciones que quedaron esperando, inicia lotes
    que quedaron pendientes, recupera ejecuciones caídas y republica resúmenes corregidos.

    Args:
        idempotency_key: Opcional. Por defecto 'reconcile:<minuto UTC>': dos ejecuciones del mismo minuto
            hacen el trabajo una vez.
    """
    logger = get_run_logger()
    if not runtime.settings().reconciler_enabled:
        logger.info("reconciler disabled by settings (RECONCILER_ENABLED=false)")
        return ReconcileReport(enabled=False)
    report = reconcile_bucket(idempotency_key or bucket_key())
    logger.info("reconcile: %s", report.model_dump())
    return report
