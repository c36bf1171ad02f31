"""Variables: Spanish names from the event's English payload, peso formatting, missing variables and the preview."""

from __future__ import annotations

import pytest

from domain.automations.rules import SendWhatsappTemplateAction, WebhookAction, render_action
from domain.automations.triggers import TRIGGERS, trigger_catalog
from domain.automations.variables import build_variables, format_cop, preview, render
from domain.events import FieldChanged, OrderCreated, OrderStageChanged, RobotCoordCompleted

PAYLOAD = {
    "job_id": "job-7",
    "item_id": "itm_abc",
    "order": {
        "id": "o-1",
        "name": "Pedido 10107",
        "total_value": "139900.00",
        "tracking_number": "10107",
        "carrier": "COORDINADORA",
        "shipping_address": "calle 49f",
        "shipping_city": "MANIZALES",
        "shipping_department": "CDAS",
        "pipeline_id": "p",
        "stage_id": "s",
        "tags": ["VIP"],
        "custom_fields": {"color": "rojo"},
    },
    "contact": {"id": "c-1", "name": "Elena Beltrán", "phone": "3133477968", "email": None},
}


def test_catalog_variables_come_from_the_payload():
    variables = build_variables(RobotCoordCompleted.from_payload(PAYLOAD))
    assert variables["orden.id"] == "o-1"
    assert variables["orden.nombre"] == "Pedido 10107"
    assert variables["orden.valor"] == "139900"
    assert variables["orden.total_formato"] == "$139.900"
    assert variables["orden.tracking_number"] == "10107"
    assert variables["orden.carrier"] == "COORDINADORA"
    assert variables["orden.ciudad_envio"] == "MANIZALES"
    assert variables["orden.direccion_envio"] == "calle 49f"
    assert variables["orden.departamento_envio"] == "CDAS"
    assert variables["contacto.nombre"] == "Elena Beltrán"
    assert variables["contacto.telefono"] == "3133477968"
    assert variables["contacto.email"] is None
    assert variables["orden.campos.color"] == "rojo"
    assert variables["robot.job_id"] == "job-7"
    # Every variable the catalog offers for this trigger is produced.
    assert {v.path for v in TRIGGERS["robot.coord.completed"].variables} <= set(variables)


def test_each_event_adds_its_own_variables():
    order, contact = PAYLOAD["order"], PAYLOAD["contact"]
    moved = build_variables(OrderStageChanged(pipeline_id="p", from_stage_id="s0", to_stage_id="s", order=order,
                                              contact=contact))  # fmt: skip
    assert (moved["evento.etapa_anterior_id"], moved["evento.etapa_nueva_id"]) == ("s0", "s")
    changed = build_variables(FieldChanged(field="tracking_number", old_value=None, new_value="10107", order=order,
                                           contact=contact))  # fmt: skip
    assert (changed["evento.campo"], changed["evento.valor_anterior"], changed["evento.valor_nuevo"]) == (
        "tracking_number", None, "10107")  # fmt: skip
    created = build_variables(OrderCreated(order=order, contact=contact))
    assert created["orden.nombre"] == "Pedido 10107" and "robot.job_id" not in created and "evento.campo" not in created
    assert created == {key: value for key, value in moved.items() if not key.startswith("evento.")}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("139900.00", "$139.900"),
        (1500000, "$1.500.000"),
        ("999", "$999"),
        ("0", "$0"),
        ("1234.5", "$1.235"),
        (None, ""),
        ("abc", ""),
    ],
)
def test_pesos_use_dot_thousands_and_no_decimals(value, text):
    assert format_cop(value) == text


def test_render_replaces_variables_and_reports_missing_ones():
    variables = build_variables(RobotCoordCompleted.from_payload(PAYLOAD))
    rendered = render(
        "Hola {{contacto.nombre}}, guía {{ orden.tracking_number }} por {{orden.total_formato}}. "
        "Escríbenos a {{contacto.email}} {{orden.inventada}}",
        variables,
    )
    assert rendered.text == "Hola Elena Beltrán, guía 10107 por $139.900. Escríbenos a  "
    assert rendered.missing == ["contacto.email", "orden.inventada"]
    assert preview("Sin variables", variables).missing == []


def test_action_preview_renders_every_text_and_lists_missing():
    variables = build_variables(RobotCoordCompleted.from_payload(PAYLOAD))
    whatsapp = render_action(
        SendWhatsappTemplateAction(
            template_name="pedido_despachado",
            parameters=["{{contacto.nombre}}", "{{orden.tracking_number}}", "{{contacto.email}}"],
        ),
        variables,
    )
    assert whatsapp.action["to"] == "3133477968"
    assert whatsapp.action["parameters"] == ["Elena Beltrán", "10107", ""]
    assert whatsapp.missing == ["contacto.email"]
    hook = render_action(
        WebhookAction(url="https://hooks.slack.com/x", body={"text": "Guía {{orden.tracking_number}}", "n": 1}),
        variables,
    )
    assert hook.action["body"] == {"text": "Guía 10107", "n": 1}


def test_catalog_is_listable_data():
    catalog = {entry["type"]: entry for entry in trigger_catalog()}
    assert set(catalog) == {"robot.coord.completed", "order.stage_changed", "field.changed", "order.created"}
    robot = catalog["robot.coord.completed"]
    assert robot["label"] == "Robot Coordinadora completado" and robot["category"] == "Logistica"
    assert {v["path"] for v in robot["variables"]} >= {
        "orden.id",
        "orden.nombre",
        "orden.valor",
        "orden.tracking_number",
        "orden.carrier",
        "orden.ciudad_envio",
        "orden.direccion_envio",
        "orden.departamento_envio",
        "contacto.nombre",
        "contacto.telefono",
        "contacto.email",
    }
    assert [f for f in catalog["field.changed"]["filters"] if f["name"] == "field"][0]["required"] is True
    assert {f["name"] for f in catalog["order.stage_changed"]["filters"]} == {"pipeline_id", "stage_id"}
