"""Robot jobs: creation from orders, the job state machine (pending → processing → completed | failed), retry.

Every transition is a guarded `UPDATE ... WHERE status IN (...) RETURNING`, so a late timeout can never overwrite
`completed` and two callers can never both win the same transition.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Exists, Integer, bindparam, case, false, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from domain import outbox
from domain.batches.robot_input import build_pedido_input, is_cash_on_delivery
from domain.errors import (
    ActiveJobExists,
    JobNotRetryable,
    MissingCarrierConfig,
    NothingToDispatch,
    OrdersNotDispatchable,
    UnknownJob,
    UnknownStage,
    UnknownWorkspace,
)
from domain.events import RobotBatchCompleted, RobotBatchCorrected
from domain.models import (
    ACTIVE_JOB_STATUSES,
    COORDINADORA,
    FINISHED_JOB_STATUSES,
    SHIPMENT,
    CarrierConfig,
    Contact,
    DispatchState,
    ErrorType,
    ItemStatus,
    JobStatus,
    Order,
    ResolvedBy,
    RobotJob,
    RobotJobItem,
    Stage,
    Workspace,
    new_item_id,
    table_of,
    utcnow,
)
from domain.orders.coverage import Rejection, resolve_destinations
from domain.settings import setting_default

ALL_REJECTED_REASON = "Ningún pedido pasó la validación de cobertura"
ALL_FAILED_REASON = "Ningún pedido fue creado por el robot"
TIMEOUT_MESSAGE = "Tiempo de espera agotado. El servicio del robot no respondio a tiempo."
NEVER_STARTED_MESSAGE = (
    "El lote no se envió al robot: su ejecución no pudo iniciarse. Ningún pedido se envió; puede enviarlos de nuevo."
)
WITHDRAWN_MESSAGE = (
    "Retirado del lote sin enviarlo: el robot ya creó este pedido en el portal desde otro lote "
    "(se evita un envío duplicado)."
)


@dataclass(frozen=True)
class RejectedOrder:
    order_id: str
    order_name: str
    reason: str


@dataclass(frozen=True)
class JobCreated:
    job: RobotJob
    created: bool  # False when an idempotency key returned an existing job
    rejected: list[RejectedOrder] = field(default_factory=list)


@dataclass(frozen=True)
class ItemView:
    item: RobotJobItem
    order: Order
    contact: Contact | None


@dataclass(frozen=True)
class JobView:
    job: RobotJob
    items: list[ItemView]


# --- reading ----------------------------------------------------------------------------------------------------


def get_job(session: Session, job_id: str) -> RobotJob:
    job = session.get(RobotJob, job_id, populate_existing=True)
    if job is None:
        raise UnknownJob(f"Trabajo de robot desconocido: {job_id}", job_id=job_id)
    return job


def get_job_view(session: Session, job_id: str) -> JobView:
    job = get_job(session, job_id)
    rows = session.exec(
        select(RobotJobItem, Order, Contact)
        .join(Order, col(Order.id) == col(RobotJobItem.order_id))
        .join(Contact, col(Contact.id) == col(Order.contact_id), isouter=True)
        .where(RobotJobItem.job_id == job_id)
        .order_by(col(RobotJobItem.created_at), col(Order.name))
    ).all()
    return JobView(job=job, items=[ItemView(item=i, order=o, contact=c) for i, o, c in rows])


@dataclass(frozen=True)
class JobResult:
    """How a finished job ended, read once, as its run's input (`BatchCompleted`) says it: the row's status and
    counts, and how many items our deadline closed."""

    job_id: str
    status: str
    success_count: int
    error_count: int
    total_items: int
    failure_reason: str | None
    timed_out_items: int  # items our deadline closed (error `timeout`, resolved by robotjobs)


def job_result(session: Session, job: RobotJob) -> JobResult:
    """The one reading of a job's outcome, from its row and one count of the items its deadline closed."""
    timed_out = session.exec(
        select(func.count())
        .select_from(RobotJobItem)
        .where(
            RobotJobItem.job_id == job.id,
            RobotJobItem.error_type == ErrorType.TIMEOUT,
            RobotJobItem.resolved_by == ResolvedBy.ROBOTJOBS,
        )
    ).one()
    return JobResult(
        job_id=job.id,
        status=job.status,
        success_count=job.success_count,
        error_count=job.error_count,
        total_items=job.total_items,
        failure_reason=job.failure_reason,
        timed_out_items=timed_out,
    )


def pending_item_count(session: Session, job_id: str) -> int:
    return session.exec(
        select(func.count())
        .select_from(RobotJobItem)
        .where(RobotJobItem.job_id == job_id, RobotJobItem.status == ItemStatus.PENDING)
    ).one()


def jobs_past_deadline(session: Session, *, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    return list(
        session.exec(
            select(col(RobotJob.id)).where(
                col(RobotJob.status) == JobStatus.PROCESSING, col(RobotJob.deadline_at) < now
            )
        )
    )


# --- creating ---------------------------------------------------------------------------------------------------


def create_robot_job(
    session: Session,
    *,
    workspace_id: str,
    order_ids: list[str] | None = None,
    stage_id: str | None = None,
    idempotency_key: str | None = None,
    retry_of_job_id: str | None = None,
    carrier: str = COORDINADORA,
    flow_run_id: str | None = None,
) -> JobCreated:
    """One job with one item per chosen order; orders outside coverage become already-failed items.

    `flow_run_id`: the flow run creating the job (the batch's run), recorded at once so the job of a run can be found
    before it starts. An idempotency key that returns an existing job leaves that job's run as it was."""
    if session.get(Workspace, workspace_id) is None:
        raise UnknownWorkspace(f"Workspace desconocido: {workspace_id}", workspace_id=workspace_id)
    if idempotency_key:
        existing = _job_by_key(session, workspace_id, idempotency_key)
        if existing is not None:
            return JobCreated(job=existing, created=False, rejected=_rejected_of(session, existing.id))
    config = session.exec(
        select(CarrierConfig).where(CarrierConfig.workspace_id == workspace_id, CarrierConfig.carrier == carrier)
    ).first()
    if config is None:
        raise MissingCarrierConfig(f"El workspace no tiene configurada la transportadora {carrier}", carrier=carrier)
    orders = _choose_orders(
        session, workspace_id, order_ids, stage_id or (None if order_ids else config.dispatch_stage_id)
    )
    active = session.exec(
        select(RobotJob.id).where(
            RobotJob.workspace_id == workspace_id,
            RobotJob.carrier == carrier,
            RobotJob.job_type == SHIPMENT,
            col(RobotJob.status).in_(ACTIVE_JOB_STATUSES),
        )
    ).first()
    if active is not None:
        raise _active_job_exists(active)

    job = RobotJob(
        workspace_id=workspace_id,
        carrier=carrier,
        idempotency_key=idempotency_key,
        retry_of_job_id=retry_of_job_id,
        total_items=len(orders),
        flow_run_id=flow_run_id,
    )
    contacts = _contacts_of(session, orders)
    items, rejected = [], []
    now = utcnow()
    destinations = resolve_destinations(
        session,
        [(o.shipping_city, o.shipping_department, is_cash_on_delivery(o)) for o in orders],
        carrier=carrier,
    )
    for n, (order, destination) in enumerate(zip(orders, destinations, strict=True)):
        # Distinct, increasing created_at: items keep the orders' order wherever they are listed by creation.
        created = now + timedelta(microseconds=n)
        item: dict[str, Any] = {
            "id": new_item_id(), "job_id": job.id, "order_id": order.id, "status": ItemStatus.PENDING.value,
            "tracking_number": None, "error_type": None, "error_message": None, "resolved_by": None,
            "robot_input": None, "created_at": created, "updated_at": created, "completed_at": None,
        }  # fmt: skip
        if isinstance(destination, Rejection):
            rejected.append(RejectedOrder(order_id=order.id, order_name=order.name, reason=destination.reason))
            item.update(
                status=ItemStatus.ERROR.value,
                error_type=ErrorType.VALIDATION.value,
                error_message=destination.reason,
                resolved_by=ResolvedBy.ROBOTJOBS.value,
                completed_at=now,
            )
        else:
            contact = contacts.get(order.contact_id or "")
            item["robot_input"] = build_pedido_input(order, contact, destination, config)
        items.append(item)
    job.error_count = len(rejected)
    if len(rejected) == len(orders):
        job.status = JobStatus.FAILED
        job.failure_reason = ALL_REJECTED_REASON
        job.finished_at = now

    try:
        # A savepoint: if a concurrent request won the race, the caller's transaction stays usable.
        with session.begin_nested():
            session.add(job)
            session.flush()
            # Core multi-row INSERTs (insertmanyvalues): no ORM object per item.
            session.execute(insert(table_of(RobotJobItem)), items)
    except IntegrityError:
        if idempotency_key:
            existing = _job_by_key(session, workspace_id, idempotency_key)
            if existing is not None:
                return JobCreated(job=existing, created=False, rejected=_rejected_of(session, existing.id))
        raise _active_job_exists(None) from None
    if job.status == JobStatus.FAILED:
        _emit_batch_completed(session, job)
    return JobCreated(job=job, created=True, rejected=rejected)


def _active_job_exists(job_id: str | None) -> ActiveJobExists:
    return ActiveJobExists(
        "Ya hay un lote de envíos activo para este workspace; espere a que termine", active_job_id=job_id
    )


def _job_by_key(session: Session, workspace_id: str, key: str) -> RobotJob | None:
    return session.exec(
        select(RobotJob).where(RobotJob.workspace_id == workspace_id, RobotJob.idempotency_key == key)
    ).first()


def _rejected_of(session: Session, job_id: str) -> list[RejectedOrder]:
    rows = session.exec(
        select(RobotJobItem, Order)
        .join(Order, col(Order.id) == col(RobotJobItem.order_id))
        .where(
            RobotJobItem.job_id == job_id,
            RobotJobItem.error_type == ErrorType.VALIDATION,
            col(RobotJobItem.robot_input).is_(None),
        )
    ).all()
    return [RejectedOrder(order_id=o.id, order_name=o.name, reason=i.error_message or "") for i, o in rows]


def _contacts_of(session: Session, orders: list[Order]) -> dict[str, Contact]:
    ids = {o.contact_id for o in orders if o.contact_id}
    if not ids:
        return {}
    return {c.id: c for c in session.exec(select(Contact).where(col(Contact.id).in_(ids)))}


def _shipped_anywhere() -> Exists:
    """An order the robot reported created in any job. A success may carry no pedido number, so the order's
    tracking number alone cannot tell: a retry or a new batch must never send such an order again."""
    shipped = aliased(RobotJobItem)  # aliased: callers may already select from robot_job_items
    return (
        select(shipped.id)
        .where(col(shipped.order_id) == col(Order.id), col(shipped.status) == ItemStatus.SUCCESS)
        .exists()
    )


def _dispatchable() -> ColumnElement[bool]:
    """The one rule of which orders may be sent to the robot, as a SQL condition on `Order`."""
    return (
        (col(Order.archived) == false())
        & (col(Order.closed) == false())
        & col(Order.tracking_number).is_(None)
        & ~_shipped_anywhere()
    )


def _dispatch_problem(order: Order, shipped: bool) -> str | None:
    """Why an order that failed `_dispatchable` was refused, in the operator's words (it decides nothing)."""
    if order.archived:
        return "archivado"
    if order.closed:
        return "cerrado"
    if order.tracking_number:
        return f"ya tiene guía {order.tracking_number}"
    if shipped:
        return "ya fue creado en el portal por otro lote"
    return None


def _choose_orders(
    session: Session, workspace_id: str, order_ids: list[str] | None, stage_id: str | None
) -> list[Order]:
    if order_ids:
        wanted = list(dict.fromkeys(order_ids))
        found = {o.id: o for o in session.exec(select(Order).where(col(Order.id).in_(wanted)))}
        # The SQL condition decides; `_dispatch_problem` only words why, for the orders it refused.
        dispatchable = set(session.exec(select(Order.id).where(col(Order.id).in_(wanted), _dispatchable())))
        refused = [order_id for order_id in found if order_id not in dispatchable]
        shipped = (
            set(session.exec(select(Order.id).where(col(Order.id).in_(refused), _shipped_anywhere())))
            if refused
            else set()
        )
        problems = {}
        for order_id in wanted:
            order = found.get(order_id)
            if order is None or order.workspace_id != workspace_id:
                problems[order_id] = "no existe en este workspace"
            elif order_id not in dispatchable:
                problems[order_id] = _dispatch_problem(order, order_id in shipped) or "no se puede despachar"
        if problems:
            listed = "; ".join(f"{oid}: {why}" for oid, why in problems.items())
            raise OrdersNotDispatchable(f"Pedidos que no se pueden despachar: {listed}", problems=problems)
        orders = [found[order_id] for order_id in wanted]
    elif stage_id:
        stage = session.get(Stage, stage_id)
        if stage is None:
            raise UnknownStage(f"Etapa desconocida: {stage_id}", stage_id=stage_id)
        orders = list(
            session.exec(
                select(Order)
                .where(Order.workspace_id == workspace_id, Order.stage_id == stage_id, _dispatchable())
                .order_by(col(Order.created_at), col(Order.name))
            )
        )
    else:
        raise NothingToDispatch("Indique los pedidos (por id) o la etapa de la que se despachan")
    if not orders:
        raise NothingToDispatch("No hay pedidos para despachar en la selección")
    return orders


# --- lifecycle --------------------------------------------------------------------------------------------------


def callback_deadline(
    start: datetime, item_count: int, *, seconds_per_item: int | None = None, base_seconds: int | None = None
) -> datetime:
    """The one rule of a batch's deadline for the robot's results: `item_count` × seconds per item + a base, from
    `start`. Unset values take the defaults of `callback_seconds_per_item` / `callback_base_seconds` in
    domain/settings.py (the only place they are written); the flows pass the configured values. The run's suspend
    timeout is derived from the resulting `deadline_at` (flows.orchestrate.suspend_timeout_s), never recomputed."""
    if seconds_per_item is None:
        seconds_per_item = setting_default("callback_seconds_per_item")
    if base_seconds is None:
        base_seconds = setting_default("callback_base_seconds")
    return start + timedelta(seconds=item_count * seconds_per_item + base_seconds)


def start_job(
    session: Session,
    job_id: str,
    *,
    flow_run_id: str | None,
    seconds_per_item: int | None = None,
    base_seconds: int | None = None,
    now: datetime | None = None,
) -> RobotJob:
    """pending → processing, with the callback deadline (`callback_deadline`). A no-op for a job already started."""
    now = now or utcnow()
    deadline = callback_deadline(
        now, pending_item_count(session, job_id), seconds_per_item=seconds_per_item, base_seconds=base_seconds
    )
    session.execute(
        update(RobotJob)
        .where(col(RobotJob.id) == job_id, col(RobotJob.status) == JobStatus.PENDING)
        .values(
            status=JobStatus.PROCESSING,
            flow_run_id=flow_run_id,
            deadline_at=deadline,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if flow_run_id:
        # A rerun of a crashed flow is a new flow run: it, not the dead one, is the run to resume.
        session.execute(
            update(RobotJob)
            .where(col(RobotJob.id) == job_id, col(RobotJob.status) == JobStatus.PROCESSING)
            .values(flow_run_id=flow_run_id)
            .execution_options(synchronize_session=False)
        )
    return get_job(session, job_id)


def claim_dispatch(session: Session, job_id: str, *, callback_secret_hash: str, now: datetime | None = None) -> bool:
    """Take the one right to send this job to the robot. True exactly once per job, whatever reruns happen."""
    claimed = session.execute(
        update(RobotJob)
        .where(
            col(RobotJob.id) == job_id,
            col(RobotJob.status) == JobStatus.PROCESSING,
            col(RobotJob.dispatch_state) == DispatchState.NOT_DISPATCHED,
        )
        .values(
            dispatch_state=DispatchState.CLAIMED,
            callback_secret_hash=callback_secret_hash,
            dispatched_at=now or utcnow(),
            updated_at=now or utcnow(),
        )
        .returning(col(RobotJob.id))
        .execution_options(synchronize_session=False)
    ).first()
    return claimed is not None


def mark_dispatch_accepted(session: Session, job_id: str) -> None:
    session.execute(
        update(RobotJob)
        .where(col(RobotJob.id) == job_id, col(RobotJob.dispatch_state) == DispatchState.CLAIMED)
        .values(dispatch_state=DispatchState.ACCEPTED, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def mark_dispatch_unknown(session: Session, job_id: str) -> None:
    """The batch was sent but no answer reached us: the job stays `processing` and waits for results until its
    deadline, like an accepted one. Nothing is ever re-sent."""
    session.execute(
        update(RobotJob)
        .where(col(RobotJob.id) == job_id, col(RobotJob.dispatch_state) == DispatchState.CLAIMED)
        .values(dispatch_state=DispatchState.UNKNOWN, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def mark_summary_published(session: Session, job_id: str, *, as_of: datetime) -> bool:
    """The summary artifacts now show the job as it was at `as_of` (the job's `updated_at` when it was read).

    Only forward: two publishers racing (two corrections of one job, in two webhook workers) must not move the mark
    back to the older state. True when `as_of` is still the job's latest change (nothing to publish again).
    """
    session.execute(
        update(RobotJob)
        .where(
            col(RobotJob.id) == job_id,
            col(RobotJob.summary_published_at).is_(None) | (col(RobotJob.summary_published_at) < as_of),
        )
        .values(summary_published_at=as_of)
        .execution_options(synchronize_session=False)
    )
    latest = session.execute(select(RobotJob.updated_at).where(col(RobotJob.id) == job_id)).scalar_one()
    return bool(latest <= as_of)


def jobs_with_stale_summary(session: Session, *, limit: int = 100) -> list[str]:
    """Finished jobs whose summary was never published, or was published before a late result corrected them."""
    return list(
        session.exec(
            select(RobotJob.id)
            .where(
                col(RobotJob.status).in_(FINISHED_JOB_STATUSES),
                (col(RobotJob.summary_published_at).is_(None))
                | (col(RobotJob.summary_published_at) < RobotJob.updated_at),
            )
            .order_by(col(RobotJob.updated_at))
            .limit(limit)
        )
    )


def pending_jobs_older_than(session: Session, seconds: float, *, now: datetime | None = None) -> list[str]:
    """Jobs still `pending` (their orchestration never started) created more than `seconds` ago."""
    cutoff = (now or utcnow()) - timedelta(seconds=seconds)
    return list(
        session.exec(select(RobotJob.id).where(RobotJob.status == JobStatus.PENDING, RobotJob.created_at < cutoff))
    )


def processing_jobs(session: Session) -> list[tuple[str, str | None]]:
    """(job id, flow run id) of every job waiting for results."""
    return [
        (job_id, run_id)
        for job_id, run_id in session.exec(
            select(RobotJob.id, RobotJob.flow_run_id).where(RobotJob.status == JobStatus.PROCESSING)
        )
    ]


def fail_unstarted_job(session: Session, job_id: str, *, now: datetime | None = None) -> bool:
    """A job still `pending` (never started, so never sent) is failed with NEVER_STARTED_MESSAGE; False otherwise.

    The row is locked while still `pending` (on SQLite the writer's BEGIN IMMEDIATE does the same), so a run that
    starts the job concurrently either waits and then finds it failed, or has started it and this is a no-op:
    a job being dispatched is never failed as "never sent".
    """
    unstarted = session.exec(
        select(RobotJob.id).where(RobotJob.id == job_id, RobotJob.status == JobStatus.PENDING).with_for_update()
    ).first()
    if unstarted is None:
        return False
    return fail_job(
        session,
        job_id,
        reason=NEVER_STARTED_MESSAGE,
        error_type=ErrorType.DISPATCH,
        error_message=NEVER_STARTED_MESSAGE,
        now=now,
    )


def fail_job(
    session: Session,
    job_id: str,
    *,
    reason: str,
    error_type: ErrorType | str,
    error_message: str,
    dispatch_refused: bool = False,
    unsent_only: bool = False,
    now: datetime | None = None,
) -> bool:
    """Close an active job by our own judgement: every pending item becomes an error (resolved by robotjobs).

    The job's status then follows the one rule for every terminal batch: `completed` if the robot created at least
    one order, else `failed` with `reason`. False if the job had already finished, or (`unsent_only`: a refusal
    before the dispatch claim) if a run has claimed its dispatch: that run may have sent it.
    """
    now = now or utcnow()
    values: dict[str, Any] = {
        **_outcome(otherwise_reason=reason[:1000]),
        "finished_at": now,
        "updated_at": now,
    }
    if dispatch_refused:
        values["dispatch_state"] = DispatchState.REFUSED
    # The job row is locked first, as record_results does, so the two can never deadlock.
    guard = [col(RobotJob.id) == job_id, col(RobotJob.status).in_(ACTIVE_JOB_STATUSES)]
    if unsent_only:
        guard.append(col(RobotJob.dispatch_state) == DispatchState.NOT_DISPATCHED)
    failed = session.execute(
        update(RobotJob)
        .where(*guard)
        .values(**values)
        .returning(col(RobotJob.id))
        .execution_options(synchronize_session=False)
    ).first()
    if failed is None:
        if session.get(RobotJob, job_id) is None:
            raise UnknownJob(f"Trabajo de robot desconocido: {job_id}", job_id=job_id)
        return False
    _close_pending_items(session, job_id, error_type=str(error_type), error_message=error_message, now=now)
    _emit_batch_completed(session, get_job(session, job_id))
    return True


def _close_pending_items(
    session: Session,
    job_id: str,
    *where: ColumnElement[bool],
    error_type: str,
    error_message: str,
    now: datetime,
) -> int:
    """Our own closure of a job's still-pending items (those `where` selects) as errors, and its error counter, under
    the job row's lock the caller holds: one guarded UPDATE (a robot result that landed first keeps its item).
    How many it closed."""
    closed = session.execute(
        update(RobotJobItem)
        .where(col(RobotJobItem.job_id) == job_id, col(RobotJobItem.status) == ItemStatus.PENDING, *where)
        .values(
            status=ItemStatus.ERROR,
            error_type=error_type,
            error_message=error_message[:1000],
            resolved_by=ResolvedBy.ROBOTJOBS,
            completed_at=now,
            updated_at=now,
        )
        .returning(col(RobotJobItem.id))
        .execution_options(synchronize_session=False)
    ).all()
    if closed:
        session.execute(
            update(RobotJob)
            .where(col(RobotJob.id) == job_id)
            .values(error_count=RobotJob.error_count + len(closed), updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return len(closed)


def finish_if_complete(session: Session, job_id: str, *, now: datetime | None = None) -> RobotJob | None:
    """processing → completed (≥ 1 success) | failed, once every item is terminal.

    Returns the job if it finished now."""
    now = now or utcnow()
    finished = session.execute(
        update(RobotJob)
        .where(
            col(RobotJob.id) == job_id,
            col(RobotJob.status).in_(ACTIVE_JOB_STATUSES),
            col(RobotJob.success_count) + col(RobotJob.error_count) >= col(RobotJob.total_items),
        )
        .values(
            **_outcome(),
            finished_at=now,
            updated_at=now,
        )
        .returning(col(RobotJob.id))
        .execution_options(synchronize_session=False)
    ).first()
    if finished is None:
        return None
    job = get_job(session, job_id)
    _emit_batch_completed(session, job)
    return job


def correct_finished_job(session: Session, job_id: str, *, now: datetime | None = None) -> bool:
    """A finished job whose items changed afterwards (a robot result beat our own closure): its status follows
    its counters again (`failed` → `completed` once a success exists) and `robot.batch.corrected` is written so
    the summary is republished. The caller holds the job's row lock."""
    now = now or utcnow()
    corrected = session.execute(
        update(RobotJob)
        .where(col(RobotJob.id) == job_id, col(RobotJob.status).in_(FINISHED_JOB_STATUSES))
        .values(
            **_outcome(otherwise_reason=RobotJob.failure_reason),
            updated_at=now,
        )
        .returning(col(RobotJob.id))
        .execution_options(synchronize_session=False)
    ).first()
    if corrected is None:
        return False
    _emit_batch_event(session, get_job(session, job_id), RobotBatchCorrected)
    return True


def withdraw_unsent_items(
    session: Session,
    order_ids: list[str],
    *,
    job_id: str,
    now: datetime | None = None,
    holders: list[str] | None = None,
) -> int:
    """Orders the robot just created (reported by job `job_id`) leave every other job that has not sent them yet.

    An item of a job whose dispatch is not claimed is closed as `withdrawn` (by robotjobs), so it is never sent.
    Those jobs' rows are locked first (`dispatch_state` still not dispatched), so a concurrent claim waits for this
    transaction and then builds its request from the remaining pending items. Already sent items cannot be
    withdrawn; a second success for the order is flagged as a possible duplicate where operators read the batch.
    """
    now = now or utcnow()
    # `holders`: the other jobs with a pending item of these orders, when the caller has already read them.
    holders = (
        holders
        if holders is not None
        else sorted(
            set(
                session.exec(
                    select(RobotJobItem.job_id).where(
                        col(RobotJobItem.order_id).in_(order_ids),
                        RobotJobItem.job_id != job_id,
                        RobotJobItem.status == ItemStatus.PENDING,
                    )
                )
            )
        )
    )
    withdrawn = 0
    for holder in holders:  # sorted: a fixed lock order among the other jobs
        unsent = session.exec(
            select(RobotJob.id)
            .where(
                RobotJob.id == holder,
                col(RobotJob.status).in_(ACTIVE_JOB_STATUSES),
                RobotJob.dispatch_state == DispatchState.NOT_DISPATCHED,
            )
            .with_for_update()
        ).first()
        if unsent is None:
            continue
        closed = _close_pending_items(
            session,
            holder,
            col(RobotJobItem.order_id).in_(order_ids),
            error_type=ErrorType.WITHDRAWN,
            error_message=WITHDRAWN_MESSAGE,
            now=now,
        )
        if not closed:
            continue
        withdrawn += closed
        finish_if_complete(session, holder, now=now)
    return withdrawn


@dataclass(frozen=True)
class JobCount:
    status: str
    finished_now: bool


def finish_or_count(
    session: Session, job_id: str, *, success_delta: int, error_delta: int, now: datetime | None = None
) -> JobCount:
    """Add result counts to an active job and, once every item is terminal, finish it (`finish_if_complete`'s rule),
    in one guarded UPDATE; `robot.batch.completed` is built from the row it returns. The caller holds the row lock."""
    row = session.execute(
        _finish_or_count_statement(),
        {"job_id": job_id, "success_delta": success_delta, "error_delta": error_delta,
         "counted": bool(success_delta or error_delta), "now": now or utcnow()},
    ).one()  # fmt: skip
    status, workspace_id, flow_run_id, success_count, error_count, total_items = row
    finished = status in FINISHED_JOB_STATUSES
    if finished:
        event = RobotBatchCompleted(job_id=job_id, flow_run_id=flow_run_id, status=status,
                                    success_count=success_count, error_count=error_count,
                                    total_items=total_items)  # fmt: skip
        outbox.add_event(session, event, workspace_id=workspace_id)
    return JobCount(status=status, finished_now=finished)


@functools.cache
def _finish_or_count_statement() -> Any:
    """`finish_or_count`'s UPDATE, built once: on the per-callback path, building and hashing this tree of CASEs per
    call cost more CPU (under the job's row lock) than the database's work (py-spy, benchmarks/webhook_bench.py)."""
    stamp = bindparam("now", type_=table_of(RobotJob).c.updated_at.type)
    success = RobotJob.success_count + bindparam("success_delta", type_=Integer)
    errors = RobotJob.error_count + bindparam("error_delta", type_=Integer)
    done = col(RobotJob.status).in_(ACTIVE_JOB_STATUSES) & (success + errors >= RobotJob.total_items)
    outcome = _outcome(success)
    return (
        update(RobotJob)
        .where(col(RobotJob.id) == bindparam("job_id"))
        .values(
            status=case((done, outcome["status"]), else_=RobotJob.status),
            failure_reason=case((done, outcome["failure_reason"]), else_=RobotJob.failure_reason),
            finished_at=case((done, stamp), else_=RobotJob.finished_at),
            updated_at=case((done, stamp), (bindparam("counted", type_=Boolean), stamp), else_=RobotJob.updated_at),
            success_count=success,
            error_count=errors,
        )
        .returning(
            col(RobotJob.status),
            col(RobotJob.workspace_id),
            col(RobotJob.flow_run_id),
            col(RobotJob.success_count),
            col(RobotJob.error_count),
            col(RobotJob.total_items),
        )
        .execution_options(synchronize_session=False)
    )


def _outcome(success: Any = None, *, otherwise_reason: Any = ALL_FAILED_REASON) -> dict[str, Any]:
    """The one rule for a terminal batch, as SQL: `completed` (no failure reason) once the robot created at least
    one order (`success`: the success count expression, the row's by default), else `failed` with `otherwise_reason`."""
    created: ColumnElement[bool] = (col(RobotJob.success_count) if success is None else success) > 0
    return {
        "status": case((created, JobStatus.COMPLETED.value), else_=JobStatus.FAILED.value),
        "failure_reason": case((created, None), else_=otherwise_reason),
    }


def _emit_batch_completed(session: Session, job: RobotJob) -> None:
    _emit_batch_event(session, job, RobotBatchCompleted)


def _emit_batch_event(
    session: Session, job: RobotJob, kind: type[RobotBatchCompleted] | type[RobotBatchCorrected]
) -> None:
    event = kind(job_id=job.id, flow_run_id=job.flow_run_id, status=job.status, success_count=job.success_count,
                 error_count=job.error_count, total_items=job.total_items)  # fmt: skip
    outbox.add_event(session, event, workspace_id=job.workspace_id)


# --- retry ------------------------------------------------------------------------------------------------------


def retry_failed_items(
    session: Session, job_id: str, *, idempotency_key: str | None = None, flow_run_id: str | None = None
) -> JobCreated:
    """A new job holding only the failed orders of a finished job, linked to it. Retrying twice gives one job."""
    job = get_job(session, job_id)
    key = idempotency_key or f"retry:{job_id}"
    # A second click returns the retry job already made, even once that one has shipped the orders.
    existing = _job_by_key(session, job.workspace_id, key)
    if existing is not None:
        return JobCreated(job=existing, created=False, rejected=_rejected_of(session, existing.id))
    if job.status not in FINISHED_JOB_STATUSES:
        raise JobNotRetryable("Solo se reintentan lotes terminados", job_id=job_id, status=job.status)
    failed_orders = list(
        session.exec(
            select(Order.id)
            .join(RobotJobItem, col(RobotJobItem.order_id) == col(Order.id))
            .where(RobotJobItem.job_id == job_id, RobotJobItem.status == ItemStatus.ERROR, _dispatchable())
            .order_by(col(RobotJobItem.created_at))
        )
    )
    if not failed_orders:
        raise JobNotRetryable("El lote no tiene pedidos fallidos por reintentar", job_id=job_id)
    return create_robot_job(
        session,
        workspace_id=job.workspace_id,
        order_ids=failed_orders,
        idempotency_key=key,
        retry_of_job_id=job_id,
        carrier=job.carrier,
        flow_run_id=flow_run_id,
    )
