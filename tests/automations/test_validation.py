"""Saving an automation validates it against the trigger catalog and the workspace, with clear Spanish errors."""

from __future__ import annotations

import pytest

from domain.automations.models import Automation
from domain.automations.rules import InvalidAutomation, save_automation

TASK = {"type": "create_task", "title": "Llamar a {{contacto.nombre}}"}


def save(uow, shop, **data):
    with uow() as tx:
        automation = save_automation(tx.session, workspace_id=shop.workspace_id, data={"name": "a", **data})
        tx.commit()
        return automation


def errors_of(uow, shop, **data) -> list[dict]:
    with pytest.raises(InvalidAutomation) as caught:
        save(uow, shop, **data)
    return caught.value.errors


def test_a_valid_automation_is_stored(uow, shop, db):
    automation = save(
        uow,
        shop,
        trigger_type="robot.coord.completed",
        trigger_config={"pipeline_id": shop.pipeline_id},
        conditions={"logic": "and", "conditions": [{"field": "orden.valor", "operator": "gt", "value": 0}]},
        actions=[
            {"type": "change_stage", "stage_id": shop.stages["Despachado"]},
            {
                "type": "send_whatsapp_template",
                "template_name": "despacho",
                "parameters": ["{{orden.tracking_number}}"],
            },
        ],
    )
    stored = db.get(Automation, automation.id)
    assert stored.enabled is True
    assert stored.actions[1] == {
        "type": "send_whatsapp_template",
        "to": "{{contacto.telefono}}",
        "template_name": "despacho",
        "language": "es",
        "parameters": ["{{orden.tracking_number}}"],
    }
    assert stored.conditions["conditions"][0]["operator"] == "gt"


def test_more_than_ten_actions_is_refused(uow, shop, db):
    errors = errors_of(uow, shop, trigger_type="order.created", actions=[TASK] * 11)
    assert errors == [{"loc": "actions", "msg": "Máximo 10 acciones por automatización"}]
    assert db.all(Automation) == []
    save(uow, shop, trigger_type="order.created", actions=[TASK] * 10)  # ten is fine


def test_change_stage_to_another_pipelines_stage_is_refused(uow, shop):
    errors = errors_of(
        uow,
        shop,
        trigger_type="robot.coord.completed",
        trigger_config={"pipeline_id": shop.pipeline_id},
        actions=[{"type": "change_stage", "stage_id": shop.other_stage_id}],
    )
    assert errors[0]["loc"] == "actions.0.stage_id"
    assert "otro pipeline" in errors[0]["msg"]
    # The stage filter of order.stage_changed fixes the pipeline too.
    errors = errors_of(
        uow,
        shop,
        trigger_type="order.stage_changed",
        trigger_config={"stage_id": shop.stages["Despachado"]},
        actions=[{"type": "change_stage", "stage_id": shop.other_stage_id}],
    )
    assert "otro pipeline" in errors[0]["msg"]


def test_unknown_operator_is_refused(uow, shop):
    errors = errors_of(
        uow,
        shop,
        trigger_type="order.created",
        actions=[TASK],
        conditions={
            "logic": "or",
            "conditions": [
                {"logic": "and", "conditions": [{"field": "orden.valor", "operator": "approximately", "value": 1}]}
            ],
        },
    )
    assert errors == [
        {"loc": "conditions.conditions.0.conditions.0.operator", "msg": "Operador desconocido: 'approximately'"}
    ]


@pytest.mark.parametrize(
    ("data", "loc", "fragment"),
    [
        ({"trigger_type": "robot.finished", "actions": [TASK]}, "trigger_type", "Disparador desconocido"),
        ({"trigger_type": "field.changed", "actions": [TASK]}, "trigger_config.field", "Filtro requerido"),
        (
            {"trigger_type": "order.created", "trigger_config": {"stage_id": "x"}, "actions": [TASK]},
            "trigger_config.stage_id",
            "Filtro no disponible",
        ),
        ({"trigger_type": "order.created", "actions": []}, "actions", "al menos una acción"),
        ({"trigger_type": "order.created", "actions": [{"type": "send_sms"}]}, "actions.0", "Tipo de acción"),
        (
            {"trigger_type": "order.created", "actions": [{"type": "change_stage", "stage_id": "nope"}]},
            "actions.0.stage_id",
            "Etapa desconocida",
        ),
        (
            {"trigger_type": "order.created", "actions": [{"type": "update_field", "field": "color", "value": 1}]},
            "actions.0.field",
            "Campo desconocido",
        ),
        (
            {
                "trigger_type": "order.created",
                "actions": [{"type": "webhook", "url": "file:///etc/passwd", "message": "x"}],
            },
            "actions.0.url",
            "http",
        ),
        (
            {"trigger_type": "order.created", "actions": [{"type": "send_whatsapp_text", "text": "{{orden.guia}}"}]},
            "actions.0.text",
            "Variable desconocida",
        ),
        (
            {
                "trigger_type": "order.created",
                "actions": [TASK],
                "conditions": {"conditions": [{"field": "evento.campo", "operator": "exists"}]},
            },
            "conditions",
            "Variable desconocida",
        ),
    ],
)
def test_other_invalid_automations(uow, shop, data, loc, fragment):
    errors = errors_of(uow, shop, **data)
    assert any(e["loc"] == loc and fragment in e["msg"] for e in errors), errors


def test_update_replaces_the_automation(uow, shop, db):
    automation = save(uow, shop, trigger_type="order.created", actions=[TASK])
    with uow() as tx:
        save_automation(
            tx.session,
            workspace_id=shop.workspace_id,
            automation_id=automation.id,
            data={
                "name": "b",
                "trigger_type": "field.changed",
                "trigger_config": {"field": "carrier"},
                "actions": [TASK, TASK],
                "enabled": False,
            },
        )
        tx.commit()
    stored = db.get(Automation, automation.id)
    assert (stored.name, stored.trigger_type, len(stored.actions), stored.enabled) == ("b", "field.changed", 2, False)
