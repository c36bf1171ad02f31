"""The operator's flows `submit-robot-job` and `retry-failed-items`: the run the operator starts is the batch.

One flow run per batch, from the click to the summary: resolve what the form says (names or ids), create the job
keyed by this run and start it (one task, one transaction), dispatch it once, name the run after the batch,
suspend until its results are in, finish from the database (flows/orchestrate.py `run_batch`, shared with the
reconciler's recovery run).

A resumed run executes its flow again from the top: before any task it finds the job this run created by its
`flow_run_id` (one query, no name to resolve, no task run), and goes straight to its finish.
"""

from __future__ import annotations

import flows.startup  # first of all: the collector pauses while this flow's modules import (flows/startup.py)

# isort: split

from collections.abc import Sequence
from uuid import UUID

from prefect import flow, get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from domain.batches.jobs import JobCreated, RejectedOrder, create_robot_job, start_job
from domain.batches.jobs import retry_failed_items as retry_failed_items_use_case
from domain.batches.lookups import batch_ref, job_of_run, resolve_batch, resolve_stage, resolve_workspace
from domain.db import UnitOfWork
from domain.models import JobStatus
from flows import runtime
from flows.deployments import RETRY, SUBMIT
from flows.orchestrate import BATCH_HOOKS, JobOutcome, JobSnapshot, read_snapshot, run_batch
from flows.parameters import check_selection, run_key


class Rejected(BaseModel):
    order_id: str
    order_name: str
    reason: str


class Batch(BaseModel):
    """The job this run created (or found under the operator's idempotency key)."""

    job_id: str
    label: str = Field(description="Referencia del lote: «<workspace> #<n>».")
    workspace_name: str
    created: bool
    owned: bool = Field(description="Este lote es de esta ejecución (False: otra ejecución lo creó).")
    flow_run_id: str | None
    status: str
    total_items: int
    retry_of: str | None = None
    rejected: list[Rejected] = Field(default_factory=list)
    started: JobSnapshot | None = Field(
        default=None, description="The job as this run's create task started it (pending → processing)."
    )
    resumed: JobSnapshot | None = Field(
        default=None, description="The run runs again (resumed): its job, already started and dispatched by it."
    )


class BatchResult(BaseModel):
    """What the operator sees as the run's result."""

    job_id: str = Field(description="Lote de esta ejecución (o el que ya existía con la misma clave).")
    lote: str = Field(description="Referencia del lote: «<workspace> #<n>» (la que acepta el reintento).")
    status: str = Field(description="Estado del lote.")
    total_items: int
    success_count: int = 0
    error_count: int = 0
    failure_reason: str | None = None
    rejected: list[Rejected] = Field(default_factory=list, description="Pedidos no enviados y su motivo.")
    flow_run_id: str | None = Field(default=None, description="Ejecución dueña del lote.")


def _batch(uow, created: JobCreated, run_id: str) -> Batch:
    """The job as the create task leaves it; a job this run owns is started in the same transaction (its deadline
    counts from now), so the dispatch follows with no task in between."""
    job = created.job
    owned = created.created or job.flow_run_id == run_id
    started = None
    if owned:
        settings = runtime.settings()
        start_job(
            uow.session,
            job.id,
            flow_run_id=run_id,
            seconds_per_item=settings.callback_seconds_per_item,
            base_seconds=settings.callback_base_seconds,
        )
        started = read_snapshot(uow.session, job.id)
    ref = batch_ref(uow.session, job)
    retry_of = (
        batch_ref(uow.session, uow.session.get(type(job), job.retry_of_job_id)).label if job.retry_of_job_id else None
    )
    return Batch(
        job_id=job.id,
        label=ref.label,
        workspace_name=ref.workspace_name,
        created=created.created,
        owned=owned,
        flow_run_id=job.flow_run_id,
        status=job.status,
        total_items=job.total_items,
        retry_of=retry_of,
        rejected=[Rejected(order_id=r.order_id, order_name=r.order_name, reason=r.reason) for r in created.rejected],
        started=started,
    )


def own_batch(run_id: str) -> Batch | None:
    """The job this run created, if it runs again (a resume executes the flow from the top): no new job, and once
    started, straight to its suspend or finish. A plain read, not a task: it is on the last result → `Completed`
    path, and a task run costs more than the query."""
    with UnitOfWork(runtime.engine(), readonly=True) as uow:
        job = job_of_run(uow.session, run_id)
        if job is None:
            return None
        ref = batch_ref(uow.session, job)
        return Batch(
            job_id=job.id,
            label=ref.label,
            workspace_name=ref.workspace_name,
            created=False,
            owned=True,
            flow_run_id=run_id,
            status=job.status,
            total_items=job.total_items,
            resumed=None if job.status == JobStatus.PENDING else read_snapshot(uow.session, job.id),
        )


@task(name="name-batch-run", retries=0, cache_policy=NO_CACHE, persist_result=False)
def name_run(run_id: str, *, name: str, tags: list[str]) -> None:
    """The runs list reads well: the run is named after its batch and tagged with its workspace and job.
    Best effort: a name Prefect did not take never fails the batch."""
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(run_id), name=name, tags=sorted({*flow_run.get_tags(), *tags}))
    except Exception as exc:  # noqa: BLE001
        get_run_logger().warning("no se pudo renombrar la ejecución: %s: %s", type(exc).__name__, exc)


@task(name="create-robot-job", retries=0, cache_policy=NO_CACHE, persist_result=False)
def create_job_task(run_id: str, workspace: str, stage: str, order_ids: list[str], idempotency_key: str) -> Batch:
    with UnitOfWork(runtime.engine()) as uow:
        found = resolve_workspace(uow.session, workspace)
        created = create_robot_job(
            uow.session,
            workspace_id=found.id,
            order_ids=order_ids or None,
            stage_id=resolve_stage(uow.session, found.id, stage),
            idempotency_key=idempotency_key.strip() or run_key(run_id),
            flow_run_id=run_id,
        )
        batch = _batch(uow, created, run_id)
        uow.commit()
    return batch


@task(name="create-retry-job", retries=0, cache_policy=NO_CACHE, persist_result=False)
def create_retry_job_task(run_id: str, batch: str, idempotency_key: str) -> Batch:
    with UnitOfWork(runtime.engine()) as uow:
        retried = resolve_batch(uow.session, batch)
        created = retry_failed_items_use_case(
            uow.session, retried.job_id, idempotency_key=idempotency_key.strip() or None, flow_run_id=run_id
        )
        result = _batch(uow, created, run_id)
        uow.commit()
    return result


def _result(batch: Batch, outcome: JobOutcome | None = None) -> BatchResult:
    return BatchResult(
        job_id=batch.job_id,
        lote=batch.label,
        status=outcome.status if outcome else batch.status,
        total_items=batch.total_items,
        success_count=outcome.success_count if outcome else 0,
        error_count=outcome.error_count if outcome else len(batch.rejected),
        failure_reason=outcome.failure_reason if outcome else None,
        rejected=batch.rejected,
        flow_run_id=batch.flow_run_id,
    )


def _run(batch: Batch, run_id: str) -> BatchResult:
    """The batch's run: announce it (run name, tags, rejected orders) while the robot works, then run_batch."""
    logger = get_run_logger()
    if batch.resumed is not None:
        return _result(batch, run_batch(batch.job_id, run_id, job=batch.resumed))
    if not batch.owned:
        # The operator's idempotency key names a batch another run created: that run sends it, not this one.
        logger.info(
            "La clave de idempotencia corresponde al lote %s (%s), de la ejecución %s: no se envía de nuevo.",
            batch.label,
            batch.job_id,
            batch.flow_run_id,
        )
        return _result(batch)

    def announce() -> None:
        # Imported here: nothing of the artifacts is needed before the robot has the batch (see finish_task).
        from flows.artifacts import publish_rejected

        orders = f"{batch.total_items} pedido{'s' if batch.total_items != 1 else ''}"
        retry = f" · reintento de #{batch.retry_of.rsplit('#', 1)[1]}" if batch.retry_of else ""
        name_run(
            run_id,
            name=f"{batch.label}{retry} · {orders}",
            tags=[f"workspace:{batch.workspace_name}", f"job:{batch.job_id}"],
        )
        publish_rejected(batch.job_id, [RejectedOrder(r.order_id, r.order_name, r.reason) for r in batch.rejected])
        for r in batch.rejected:
            logger.warning("rechazado %s: %s", r.order_name, r.reason)

    logger.info("lote %s (%s): %s pedido(s)", batch.label, batch.job_id, batch.total_items)
    return _result(batch, run_batch(batch.job_id, run_id, started=batch.started, announce=announce))


@flow(name=SUBMIT, retries=0, persist_result=False, **BATCH_HOOKS)
def submit_robot_job(
    workspace: str, stage: str = "", order_ids: Sequence[str] = (), idempotency_key: str = ""
) -> BatchResult:
    """Envía al robot de Coordinadora un lote: los pedidos de una etapa del workspace o una lista de pedidos. Esta
    ejecución es el lote: envía, espera los resultados y publica el resumen.

    Args:
        workspace: Nombre del workspace (o su id). Un nombre desconocido falla al instante con la lista de
            nombres válidos.
        stage: Nombre de la etapa del pipeline (o su id) cuyos pedidos se despachan. Vacío: la etapa de despacho
            del workspace.
        order_ids: Opcional. Ids de pedidos concretos a despachar, en lugar de una etapa.
        idempotency_key: Opcional. Si la clave ya creó un lote en el workspace, se informa ese lote y no se envía
            otro (evita envíos dobles por un clic repetido).
    """
    check_selection(stage, order_ids)
    run_id = str(flow_run.get_id())
    batch = own_batch(run_id) or create_job_task(run_id, workspace, stage, list(order_ids), idempotency_key)
    return _run(batch, run_id)


@flow(name=RETRY, retries=0, persist_result=False, **BATCH_HOOKS)
def retry_failed_items(batch: str, idempotency_key: str = "") -> BatchResult:
    """Reintenta, en un lote nuevo, los pedidos fallidos de un lote terminado. Esta ejecución es el lote nuevo.

    Args:
        batch: Lote a reintentar: «<workspace> #<n>» (el nombre de su ejecución), su id o los primeros 8+
            caracteres del id. Una referencia desconocida falla al instante con los lotes recientes que tienen
            pedidos fallidos.
        idempotency_key: Opcional. Por defecto 'retry:<lote>': reintentar dos veces el mismo lote crea un solo
            lote nuevo.
    """
    run_id = str(flow_run.get_id())
    return _run(own_batch(run_id) or create_retry_job_task(run_id, batch, idempotency_key), run_id)


flows.startup.imports_done(warm_up=runtime.warm_up)
