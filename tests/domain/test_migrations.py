"""Alembic owns the schema: it upgrades from empty and downgrades cleanly on the test database's server."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from domain.db import make_engine
from domain.migrate import downgrade, upgrade
from tests.conftest import TEST_DATABASE


@pytest.fixture
def empty_database_url(tmp_path):
    if TEST_DATABASE == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    import psycopg

    url = make_url(TEST_DATABASE)
    name = f"rj_mig_{uuid.uuid4().hex[:8]}"
    conninfo = dict(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres")
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(url):
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_from_empty_then_downgrade_to_empty_then_upgrade_again(empty_database_url):
    upgrade(empty_database_url)
    tables = _tables(empty_database_url)
    assert {"workspaces", "orders", "robot_jobs", "robot_job_items", "outbox_events", "carrier_coverage"} <= tables
    downgrade(empty_database_url, "base")
    assert _tables(empty_database_url) == set()
    upgrade(empty_database_url)
    assert _tables(empty_database_url) == tables
