"""The runner against the real database and the fake WhatsApp provider on loopback."""

from __future__ import annotations

import time

import pytest

from domain.automations.rules import execution_log
from domain.models import Order
from domain.orders.changes import move_order_to_stage


def dispatched_automation(automation, shop, **extra):
    return automation(
        trigger_type="robot.coord.completed",
        actions=[
            {"type": "change_stage", "stage_id": shop.stages["Despachado"]},
            {
                "type": "send_whatsapp_template",
                "template_name": "pedido_despachado",
                "parameters": ["{{contacto.nombre}}", "{{orden.tracking_number}}", "{{orden.total_formato}}"],
            },
        ],
        **extra,
    )


def test_robot_completed_moves_to_despachado_and_sends_the_tracking_number(
    uow, shop, make_order, robot_completed, automation, drain, db, fake_whatsapp
):
    automation_id = dispatched_automation(automation, shop)
    order_id = make_order()
    event_id = robot_completed(order_id, "C-10107")

    stats = drain()

    assert db.get(Order, order_id).stage_id == shop.stages["Despachado"]
    [message] = fake_whatsapp.messages
    assert message["to"] == "573133477968"
    assert message["type"] == "template"
    assert message["template"]["name"] == "pedido_despachado"
    assert [p["text"] for p in message["template"]["components"][0]["parameters"]] == [
        "Elena Beltrán",
        "C-10107",
        "$139.900",
    ]
    assert message["idempotency_key"] == f"{event_id}:{automation_id}:1"
    [execution] = db.executions(automation_id)
    assert (execution.event_id, execution.status, execution.depth) == (event_id, "succeeded", 0)
    runs = db.runs(execution.id)
    assert [(r.action_type, r.status) for r in runs] == [
        ("change_stage", "succeeded"),
        ("send_whatsapp_template", "succeeded"),
    ]
    assert all(r.duration_ms is not None and r.attempts == 1 for r in runs)
    assert runs[1].result["message_id"] == message["id"]
    assert db.undelivered() == []
    assert stats.actions_succeeded == 2
    with uow() as tx:
        [view] = execution_log(tx.session, event_id=event_id)
    assert view.status == "succeeded" and [(a.index, a.type, a.status) for a in view.actions] == [
        (0, "change_stage", "succeeded"),
        (1, "send_whatsapp_template", "succeeded"),
    ]
    # A second pass finds nothing to do: no second message.
    drain()
    assert len(fake_whatsapp.messages) == 1


def test_provider_down_past_the_retry_budget_stops_the_rest_and_is_logged(
    shop, make_order, robot_completed, automation, drain, db, fake_whatsapp
):
    automation_id = automation(
        trigger_type="robot.coord.completed",
        actions=[
            {"type": "send_whatsapp_text", "text": "Tu guía es {{orden.tracking_number}}"},
            {"type": "create_task", "title": "Revisar {{orden.nombre}}"},
            {"type": "change_stage", "stage_id": shop.stages["Despachado"]},
        ],
    )
    order_id = make_order()
    robot_completed(order_id, "C-1")
    fake_whatsapp.fail_next(None, status=500)  # down for longer than the retry budget (2 s in tests)

    drain()
    fake_whatsapp.reset()

    [execution] = db.executions(automation_id)
    assert execution.status == "failed"
    assert "500" in execution.error
    runs = db.runs(execution.id)
    assert [r.status for r in runs] == ["failed", "skipped", "skipped"]
    assert "500" in runs[0].error and "intento(s)" in runs[0].error and runs[0].duration_ms >= 1500
    assert runs[1].error.startswith("Omitida")
    assert fake_whatsapp.messages == []
    assert db.tasks() == []
    assert db.get(Order, order_id).stage_id == shop.stages["Por despachar"]
    assert db.undelivered() == []  # handled: failure is logged, the event is not retried forever


def test_conditions_decide_and_filters_select(shop, make_order, robot_completed, automation, drain, db, fake_whatsapp):
    only_manizales = automation(
        trigger_type="robot.coord.completed",
        conditions={
            "logic": "and",
            "conditions": [
                {"field": "orden.ciudad_envio", "operator": "equals", "value": "Manizales"},
                {"field": "orden.valor", "operator": "gte", "value": 100000},
            ],
        },
        actions=[{"type": "create_task", "title": "Despacho grande a {{orden.ciudad_envio}}"}],
    )
    other_pipeline = automation(
        trigger_type="robot.coord.completed",
        trigger_config={"pipeline_id": shop.other_pipeline_id},
        actions=[{"type": "create_task", "title": "nunca"}],
    )
    manizales = make_order(city="MANIZALES")
    bogota = make_order(city="BOGOTA")
    robot_completed(manizales, "C-1")
    robot_completed(bogota, "C-2")

    drain()

    executions = {e.order_id: e for e in db.executions(only_manizales)}
    assert executions[manizales].status == "succeeded"
    assert executions[bogota].status == "conditions_not_met"
    assert [r.status for r in db.runs(executions[bogota].id)] == ["skipped"]
    assert [t.title for t in db.tasks()] == ["Despacho grande a MANIZALES"]
    assert db.executions(other_pipeline) == []  # filtered out by the trigger config: no execution at all


def test_missing_variables_render_empty_and_are_recorded(
    shop, make_order, robot_completed, automation, drain, db, fake_whatsapp
):
    automation_id = automation(
        trigger_type="robot.coord.completed",
        actions=[{"type": "send_whatsapp_text", "text": "Hola {{contacto.nombre}} ({{contacto.email}})"}],
    )
    robot_completed(make_order(email=None), "C-1")
    drain()
    [message] = fake_whatsapp.messages
    assert message["text"] == "Hola Elena Beltrán ()"
    [execution] = db.executions(automation_id)
    assert db.runs(execution.id)[0].result["missing_variables"] == ["contacto.email"]


def test_update_field_cascades_one_level_into_field_changed(shop, make_order, robot_completed, automation, drain, db):
    first = automation(
        trigger_type="robot.coord.completed",
        actions=[
            {"type": "update_field", "field": "custom_fields.notificado", "value": "guía {{orden.tracking_number}}"}
        ],
    )
    second = automation(
        trigger_type="field.changed",
        trigger_config={"field": "custom_fields.notificado"},
        conditions={"conditions": [{"field": "evento.valor_nuevo", "operator": "contains", "value": "C-9"}]},
        actions=[{"type": "create_task", "title": "Confirmar {{evento.valor_nuevo}}", "due_in_hours": 24}],
    )
    order_id = make_order()
    robot_completed(order_id, "C-9")
    drain()
    assert db.get(Order, order_id).custom_fields == {"notificado": "guía C-9"}
    [cascaded] = db.executions(second)
    assert (cascaded.status, cascaded.depth) == ("succeeded", 1)
    [task] = db.tasks()
    assert task.title == "Confirmar guía C-9" and task.order_id == order_id and task.due_at is not None
    assert db.executions(first)[0].status == "succeeded"


def test_cascade_stops_at_depth_3_and_records_the_suppression(uow, shop, make_order, automation, drain, db):
    to_y = automation(
        trigger_type="order.stage_changed",
        trigger_config={"stage_id": shop.stages["X"]},
        actions=[{"type": "change_stage", "stage_id": shop.stages["Y"]}],
    )
    to_x = automation(
        trigger_type="order.stage_changed",
        trigger_config={"stage_id": shop.stages["Y"]},
        actions=[{"type": "change_stage", "stage_id": shop.stages["X"]}],
    )
    order_id = make_order()
    with uow() as tx:
        move_order_to_stage(tx.session, order_id, stage_id=shop.stages["X"])
        tx.commit()

    drain()

    executions = sorted(db.executions(to_y) + db.executions(to_x), key=lambda e: e.depth)
    assert [(e.depth, e.status) for e in executions] == [
        (0, "succeeded"),
        (1, "succeeded"),
        (2, "succeeded"),
        (3, "suppressed"),
    ]
    assert [e.automation_id for e in executions] == [to_y, to_x, to_y, to_x]
    assert "profundidad 3" in executions[3].error
    assert [r.status for r in db.runs(executions[3].id)] == ["skipped"]
    assert db.get(Order, order_id).stage_id == shop.stages["Y"]  # the depth-3 move back to X never happened
    assert db.undelivered() == []


def test_disabled_automation_does_nothing(shop, make_order, robot_completed, automation, drain, db):
    automation_id = automation(
        trigger_type="robot.coord.completed", enabled=False, actions=[{"type": "create_task", "title": "x"}]
    )
    robot_completed(make_order(), "C-1")
    drain()
    assert db.executions(automation_id) == [] and db.tasks() == []


def test_change_stage_outside_the_orders_pipeline_fails_at_run_time(
    shop, make_order, robot_completed, automation, drain, db
):
    # Saved without a pipeline filter, so only the order can tell: the domain refuses and the log says why.
    automation_id = automation(
        trigger_type="robot.coord.completed",
        actions=[{"type": "change_stage", "stage_id": shop.other_stage_id}, {"type": "create_task", "title": "x"}],
    )
    order_id = make_order()
    robot_completed(order_id, "C-1")
    drain()
    [execution] = db.executions(automation_id)
    assert execution.status == "failed"
    assert [r.status for r in db.runs(execution.id)] == ["failed", "skipped"]
    assert "pipeline" in db.runs(execution.id)[0].error
    assert db.get(Order, order_id).stage_id == shop.stages["Por despachar"]
    assert db.tasks() == []


@pytest.mark.parametrize(("status", "retry_after"), [(503, None), (429, 1)], ids=["503", "429-retry-after"])
def test_a_provider_blip_still_sends_exactly_one_message(
    shop, make_order, robot_completed, automation, drain, db, fake_whatsapp, settings, status, retry_after
):
    automation_id = automation(
        trigger_type="robot.coord.completed",
        actions=[{"type": "send_whatsapp_text", "text": "Tu guía es {{orden.tracking_number}}"}],
    )
    order_id = make_order()
    robot_completed(order_id, "C-7")
    fake_whatsapp.fail_next(2, status=status, retry_after=retry_after)

    started = time.monotonic()
    drain(settings_=settings.model_copy(update={"automation_retry_budget_s": 5.0}))

    [execution] = db.executions(automation_id)
    assert execution.status == "succeeded", execution.error
    assert fake_whatsapp.requests == 3  # two failures, then the one that sent
    [message] = fake_whatsapp.messages
    assert message["text"] == "Tu guía es C-7"
    [run] = db.runs(execution.id)
    assert message["idempotency_key"] == run.idempotency_key  # the same key on every attempt
    if retry_after:
        assert time.monotonic() - started >= 2 * retry_after  # the provider's Retry-After was honoured
