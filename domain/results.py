"""Recording the robot's results: the first terminal result of an item wins; later ones change nothing.

One code path serves the per-order callback and the batch report, set-based so a 1,000-item batch costs a handful
of statements. Lock order is always job row, then items, then orders (as in `fail_job`), so writers never deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import bindparam, update
from sqlmodel import Session, col, select

from domain import outbox
from domain.errors import InvalidResult, ItemNotInJob, UnknownItem, UnknownJob
from domain.jobs import finish_if_complete, get_job
from domain.models import COORDINADORA, Contact, ErrorType, ItemStatus, Order, RobotJob, RobotJobItem, utcnow
from domain.orders import event_context, update_orders

ROBOT_ERROR_TYPES = (ErrorType.VALIDATION, ErrorType.PORTAL, ErrorType.TIMEOUT, ErrorType.UNKNOWN)


class ItemResult(BaseModel):
    """One order's result as the robot reports it."""

    item_id: str = Field(min_length=1, max_length=64, description="The robot_job_items id we sent as itemId")
    status: Literal["success", "error"] = Field(description="success or error")
    tracking_number: str | None = Field(default=None, max_length=100, description="Courier pedido number on success")
    error_type: Literal["validation", "portal", "timeout", "unknown"] | None = Field(
        default=None, description="Kind of error: validation, portal, timeout or unknown"
    )
    error_message: str | None = Field(default=None, max_length=1000, description="Spanish message for operators")

    @model_validator(mode="after")
    def _success_has_tracking(self) -> "ItemResult":
        if self.status == "success" and not (self.tracking_number or "").strip():
            raise ValueError("trackingNumber is required when status is success")
        return self


@dataclass(frozen=True)
class ItemAuth:
    """What the webhook needs to authenticate a per-order callback, which names only the item."""

    item_id: str
    job_id: str
    workspace_id: str
    callback_secret_hash: str | None


@dataclass(frozen=True)
class RecordOutcome:
    item_id: str
    job_id: str
    changed: bool
    item_status: str
    job_finished: bool
    job_status: str


@dataclass(frozen=True)
class BatchOutcome:
    job_id: str
    outcomes: list[RecordOutcome]
    job_finished: bool
    job_status: str

    @property
    def changed_count(self) -> int:
        return sum(1 for o in self.outcomes if o.changed)


def get_item_auth(session: Session, item_id: str) -> ItemAuth:
    row = session.exec(
        select(RobotJobItem.id, RobotJob.id, RobotJob.workspace_id, RobotJob.callback_secret_hash)
        .join(RobotJob, RobotJob.id == RobotJobItem.job_id)
        .where(RobotJobItem.id == item_id)
    ).first()
    if row is None:
        raise UnknownItem("Ítem desconocido", item_id=item_id)
    return ItemAuth(item_id=row[0], job_id=row[1], workspace_id=row[2], callback_secret_hash=row[3])


def record_item_result(
    session: Session, result: ItemResult, *, job_id: str | None = None, now: datetime | None = None
) -> RecordOutcome:
    """Record one callback. With `job_id` (the job the caller authenticated for) the item must belong to it."""
    owner = session.exec(select(RobotJobItem.job_id).where(RobotJobItem.id == result.item_id)).first()
    if owner is None:
        raise UnknownItem("Ítem desconocido", item_id=result.item_id)
    if job_id is not None and owner != job_id:
        raise ItemNotInJob("El ítem no pertenece a este trabajo", item_id=result.item_id, job_id=job_id)
    return record_batch_results(session, owner, [result], now=now).outcomes[0]


def record_batch_results(
    session: Session, job_id: str, results: list[ItemResult], *, now: datetime | None = None
) -> BatchOutcome:
    """Record many results of one job in one transaction; a result for another job's item refuses the whole batch."""
    now = now or utcnow()
    _lock_job(session, job_id)
    ids = list(dict.fromkeys(r.item_id for r in results))
    items = {i.id: i for i in session.exec(select(RobotJobItem).where(col(RobotJobItem.id).in_(ids)))}
    strangers = [item_id for item_id in ids if item_id not in items or items[item_id].job_id != job_id]
    if strangers:
        raise ItemNotInJob("Hay ítems que no pertenecen a este trabajo", item_ids=strangers, job_id=job_id)

    # First result per item wins, inside the batch as across requests.
    winners: dict[str, ItemResult] = {}
    for result in results:
        if items[result.item_id].status == ItemStatus.PENDING:
            winners.setdefault(result.item_id, result)
    for result in winners.values():
        _check(result)
    if winners:
        _write_items(session, list(winners.values()), now)
        successes = [r for r in winners.values() if r.status == ItemStatus.SUCCESS]
        session.execute(
            update(RobotJob)
            .where(RobotJob.id == job_id)
            .values(
                success_count=RobotJob.success_count + len(successes),
                error_count=RobotJob.error_count + (len(winners) - len(successes)),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if successes:
            _ship_orders(session, job_id, [(items[r.item_id], r) for r in successes])
    finished = finish_if_complete(session, job_id, now=now) if winners else None
    job = get_job(session, job_id)
    final_status = {i.id: i.status for i in items.values()}
    final_status.update({item_id: r.status for item_id, r in winners.items()})
    outcomes, seen = [], set()
    for result in results:
        changed = result.item_id in winners and result.item_id not in seen
        seen.add(result.item_id)
        outcomes.append(
            RecordOutcome(
                item_id=result.item_id,
                job_id=job_id,
                changed=changed,
                item_status=final_status[result.item_id],
                job_finished=finished is not None,
                job_status=job.status,
            )
        )
    return BatchOutcome(job_id=job_id, outcomes=outcomes, job_finished=finished is not None, job_status=job.status)


def _lock_job(session: Session, job_id: str) -> None:
    # FOR UPDATE on PostgreSQL; on SQLite BEGIN IMMEDIATE already holds the write lock.
    if session.exec(select(RobotJob.id).where(RobotJob.id == job_id).with_for_update()).first() is None:
        raise UnknownJob(f"Trabajo de robot desconocido: {job_id}", job_id=job_id)


def _check(result: ItemResult) -> None:
    if result.status == ItemStatus.SUCCESS and not (result.tracking_number or "").strip():
        raise InvalidResult("Un resultado exitoso necesita el número de guía", field="trackingNumber")


def _write_items(session: Session, winners: list[ItemResult], now: datetime) -> None:
    table = RobotJobItem.__table__
    statement = (
        table.update()
        .where(table.c.id == bindparam("b_id"), table.c.status == ItemStatus.PENDING.value)
        .values(
            status=bindparam("b_status"),
            tracking_number=bindparam("b_tracking"),
            error_type=bindparam("b_error_type"),
            error_message=bindparam("b_error_message"),
            completed_at=now,
            updated_at=now,
        )
    )
    # executemany: psycopg pipelines it, so a 1,000-item batch is not 1,000 round trips.
    session.connection().execute(
        statement,
        [
            {
                "b_id": r.item_id,
                "b_status": r.status,
                "b_tracking": r.tracking_number.strip() if r.status == ItemStatus.SUCCESS else None,
                "b_error_type": None if r.status == ItemStatus.SUCCESS else (r.error_type or ErrorType.UNKNOWN.value),
                "b_error_message": None if r.status == ItemStatus.SUCCESS else r.error_message,
            }
            for r in winners
        ],
    )


def _ship_orders(session: Session, job_id: str, shipped: list[tuple[RobotJobItem, ItemResult]]) -> None:
    """Tracking number and carrier through the order-update path, then one robot.coord.completed per order."""
    update_orders(
        session,
        {item.order_id: {"tracking_number": r.tracking_number.strip(), "carrier": COORDINADORA} for item, r in shipped},
    )
    order_ids = [item.order_id for item, _ in shipped]
    orders = {o.id: o for o in session.exec(select(Order).where(col(Order.id).in_(order_ids)))}
    contact_ids = {o.contact_id for o in orders.values() if o.contact_id}
    contacts = {c.id: c for c in session.exec(select(Contact).where(col(Contact.id).in_(contact_ids)))}
    for item, _ in shipped:
        order = orders[item.order_id]
        outbox.add_event(
            session,
            event_type=outbox.ROBOT_COORD_COMPLETED,
            workspace_id=order.workspace_id,
            aggregate_id=order.id,
            payload={"job_id": job_id, "item_id": item.id, **event_context(order, contacts.get(order.contact_id or ""))},
            flush=False,
        )
    session.flush()
