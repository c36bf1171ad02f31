"""Operator-facing flows `submit-robot-job` and `retry-failed-items`: create a job through the domain, list the
orders rejected before dispatch, and start the job's own `orchestrate-robot-job` flow run."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from domain.db import UnitOfWork
from domain.jobs import JobCreated, RejectedOrder, create_robot_job
from domain.jobs import retry_failed_items as retry_failed_items_use_case
from domain.models import JobStatus
from flows import runtime
from flows.artifacts import publish_rejected, publish_summary
from flows.deployments import RETRY, SUBMIT, start_orchestration
from flows.orchestrate import JobFailed
from flows.parameters import RetryFailedItems, SubmitRobotJob


class Rejected(BaseModel):
    order_id: str
    order_name: str
    reason: str


class SubmittedJob(BaseModel):
    """What the operator sees as the run's result."""

    job_id: str = Field(description="Lote creado (o reutilizado por la clave de idempotencia).")
    created: bool = Field(description="False si la clave de idempotencia devolvió un lote existente.")
    status: str
    total_items: int
    rejected: list[Rejected] = Field(default_factory=list, description="Pedidos no enviados y su motivo.")
    orchestration_flow_run_id: str | None = Field(default=None, description="Ejecución que envía y espera el lote.")


def _submitted(result: JobCreated) -> SubmittedJob:
    job = result.job
    return SubmittedJob(
        job_id=job.id,
        created=result.created,
        status=job.status,
        total_items=job.total_items,
        rejected=[Rejected(order_id=r.order_id, order_name=r.order_name, reason=r.reason) for r in result.rejected],
    )


@task(name="create-robot-job", retries=0, cache_policy=NO_CACHE, persist_result=False)
def create_job_task(request: SubmitRobotJob) -> SubmittedJob:
    with UnitOfWork(runtime.engine()) as uow:
        result = create_robot_job(
            uow.session,
            workspace_id=request.workspace_id,
            order_ids=request.orders.order_ids or None,
            stage_id=request.orders.stage_id,
            idempotency_key=request.idempotency_key,
        )
        uow.commit()
    return _submitted(result)


@task(name="create-retry-job", retries=0, cache_policy=NO_CACHE, persist_result=False)
def create_retry_job_task(request: RetryFailedItems) -> SubmittedJob:
    with UnitOfWork(runtime.engine()) as uow:
        result = retry_failed_items_use_case(uow.session, request.job_id, idempotency_key=request.idempotency_key)
        uow.commit()
    return _submitted(result)


def _orchestrate(submitted: SubmittedJob) -> SubmittedJob:
    """Publish what was rejected, then hand the job to its own flow run (or fail: nothing was dispatchable)."""
    logger = get_run_logger()
    rejected = [RejectedOrder(order_id=r.order_id, order_name=r.order_name, reason=r.reason) for r in submitted.rejected]
    publish_rejected(submitted.job_id, rejected)
    for r in submitted.rejected:
        logger.warning("rechazado %s: %s", r.order_name, r.reason)
    if submitted.status == JobStatus.FAILED:
        publish_summary(runtime.engine(), submitted.job_id)
        raise JobFailed(f"Lote {submitted.job_id} fallido: ningún pedido pasó la validación de cobertura")
    # The idempotency key makes a repeated submit (same job) reuse the one orchestration run of that job. If this
    # fails (Prefect answered 5xx, this run died), the job stays `pending` and the reconciler starts it.
    run = start_orchestration(submitted.job_id)
    logger.info("lote %s: ejecución de orquestación %s", submitted.job_id, run.id)
    return submitted.model_copy(update={"orchestration_flow_run_id": str(run.id)})


@flow(name=SUBMIT, retries=0, persist_result=False)
def submit_robot_job(request: SubmitRobotJob) -> SubmittedJob:
    """Envía al robot de Coordinadora un lote con los pedidos elegidos (una etapa o una lista de pedidos)."""
    return _orchestrate(create_job_task(request))


@flow(name=RETRY, retries=0, persist_result=False)
def retry_failed_items(request: RetryFailedItems) -> SubmittedJob:
    """Reintenta, en un lote nuevo, los pedidos fallidos de un lote terminado."""
    return _orchestrate(create_retry_job_task(request))
