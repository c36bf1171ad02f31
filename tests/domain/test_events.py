"""Domain events: each one written by its real code path is stored with exactly the payload it had before the typed
events (same keys in the same order, same values, same JSON types: users' automations read them), and reads back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import col, select

from domain import events, outbox
from domain.batches.jobs import TIMEOUT_MESSAGE, fail_job, get_job
from domain.batches.results import ItemResult, record_batch_results, record_item_result
from domain.db import json_text
from domain.models import Contact, ErrorType, Order, OutboxEvent, RobotJob, RobotJobItem, new_ids
from domain.orders.changes import create_order, move_order_to_stage, update_order
from tests.domain.results_helpers import ok

# --- the payloads as the code wrote them before domain/events.py (copied from it, on purpose) ------------------------


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _legacy_context(order: Order, contact: Contact | None) -> dict[str, Any]:
    return {
        "order": {
            "id": order.id,
            "name": order.name,
            "total_value": _jsonable(order.total_value),
            "tracking_number": order.tracking_number,
            "carrier": order.carrier,
            "shipping_address": order.shipping_address,
            "shipping_city": order.shipping_city,
            "shipping_department": order.shipping_department,
            "pipeline_id": order.pipeline_id,
            "stage_id": order.stage_id,
            "tags": list(order.tags or []),
            "custom_fields": dict(order.custom_fields or {}),
        },
        "contact": {
            "id": contact.id if contact else None,
            "name": contact.name if contact else None,
            "phone": contact.phone if contact else None,
            "email": contact.email if contact else None,
        },
    }


def _context_of(session, order_id: str) -> dict[str, Any]:
    order = session.get(Order, order_id)
    return _legacy_context(order, session.get(Contact, order.contact_id) if order.contact_id else None)


def _legacy_batch(job: RobotJob) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "flow_run_id": job.flow_run_id,
        "status": job.status,
        "success_count": job.success_count,
        "error_count": job.error_count,
        "total_items": job.total_items,
    }


def _same_json(stored: dict[str, Any], legacy: dict[str, Any]) -> None:
    # json.dumps keeps key order and tells "1" from 1 and None from "": the stored text is the contract.
    assert json.dumps(stored, ensure_ascii=False) == json.dumps(legacy, ensure_ascii=False)


def _rows(uow, event_type: str) -> list[OutboxEvent]:
    with uow(readonly=True) as tx:  # a fresh session: the payload as the database returns it
        return list(tx.session.exec(select(OutboxEvent).where(OutboxEvent.event_type == event_type)
                                    .order_by(col(OutboxEvent.id))))  # fmt: skip


def _reads_back(row: OutboxEvent) -> None:
    """The round trip: the stored row parses to its typed event, which writes the same payload again."""
    event = events.parse(row.event_type, row.payload)
    assert type(event).event_type == row.event_type and event.consumer == row.consumer
    assert event.aggregate_id == row.aggregate_id
    _same_json(event.to_payload(), row.payload)


# --- each event from the code path that writes it ----------------------------------------------------------------


def test_a_robot_success_writes_field_changed_and_coord_completed_as_before(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow(readonly=True) as tx:
        order_id = tx.session.get(RobotJobItem, items[0]).order_id
        before = tx.session.get(Order, order_id)
        old_tracking, old_carrier = before.tracking_number, before.carrier
    with uow() as tx:
        record_item_result(tx.session, ok(items[0], "10107"))
        tx.commit()
    with uow(readonly=True) as tx:
        context = _context_of(tx.session, order_id)
    changed = _rows(uow, events.FIELD_CHANGED)
    values = {"tracking_number": (old_tracking, "10107"), "carrier": (old_carrier, "COORDINADORA")}
    assert sorted(row.payload["field"] for row in changed) == sorted(values)
    for row in changed:
        old, new = values[row.payload["field"]]
        _same_json(row.payload, {"field": row.payload["field"], "old_value": old, "new_value": new, **context})
        assert (row.aggregate_id, row.consumer, row.depth) == (order_id, "automations", 0)
        _reads_back(row)
    [completed] = _rows(uow, events.ROBOT_COORD_COMPLETED)
    order = {**context["order"], "tracking_number": "10107"}
    _same_json(
        completed.payload, {"job_id": job_id, "item_id": items[0], "order": order, "contact": context["contact"]}
    )
    assert (completed.aggregate_id, completed.consumer) == (order_id, "automations")
    _reads_back(completed)


def test_a_batch_report_writes_coord_completed_and_batch_completed_as_before(uow, dispatched_job):
    job_id, items = dispatched_job()
    results = [ok(item_id, f"76{n:08d}") for n, item_id in enumerate(items[:-1])]
    results.append(ItemResult(item_id=items[-1], status="error", error_type="unknown", error_message="no"))
    with uow() as tx:
        record_batch_results(tx.session, job_id, results)
        tx.commit()
    with uow(readonly=True) as tx:
        legacy = []
        for result in results[:-1]:
            order_id = tx.session.get(RobotJobItem, result.item_id).order_id
            context = _context_of(tx.session, order_id)
            order = {**context["order"], "tracking_number": result.tracking_number}
            legacy.append({"job_id": job_id, "item_id": result.item_id, "order": order, "contact": context["contact"]})
        job = get_job(tx.session, job_id)
        batch = _legacy_batch(job)
    completed = _rows(uow, events.ROBOT_COORD_COMPLETED)
    assert sorted(row.payload["item_id"] for row in completed) == sorted(p["item_id"] for p in legacy)
    by_item = {row.payload["item_id"]: row for row in completed}
    for payload in legacy:
        _same_json(by_item[payload["item_id"]].payload, payload)
        _reads_back(by_item[payload["item_id"]])
    [finished] = _rows(uow, events.BATCH_COMPLETED)
    assert batch["status"] == "completed" and batch["flow_run_id"] == "flow-run-1"
    _same_json(finished.payload, batch)
    assert (finished.aggregate_id, finished.consumer) == (job_id, "resume")
    _reads_back(finished)


def test_a_closed_job_and_its_correction_write_batch_events_as_before(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        fail_job(tx.session, job_id, reason=TIMEOUT_MESSAGE, error_type=ErrorType.TIMEOUT, error_message="m")
        tx.commit()
    with uow(readonly=True) as tx:
        closed = _legacy_batch(get_job(tx.session, job_id))
    with uow() as tx:
        record_item_result(tx.session, ok(items[0], "10107"))  # a late success beats our timeout
        tx.commit()
    with uow(readonly=True) as tx:
        corrected = _legacy_batch(get_job(tx.session, job_id))
    [finished] = _rows(uow, events.BATCH_COMPLETED)
    assert closed["status"] == "failed" and closed["success_count"] == 0
    _same_json(finished.payload, closed)
    _reads_back(finished)
    [correction] = _rows(uow, events.BATCH_CORRECTED)
    assert corrected["status"] == "completed" and corrected["success_count"] == 1
    _same_json(correction.payload, corrected)
    assert (correction.aggregate_id, correction.consumer) == (job_id, "resume")
    _reads_back(correction)


def test_order_changes_write_their_events_as_before(uow, demo):
    order_id = demo.order_ids[0]
    with uow(readonly=True) as tx:
        before = tx.session.get(Order, order_id)
        old_total, old_stage = before.total_value, before.stage_id
    with uow() as tx:
        update_order(tx.session, order_id, changes={"total_value": "150000.50", "custom_fields.color": "rojo"}, depth=2)
        tx.commit()
    with uow(readonly=True) as tx:
        context = _context_of(tx.session, order_id)
    changed = _rows(uow, events.FIELD_CHANGED)
    _same_json(changed[0].payload, {"field": "total_value", "old_value": str(old_total), "new_value": "150000.50",
                                    **context})  # fmt: skip
    _same_json(changed[1].payload, {"field": "custom_fields.color", "old_value": None, "new_value": "rojo", **context})
    assert [row.depth for row in changed] == [2, 2]
    for row in changed:
        _reads_back(row)

    to_stage = next(stage_id for stage_id in demo.stage_ids.values() if stage_id != old_stage)
    with uow() as tx:
        assert move_order_to_stage(tx.session, order_id, stage_id=to_stage, depth=1)
        tx.commit()
    with uow(readonly=True) as tx:
        context = _context_of(tx.session, order_id)
    [moved] = _rows(uow, events.ORDER_STAGE_CHANGED)
    _same_json(moved.payload, {"pipeline_id": demo.pipeline_id, "from_stage_id": old_stage, "to_stage_id": to_stage,
                               **context})  # fmt: skip
    assert (moved.aggregate_id, moved.consumer, moved.depth) == (order_id, "automations", 1)
    _reads_back(moved)


def test_order_created_is_written_as_before_with_and_without_a_contact(uow, demo):
    with uow() as tx:
        contact = Contact(workspace_id=demo.workspace_id, name="Elena Beltrán", phone="3133477968", email=None)
        tx.session.add(contact)
        tx.session.flush()
        ids = []
        for contact_id in (contact.id, None):
            order = Order(workspace_id=demo.workspace_id, contact_id=contact_id, pipeline_id=demo.pipeline_id,
                          stage_id=demo.dispatch_stage_id, name="Pedido 1042", total_value=Decimal("139900.00"),
                          shipping_city="MANIZALES", tags=["VIP"], custom_fields={"color": "rojo"})  # fmt: skip
            ids.append(create_order(tx.session, order).id)
        tx.commit()
    with uow(readonly=True) as tx:
        legacy = [_context_of(tx.session, order_id) for order_id in ids]
    created = _rows(uow, events.ORDER_CREATED)
    assert [row.aggregate_id for row in created] == ids
    for row, payload in zip(created, legacy, strict=True):
        _same_json(row.payload, payload)
        _reads_back(row)
    assert created[1].payload["contact"] == {"id": None, "name": None, "phone": None, "email": None}
    assert created[0].payload["order"]["total_value"] == "139900.00"


# --- the typed events themselves ----------------------------------------------------------------------------------

ORDER: events.OrderFields = {
    "id": "o-1",
    "name": "Pedido 10107",
    "total_value": "139900.00",
    "tracking_number": "10107",
    "carrier": "COORDINADORA",
    "shipping_address": "calle 49f",
    "shipping_city": "MANIZALES",
    "shipping_department": "CALDAS",
    "pipeline_id": "p",
    "stage_id": "s",
    "tags": ["VIP"],
    "custom_fields": {"color": "rojo"},
}
CONTACT: events.ContactFields = {"id": "c-1", "name": "Elena Beltrán", "phone": "3133477968", "email": None}
ONE_OF_EACH: list[events.DomainEvent] = [
    events.RobotCoordCompleted(job_id="j", item_id="i", order=ORDER, contact=CONTACT),
    events.FieldChanged(field="total_value", old_value="1.00", new_value="2.00", order=ORDER, contact=CONTACT),
    events.OrderStageChanged(pipeline_id="p", from_stage_id="s0", to_stage_id="s", order=ORDER, contact=CONTACT),
    events.OrderCreated(order=ORDER, contact=CONTACT),
    events.RobotBatchCompleted(
        job_id="j", flow_run_id=None, status="failed", success_count=0, error_count=3, total_items=3
    ),  # fmt: skip
    events.RobotBatchCorrected(
        job_id="j", flow_run_id="f", status="completed", success_count=1, error_count=2, total_items=3
    ),  # fmt: skip
]


def test_one_class_per_event_type_and_every_one_round_trips():
    assert sorted(events.EVENTS) == sorted(type(event).event_type for event in ONE_OF_EACH)
    for event in ONE_OF_EACH:
        payload = json.loads(json.dumps(event.to_payload()))  # through JSON, as the outbox stores it
        assert events.parse(event.event_type, payload) == event
        assert type(event).from_payload(payload) == event
        assert events.consumer_of(event.event_type) == event.consumer


def test_payload_keys_are_the_fields_in_order():
    expected = {
        events.ROBOT_COORD_COMPLETED: ["job_id", "item_id", "order", "contact"],
        events.FIELD_CHANGED: ["field", "old_value", "new_value", "order", "contact"],
        events.ORDER_STAGE_CHANGED: ["pipeline_id", "from_stage_id", "to_stage_id", "order", "contact"],
        events.ORDER_CREATED: ["order", "contact"],
        events.BATCH_COMPLETED: ["job_id", "flow_run_id", "status", "success_count", "error_count", "total_items"],
        events.BATCH_CORRECTED: ["job_id", "flow_run_id", "status", "success_count", "error_count", "total_items"],
    }
    assert {event.event_type: list(event.to_payload()) for event in ONE_OF_EACH} == expected


def test_consumers_parse_only_their_own_events():
    batch, created = ONE_OF_EACH[4], ONE_OF_EACH[3]
    assert events.parse_batch_event(batch.event_type, batch.to_payload()) == batch
    assert events.parse_automation_event(created.event_type, created.to_payload()) == created
    with pytest.raises(ValueError, match="not a batch event"):
        events.parse_batch_event(created.event_type, created.to_payload())
    with pytest.raises(ValueError, match="not an automations event"):
        events.parse_automation_event(batch.event_type, batch.to_payload())


def test_ids_made_many_at_once_are_distinct_version_4_uuids_in_canonical_text():
    """Every id (`new_id` is `new_ids(1)`; the outbox takes one read of the random source per INSERT) is a random
    RFC 4122 version-4 UUID as lower-case text."""
    ids = new_ids(5000)
    assert len(set(ids)) == 5000
    for one in ids:
        parsed = uuid.UUID(one)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, one)
    assert {one[19] for one in ids} == set("89ab")  # the variant's two low bits are random too
    assert new_ids(0) == []


def test_payloads_are_stored_as_json_text_that_reads_back_equal_and_json_refusals_still_refuse(uow, demo):
    """Outbox payloads go through `json_text` (orjson, json for what orjson refuses) on both databases: what is read
    back equals what was written, non-ASCII and an int beyond 64 bits included; what json.dumps refuses is refused."""
    payload = {
        "order": {
            "id": "ord-json",
            "name": "Pedido Ñandú",
            "total": "12.50",
            "n": 2**70,
            "tags": ["a", None, True, 1.5],
        }
    }
    with uow() as tx:
        outbox.add_events(
            tx.session,
            [outbox.NewEvent(demo.workspace_id, events.OrderCreated(order=payload["order"], contact={"name": "José"}))],  # type: ignore[arg-type]
        )
        tx.commit()
    with uow() as tx:
        stored = tx.session.exec(select(OutboxEvent).where(OutboxEvent.event_type == events.ORDER_CREATED)).one()
        assert stored.payload == {"order": payload["order"], "contact": {"name": "José"}}
    assert json.loads(json_text({1: "x"})) == {"1": "x"}  # json's answer for a key that is not a string
    for refused in (datetime.now(UTC), {"total": Decimal("1.5")}, object()):
        with pytest.raises(TypeError):
            json_text(refused)
