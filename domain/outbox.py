"""The outbox: domain events written in the caller's transaction, then claimed and delivered by their consumer.

Delivery is at-least-once: a consumer claims events under a lease (`locked_until`), delivers, then marks them
delivered; a crashed consumer's lease expires and another one takes the events again. On PostgreSQL concurrent
consumers skip each other's rows (`FOR UPDATE SKIP LOCKED`); on SQLite `BEGIN IMMEDIATE` serialises the claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnElement, CursorResult, Result, or_, update
from sqlmodel import Session, col, select

from domain import events
from domain.db import bulk_insert
from domain.events import DomainEvent
from domain.models import OutboxEvent, new_ids, table_of, utcnow

# The consumers' names, where their claims read them (`outbox.RESUME`); the events and their types: domain.events.
AUTOMATIONS = events.AUTOMATIONS
RESUME = events.RESUME


class NewEvent(NamedTuple):
    """An event to write with `add_events`: the event, its workspace, and the automation cascade depth of its cause."""

    workspace_id: str
    event: DomainEvent
    depth: int = 0


def add_event(session: Session, event: DomainEvent, *, workspace_id: str, depth: int = 0) -> OutboxEvent:
    """Write an event in the caller's transaction: it exists if and only if the change that caused it commits."""
    row = OutboxEvent(
        event_type=event.event_type,
        consumer=event.consumer,
        workspace_id=workspace_id,
        aggregate_id=event.aggregate_id,
        payload=event.to_payload(),
        depth=depth,
    )
    session.add(row)
    session.flush()
    return row


def claim_events(
    session: Session,
    *,
    consumer: str,
    worker_id: str,
    limit: int = 50,
    lease_seconds: int = 60,
    now: datetime | None = None,
) -> list[OutboxEvent]:
    """Lease up to `limit` due, undelivered events of `consumer` to `worker_id`, oldest first."""
    now = now or utcnow()
    due = (
        select(OutboxEvent.id)
        .where(
            OutboxEvent.consumer == consumer,
            col(OutboxEvent.delivered_at).is_(None),
            col(OutboxEvent.available_at) <= now,
            or_(col(OutboxEvent.locked_until).is_(None), col(OutboxEvent.locked_until) < now),
        )
        .order_by(col(OutboxEvent.id))
        .limit(limit)
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL only
    )
    claimed = session.scalars(
        update(OutboxEvent)
        .where(col(OutboxEvent.id).in_(due.scalar_subquery()))
        .values(
            locked_by=worker_id,
            locked_until=now + timedelta(seconds=lease_seconds),
            attempts=OutboxEvent.attempts + 1,
        )
        .returning(OutboxEvent)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(claimed, key=lambda event: event.id or 0)


def holds_lease(session: Session, event_id: str, worker_id: str, *, now: datetime | None = None) -> bool:
    """True while `worker_id` holds an unexpired lease on the undelivered event."""
    held = session.execute(
        select(col(OutboxEvent.id)).where(
            *_undelivered_held_by(event_id, worker_id), col(OutboxEvent.locked_until) > (now or utcnow())
        )
    ).first()
    return held is not None


def _undelivered_held_by(event_id: str, worker_id: str | None) -> list[ColumnElement[bool]]:
    """The guard of a mark: the event is undelivered and, given `worker_id`, its lease is still that worker's."""
    guard = [col(OutboxEvent.event_id) == event_id, col(OutboxEvent.delivered_at).is_(None)]
    if worker_id is not None:
        guard.append(col(OutboxEvent.locked_by) == worker_id)
    return guard


def _rowcount(result: Result[Any]) -> int:
    # An UPDATE's result is a CursorResult (it has rowcount); Session.execute is typed for any statement.
    return cast(CursorResult[Any], result).rowcount


def mark_delivered(
    session: Session, event_id: str, *, worker_id: str | None = None, now: datetime | None = None
) -> bool:
    """Mark the event delivered; True if this call did. Given `worker_id`, only while that worker holds the lease
    (a consumer whose lease expired and was taken by another must not settle the other's event)."""
    result = session.execute(
        update(OutboxEvent)
        .where(*_undelivered_held_by(event_id, worker_id))
        .values(delivered_at=now or utcnow(), locked_by=None, locked_until=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def mark_failed(
    session: Session,
    event_id: str,
    *,
    error: str,
    retry_in_seconds: float,
    worker_id: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Release the lease and make the event due again after `retry_in_seconds`; True if this call did. Given
    `worker_id`, only while that worker holds the lease (see `mark_delivered`)."""
    now = now or utcnow()
    result = session.execute(
        update(OutboxEvent)
        .where(*_undelivered_held_by(event_id, worker_id))
        .values(
            available_at=now + timedelta(seconds=retry_in_seconds),
            locked_by=None,
            locked_until=None,
            last_error=error[:2000],
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def undelivered(session: Session, *, consumer: str | None = None, event_type: str | None = None) -> list[OutboxEvent]:
    query = select(OutboxEvent).where(col(OutboxEvent.delivered_at).is_(None))
    if consumer:
        query = query.where(OutboxEvent.consumer == consumer)
    if event_type:
        query = query.where(OutboxEvent.event_type == event_type)
    return list(session.exec(query.order_by(col(OutboxEvent.id))))


def events_of(session: Session, *, event_type: str, aggregate_id: str | None = None) -> list[OutboxEvent]:
    query = select(OutboxEvent).where(OutboxEvent.event_type == event_type)
    if aggregate_id:
        query = query.where(OutboxEvent.aggregate_id == aggregate_id)
    return list(session.exec(query.order_by(col(OutboxEvent.id))))


def add_events(session: Session, new_events: Sequence[NewEvent]) -> None:
    """Write many events in the caller's transaction with one multi-row INSERT."""
    if not new_events:
        return
    now = utcnow()
    event_ids = new_ids(len(new_events))
    bulk_insert(
        session,
        table_of(OutboxEvent),
        [
            {
                "event_id": event_id,
                "event_type": event.event_type,
                "consumer": event.consumer,
                "workspace_id": workspace_id,
                "aggregate_id": event.aggregate_id,
                "payload": event.to_payload(),
                "depth": depth,
                "created_at": now,
                "available_at": now,
                "attempts": 0,
            }
            for event_id, (workspace_id, event, depth) in zip(event_ids, new_events, strict=True)
        ],
    )
