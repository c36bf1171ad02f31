"""One outbox consumer loop for every consumer: claim a batch under a lease, deliver each event through a handler,
mark it delivered or failed only while this worker still holds its lease.

Imports no Prefect (only domain/), so the automation runner uses it as the resume relay does. A consumer whose lease
expired while it worked (another one claimed the event since) does not mark: the guarded UPDATE changes no row, the
loss is logged, and the event belongs to its new holder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from domain import outbox
from domain.db import UnitOfWork
from domain.models import OutboxEvent

log = logging.getLogger("relay.outbox_consumer")


@dataclass(frozen=True)
class Delivery:
    """What a handler did with one event: delivered, or to be retried after `retry_in_seconds` with `error`."""

    delivered: bool
    error: str = ""
    retry_in_seconds: float = 0.0

    @classmethod
    def done(cls) -> Delivery:
        return cls(delivered=True)

    @classmethod
    def retry(cls, error: str, retry_in_seconds: float) -> Delivery:
        return cls(delivered=False, error=error, retry_in_seconds=retry_in_seconds)


Handler = Callable[[OutboxEvent], Delivery]


def backoff_s(attempts: int) -> float:
    """5 s doubling per attempt, at most 5 minutes."""
    return min(300, 5 * 2 ** min(attempts, 6))


@dataclass
class ConsumeStats:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0  # marked failed: due again later
    skipped: int = 0  # the lease was gone before delivery: left to its new holder
    lease_lost: int = 0  # delivered or failed, but the lease was gone when marking: not marked


@dataclass
class OutboxConsumer:
    """Consumer `consumer` of the outbox, as worker `worker_id` (the lease owner written on each claimed event)."""

    engine: Engine
    consumer: str
    worker_id: str
    lease_seconds: int = 60
    # Check the lease before each event (a slow batch may outlive it); for handlers whose delivery is costly.
    check_lease: bool = False

    def claim(self, limit: int) -> list[OutboxEvent]:
        """Lease up to `limit` due events to this worker, in their own committed transaction (detached rows)."""
        with UnitOfWork(self.engine) as uow:
            events = outbox.claim_events(
                uow.session,
                consumer=self.consumer,
                worker_id=self.worker_id,
                limit=limit,
                lease_seconds=self.lease_seconds,
            )
            uow.commit()
        return events

    def deliver(self, events: list[OutboxEvent], handler: Handler) -> ConsumeStats:
        """Deliver each claimed event through `handler` and mark it; an exception is a retry with backoff."""
        stats = ConsumeStats(claimed=len(events))
        for event in events:
            if self.check_lease and not self._holds_lease(event.event_id):
                stats.skipped += 1  # another worker took it after our lease expired: leave it to them
                continue
            try:
                delivery = handler(event)
            except Exception as exc:  # a bug or the database: the event comes back later, nothing is lost
                log.exception("%s event %s (%s) failed; will retry", self.consumer, event.event_id, event.event_type)
                delivery = Delivery.retry(f"{type(exc).__name__}: {exc}", backoff_s(event.attempts))
            if not self._mark(event.event_id, delivery):
                stats.lease_lost += 1
                log.warning(
                    "%s event %s (%s): lease of %s lost before marking it %s; left to its holder",
                    self.consumer,
                    event.event_id,
                    event.event_type,
                    self.worker_id,
                    "delivered" if delivery.delivered else "failed",
                )
            elif delivery.delivered:
                stats.delivered += 1
            else:
                stats.failed += 1
        return stats

    def run_batch(self, handler: Handler, *, limit: int) -> ConsumeStats:
        """Claim up to `limit` events and deliver them."""
        return self.deliver(self.claim(limit), handler)

    def _holds_lease(self, event_id: str) -> bool:
        with UnitOfWork(self.engine, readonly=True) as uow:
            return outbox.holds_lease(uow.session, event_id, self.worker_id)

    def _mark(self, event_id: str, delivery: Delivery) -> bool:
        """Mark in its own transaction, guarded on this worker's lease; False when the lease was lost."""
        with UnitOfWork(self.engine) as uow:
            if delivery.delivered:
                marked = outbox.mark_delivered(uow.session, event_id, worker_id=self.worker_id)
            else:
                marked = outbox.mark_failed(
                    uow.session,
                    event_id,
                    error=delivery.error,
                    retry_in_seconds=delivery.retry_in_seconds,
                    worker_id=self.worker_id,
                )
            uow.commit()
        return marked
