"""The deployments' forms as operators fill them in: flat, described, no optional toggles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prefect.utilities.callables import parameter_schema

from flows.parameters import InvalidSelection, check_selection, run_key
from flows.reconcile import bucket_key
from flows.submit import retry_failed_items, submit_robot_job


def test_a_stage_or_ids_not_both():
    check_selection("Por despachar", [])
    check_selection("", ["a"])
    check_selection("", [])
    with pytest.raises(InvalidSelection, match="Indique una etapa o una lista de pedidos, no ambas"):
        check_selection("Por despachar", ["a"])


@pytest.mark.parametrize(
    ("flow", "fields", "required", "asked_by_name"),
    [
        (
            submit_robot_job,
            ["workspace", "stage", "order_ids", "idempotency_key"],
            ["workspace"],
            {"workspace": "Nombre del workspace", "stage": "Nombre de la etapa del pipeline (o su id)"},
        ),
        (retry_failed_items, ["batch", "idempotency_key"], ["batch"], {"batch": "«<workspace> #<n>»"}),
    ],
)
def test_the_forms_are_flat_described_and_without_null_toggles(flow, fields, required, asked_by_name):
    schema = parameter_schema(flow).model_dump()
    assert list(schema["properties"]) == fields and schema["required"] == required
    assert schema["definitions"] == {}  # nothing nested
    for name, field in schema["properties"].items():
        assert field.get("description"), name
        assert "anyOf" not in field, name  # a "str / None" toggle in the UI
    # What the operator is asked for: names (or a batch's reference), not ids.
    for name, text in asked_by_name.items():
        assert text in schema["properties"][name]["description"], name


def test_a_run_without_an_operator_key_keys_its_job_by_itself():
    assert run_key("0b1c") == "run:0b1c"


def test_reconcile_bucket_is_the_utc_minute():
    moment = datetime(2026, 5, 1, 12, 34, 56, tzinfo=UTC)
    assert bucket_key(moment) == "reconcile:2026-05-01T12:34Z"
