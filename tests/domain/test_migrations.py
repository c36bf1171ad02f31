"""Alembic owns the schema: it upgrades from empty and downgrades cleanly on the test database's server."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from domain.db import make_engine
from domain.migrate import downgrade, upgrade
from tests.conftest import scratch_database


@pytest.fixture
def empty_database_url(tmp_path):
    with scratch_database(tmp_path, "rj_mig") as url:
        yield url


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
