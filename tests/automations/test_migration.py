"""Migration 0002 (automations) upgrades and downgrades on the test database's server, leaving 0001 intact."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from domain.db import make_engine
from domain.migrate import downgrade, upgrade
from tests.conftest import TEST_DATABASE

AUTOMATION_TABLES = {"automations", "automation_executions", "automation_action_runs", "tasks"}


@pytest.fixture
def scratch_url(tmp_path):
    if TEST_DATABASE == "sqlite":
        yield f"sqlite:///{tmp_path / 'automations-migration.db'}"
        return
    import psycopg

    url = make_url(TEST_DATABASE)
    name = f"rj_auto_mig_{uuid.uuid4().hex[:8]}"
    conninfo = dict(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres")
    if url.password:
        conninfo["password"] = url.password
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
