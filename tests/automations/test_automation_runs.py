"""The execution records as domain functions (domain/automations/runs.py), without the runner: each takes the
caller's session, commits nothing, and its guarded SQL lets exactly one caller make each transition."""

from __future__ import annotations

from sqlmodel import select

from domain import outbox
from domain.automations import runs
from domain.automations.models import ActionStatus, Automation, AutomationExecution, ExecutionStatus
from domain.events import OrderCreated
from domain.models import OutboxEvent


def _event_and_automation(uow, shop, make_order, automation, *, depth=0):
    automation_id = automation(
        trigger_type="order.created",
        actions=[
            {"type": "change_stage", "stage_id": shop.stages["Despachado"]},
            {"type": "change_stage", "stage_id": shop.stages["Entregado"]},
        ],
    )
    order_id = make_order()
    with uow() as tx:
        created = OrderCreated(order={"id": order_id}, contact={})
        event = outbox.add_event(tx.session, created, workspace_id=shop.workspace_id, depth=depth)
        tx.commit()
        return event.event_id, automation_id


def _start(uow, event_id, automation_id, worker_id="w1"):
    with uow() as tx:
        event = tx.session.exec(select(OutboxEvent).where(OutboxEvent.event_id == event_id)).one()
        execution, inserted = runs.start_execution(
            tx.session, event, tx.session.get(Automation, automation_id), variables={}, worker_id=worker_id
        )
        tx.commit()
        return execution, inserted


def test_an_execution_is_created_once_and_its_runs_move_once(uow, shop, make_order, automation, db):
    event_id, automation_id = _event_and_automation(uow, shop, make_order, automation)

    first, inserted = _start(uow, event_id, automation_id)
    again, inserted_again = _start(uow, event_id, automation_id, worker_id="w2")

    assert (inserted, inserted_again) == (True, False)
    assert again.id == first.id and again.worker_id == "w1"
    action_runs = db.runs(first.id)
    assert [(r.action_index, r.status) for r in action_runs] == [(0, "pending"), (1, "pending")]
    assert action_runs[0].idempotency_key == runs.idempotency_key(event_id, automation_id, 0)
    with uow() as tx:
        pending = (ActionStatus.PENDING,)
        assert runs.set_action_run(tx.session, action_runs[0].id, from_status=pending, status=ActionStatus.STARTED)
        assert not runs.set_action_run(tx.session, action_runs[0].id, from_status=pending, status=ActionStatus.STARTED)
        runs.skip_rest(tx.session, first.id, 0, runs.skipped_after(0))
        assert runs.finish_execution(tx.session, first.id, ExecutionStatus.FAILED, runs.action_failed(0, "x"))
        assert not runs.finish_execution(tx.session, first.id, ExecutionStatus.SUCCEEDED)
        tx.rollback()  # nothing the functions did is committed by them
    assert [r.status for r in db.runs(first.id)] == ["pending", "pending"]
    assert db.get(AutomationExecution, first.id).status == "running"


def test_an_event_at_the_cascade_limit_is_suppressed_with_its_spanish_reason(uow, shop, make_order, automation, db):
    event_id, automation_id = _event_and_automation(uow, shop, make_order, automation, depth=3)

    execution, inserted = _start(uow, event_id, automation_id)

    assert inserted and execution.status == ExecutionStatus.SUPPRESSED
    assert execution.error == ("Cadena de automatizaciones detenida: el evento llegó a la profundidad 3 (máximo 3)")
    assert execution.finished_at is not None
    assert {(r.status, r.error) for r in db.runs(execution.id)} == {("skipped", execution.error)}
    assert runs.cascade_stopped(2) is None
