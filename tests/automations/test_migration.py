"""Migration 0002 (automations) upgrades and downgrades on the test database's server, leaving 0001 intact."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from domain.db import make_engine
from domain.migrate import downgrade, upgrade
from tests.conftest import scratch_database

AUTOMATION_TABLES = {"automations", "automation_executions", "automation_action_runs", "tasks"}


@pytest.fixture
def scratch_url(tmp_path):
    with scratch_database(tmp_path, "rj_auto_mig") as url:
        yield url


def _tables(url) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0002_upgrades_and_downgrades(scratch_url):
    upgrade(scratch_url, "0002")
    with_automations = _tables(scratch_url)
    assert AUTOMATION_TABLES <= with_automations
    engine = make_engine(scratch_url)
    try:
        constraints = {c["name"] for c in inspect(engine).get_unique_constraints("automation_executions")}
    finally:
        engine.dispose()
    assert "uq_automation_executions_event_automation" in constraints
    downgrade(scratch_url, "0001")
    assert _tables(scratch_url) == with_automations - AUTOMATION_TABLES
    upgrade(scratch_url, "0002")
    assert _tables(scratch_url) == with_automations
