"""The outbox consumer marks an event only while its worker holds the lease (both databases).

A consumer whose lease expired while it delivered (another one has claimed the event since) must not settle the
other's event: its guarded UPDATE changes no row, and the event stays with its new holder.
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from domain import outbox
from domain.events import OrderCreated
from domain.models import OutboxEvent, utcnow
from relay.outbox_consumer import Delivery, OutboxConsumer


def _add_event(uow, aggregate_id: str = "order-1") -> str:
    with uow() as tx:
        event = outbox.add_event(tx.session, OrderCreated(order={"id": aggregate_id}, contact={}), workspace_id="ws-1")
        tx.commit()
        return event.event_id


def _row(uow, event_id: str) -> OutboxEvent:
    with uow(readonly=True) as tx:
        return tx.session.exec(select(OutboxEvent).where(OutboxEvent.event_id == event_id)).one()


def _claim_after_expiry(uow, worker_id: str, lease_seconds: int) -> list[OutboxEvent]:
    """Another worker claims as if the first lease had run out (the clock moved past it)."""
    with uow() as tx:
        taken = outbox.claim_events(
            tx.session,
            consumer=outbox.AUTOMATIONS,
            worker_id=worker_id,
            lease_seconds=60,
            now=utcnow() + timedelta(seconds=lease_seconds + 1),
        )
        tx.commit()
    return taken


def test_a_consumer_that_lost_its_lease_marks_nothing(engine, uow):
    event_id = _add_event(uow)
    first = OutboxConsumer(engine, outbox.AUTOMATIONS, "runner-a", lease_seconds=30)
    taken_by_b: list[OutboxEvent] = []

    def slow_handler(event: OutboxEvent) -> Delivery:
        # While A works, its lease runs out and B claims the event.
        taken_by_b.extend(_claim_after_expiry(uow, "runner-b", first.lease_seconds))
        return Delivery.done()

    stats = first.run_batch(slow_handler, limit=10)

    assert [e.event_id for e in taken_by_b] == [event_id]
    assert (stats.claimed, stats.delivered, stats.failed, stats.lease_lost) == (1, 0, 0, 1)
    row = _row(uow, event_id)
    assert row.delivered_at is None  # A's "delivered" changed nothing
    assert row.locked_by == "runner-b"  # the event is still B's
    assert row.attempts == 2


def test_a_failure_after_the_lease_was_lost_marks_nothing(engine, uow):
    event_id = _add_event(uow)
    first = OutboxConsumer(engine, outbox.AUTOMATIONS, "runner-a", lease_seconds=30)

    def failing_handler(event: OutboxEvent) -> Delivery:
        _claim_after_expiry(uow, "runner-b", first.lease_seconds)
        raise RuntimeError("boom")

    stats = first.run_batch(failing_handler, limit=10)

    assert (stats.failed, stats.lease_lost) == (0, 1)
    row = _row(uow, event_id)
    assert row.locked_by == "runner-b"
    assert row.last_error is None  # A's failure did not release B's lease nor reschedule the event


def test_the_holder_marks_and_the_former_holder_cannot(engine, uow):
    event_id = _add_event(uow)
    with uow() as tx:
        outbox.claim_events(tx.session, consumer=outbox.AUTOMATIONS, worker_id="runner-a", lease_seconds=30)
        tx.commit()
    _claim_after_expiry(uow, "runner-b", 30)
    with uow() as tx:
        assert not outbox.holds_lease(tx.session, event_id, "runner-a")
        assert outbox.mark_failed(tx.session, event_id, error="x", retry_in_seconds=1, worker_id="runner-a") is False
        assert outbox.mark_delivered(tx.session, event_id, worker_id="runner-a") is False
        assert outbox.mark_delivered(tx.session, event_id, worker_id="runner-b") is True
        tx.commit()
    assert _row(uow, event_id).delivered_at is not None


def test_a_lease_checking_consumer_skips_events_taken_by_another(engine, uow):
    event_ids = [_add_event(uow, "order-1"), _add_event(uow, "order-2")]
    first = OutboxConsumer(engine, outbox.AUTOMATIONS, "runner-a", lease_seconds=30, check_lease=True)
    handled: list[str] = []

    def handler(event: OutboxEvent) -> Delivery:
        handled.append(event.event_id)
        _claim_after_expiry(uow, "runner-b", first.lease_seconds)  # A's lease ran out: B takes both events
        return Delivery.done()

    stats = first.run_batch(handler, limit=10)

    assert handled == event_ids[:1]  # the second is not delivered by A at all
    assert (stats.claimed, stats.delivered, stats.lease_lost, stats.skipped) == (2, 0, 1, 1)
    for event_id in event_ids:
        row = _row(uow, event_id)
        assert (row.delivered_at, row.locked_by) == (None, "runner-b")


def test_a_holder_marks_delivered_and_failed(engine, uow):
    delivered_id, failed_id = _add_event(uow, "order-1"), _add_event(uow, "order-2")
    consumer = OutboxConsumer(engine, outbox.AUTOMATIONS, "runner-a", lease_seconds=30)

    stats = consumer.run_batch(
        lambda event: Delivery.done() if event.event_id == delivered_id else Delivery.retry("later", 60), limit=10
    )

    assert (stats.claimed, stats.delivered, stats.failed, stats.lease_lost) == (2, 1, 1, 0)
    assert _row(uow, delivered_id).delivered_at is not None
    failed = _row(uow, failed_id)
    assert (failed.delivered_at, failed.locked_by, failed.last_error) == (None, None, "later")
