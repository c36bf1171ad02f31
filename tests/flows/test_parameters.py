"""Deployment parameters as operators fill them in."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from flows.parameters import OrderSelection, SubmitRobotJob
from flows.reconcile import bucket_key


def test_a_stage_or_ids_not_both():
    assert SubmitRobotJob(workspace_id="w").orders == OrderSelection()
    assert SubmitRobotJob(workspace_id="w", orders={"order_ids": ["a"]}).orders.order_ids == ["a"]
    with pytest.raises(ValidationError):
        OrderSelection(stage_id="s", order_ids=["a"])
    with pytest.raises(ValidationError):
        SubmitRobotJob(workspace_id="w", password="x")


def test_every_parameter_is_described_for_operators():
    schema = SubmitRobotJob.model_json_schema()
    assert all(p.get("description") for p in schema["properties"].values())


def test_reconcile_bucket_is_the_utc_minute():
    moment = datetime(2026, 5, 1, 12, 34, 56, tzinfo=timezone.utc)
    assert bucket_key(moment) == "reconcile:2026-05-01T12:34Z"
