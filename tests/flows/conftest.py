"""Fixtures for flows/ and relay/ tests: a started job in a seeded workspace, and the simulator on loopback."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from domain.batches.jobs import create_robot_job, start_job
from domain.db import UnitOfWork
from domain.settings import get_settings
from sample_data.seed import DEMO_ORDERS, seed_demo
from simulator.server import start_simulator

GOOD_ORDERS = [o for o in DEMO_ORDERS if o[5] in ("Manizales", "Medellín", "Cali")]


@pytest.fixture(scope="session")
def credentials_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def simulator():
    with start_simulator(port=0, delay=0.01) as handle:
        yield handle


@pytest.fixture
def settings(database_url, credentials_key, simulator):
    return get_settings(
        database_url=database_url,
        credentials_key=credentials_key,
        robot_url=simulator.url,
        public_base_url="http://127.0.0.1:9",  # nothing listens: callbacks are not what these tests look at
        robot_dispatch_timeout_s=2,
    )


@pytest.fixture
def started_job(engine, credentials_key):
    """A job of 3 orders, processing (start_job done), not dispatched."""
    with UnitOfWork(engine) as uow:
        demo = seed_demo(uow.session, credentials_key=credentials_key, orders=GOOD_ORDERS)
        job = create_robot_job(uow.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids).job
        start_job(uow.session, job.id, flow_run_id=None)
        uow.commit()
    return job.id
