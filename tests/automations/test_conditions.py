"""Conditions (nested AND/OR, every operator) and trigger filters, true and false."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.automations.conditions import Condition, ConditionGroup, evaluate
from domain.automations.triggers import trigger_matches
from domain.events import FieldChanged, OrderCreated, OrderStageChanged, RobotCoordCompleted

VARIABLES = {
    "orden.ciudad_envio": "MANIZALES",
    "orden.valor": "139900",
    "orden.tracking_number": "C-778899",
    "orden.etiquetas": ["VIP", "P/A"],
    "contacto.email": None,
    "contacto.telefono": "",
}


def holds(field, operator, value=None) -> bool:
    return evaluate(ConditionGroup(conditions=[Condition(field=field, operator=operator, value=value)]), VARIABLES)


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("orden.ciudad_envio", "equals", "manizales ", True),
        ("orden.ciudad_envio", "equals", "BOGOTA", False),
        ("orden.valor", "equals", 139900, True),
        ("orden.ciudad_envio", "not_equals", "BOGOTA", True),
        ("orden.ciudad_envio", "not_equals", "Manizales", False),
        ("orden.tracking_number", "contains", "7788", True),
        ("orden.tracking_number", "contains", "9999", False),
        ("orden.etiquetas", "contains", "vip", True),
        ("orden.etiquetas", "not_contains", "VIP", False),
        ("orden.tracking_number", "not_contains", "X", True),
        ("orden.ciudad_envio", "in", ["BOGOTA", "MANIZALES"], True),
        ("orden.ciudad_envio", "in", ["BOGOTA", "CALI"], False),
        ("orden.ciudad_envio", "not_in", ["BOGOTA"], True),
        ("orden.ciudad_envio", "not_in", ["MANIZALES"], False),
        ("orden.valor", "gt", 100000, True),
        ("orden.valor", "gt", 139900, False),
        ("orden.valor", "gte", "139900", True),
        ("orden.valor", "lt", 139900, False),
        ("orden.valor", "lte", 139900.0, True),
        ("orden.valor", "lt", 200000, True),
        ("orden.ciudad_envio", "gt", 5, False),  # not a number: ordering is false, not an error
        ("orden.tracking_number", "exists", None, True),
        ("contacto.email", "exists", None, False),
        ("contacto.telefono", "exists", None, False),  # empty text counts as missing
        ("contacto.email", "not_exists", None, True),
        ("orden.no_such", "not_exists", None, True),
        ("orden.no_such", "equals", "x", False),
    ],
)
def test_operator(field, operator, value, expected):
    assert holds(field, operator, value) is expected


def test_nested_and_or():
    group = ConditionGroup.model_validate(
        {
            "logic": "and",
            "conditions": [
                {"field": "orden.valor", "operator": "gte", "value": 100000},
                {
                    "logic": "or",
                    "conditions": [
                        {"field": "orden.ciudad_envio", "operator": "equals", "value": "BOGOTA"},
                        {"field": "orden.etiquetas", "operator": "contains", "value": "VIP"},
                    ],
                },
            ],
        }
    )
    assert evaluate(group, VARIABLES) is True
    assert evaluate(group, {**VARIABLES, "orden.etiquetas": []}) is False  # the OR branch fails
    assert evaluate(group, {**VARIABLES, "orden.valor": "5000"}) is False  # the AND's first leg fails
    assert evaluate(ConditionGroup(logic="or", conditions=[]), VARIABLES) is True
    assert evaluate(None, VARIABLES) is True


@pytest.mark.parametrize(
    "condition",
    [
        {"field": "orden.valor", "operator": "bigger_than", "value": 1},
        {"field": "orden.valor", "operator": "gt", "value": "mucho"},
        {"field": "orden.valor", "operator": "in", "value": "MANIZALES"},
        {"field": "orden.valor", "operator": "equals"},
        {"field": "", "operator": "exists"},
    ],
)
def test_malformed_condition_is_refused(condition):
    with pytest.raises(ValidationError):
        ConditionGroup.model_validate({"conditions": [condition]})


ORDER = {"id": "o1", "pipeline_id": "p1"}
MOVED = OrderStageChanged(pipeline_id="p1", from_stage_id="s1", to_stage_id="s2", order=ORDER, contact={})
CREATED = OrderCreated(order=ORDER, contact={})
SHIPPED = RobotCoordCompleted(job_id="j", item_id="i", order=ORDER, contact={})


def _changed(field):
    return FieldChanged(field=field, old_value=None, new_value="1", order={}, contact={})


@pytest.mark.parametrize(
    ("trigger", "config", "event", "expected"),
    [
        ("order.stage_changed", {}, MOVED, True),
        ("order.stage_changed", {"stage_id": "s2"}, MOVED, True),
        ("order.stage_changed", {"stage_id": "s1"}, MOVED, False),
        ("order.stage_changed", {"pipeline_id": "p1", "stage_id": "s2"}, MOVED, True),
        ("order.stage_changed", {"pipeline_id": "p9"}, MOVED, False),
        ("order.stage_changed", {}, CREATED, False),
        ("field.changed", {"field": "tracking_number"}, _changed("tracking_number"), True),
        ("field.changed", {"field": "tracking_number"}, _changed("carrier"), False),
        ("robot.coord.completed", {}, SHIPPED, True),
        ("robot.coord.completed", {"pipeline_id": "p2"}, SHIPPED, False),
    ],
)
def test_trigger_filters(trigger, config, event, expected):
    assert trigger_matches(trigger, config, event) is expected
