"""One real stack for every end-to-end test: a Prefect server (own PREFECT_HOME; SQLite, or PostgreSQL when the suite
runs on PostgreSQL), the served flows, the webhook under gunicorn and the robot simulator, all on 127.0.0.1, stopped
by PID when the package's tests end.

The stack has its own domain database (not the per-test-emptied one of tests/conftest.py), and each test works in
its own workspace, so tests share the stack without sharing data.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from sqlalchemy.engine import make_url

from domain.db import make_engine
from domain.migrate import upgrade
from simulator.server import SimulatorHandle, start_simulator
from stack.processes import PROJECT_ROOT, ManagedProcess, start_flow_runner, start_prefect_server, start_webhook
from tests.conftest import TEST_DATABASE
from tests.e2e.proxy import CuttableProxy

# Short callback deadlines so "the robot never calls back" and "results after the deadline" take seconds: N × 2 s
# + 15 s, still far above a simulated batch (0.1 s per order; the cold-start test's 3 orders × 3 s). Prefect's pause
# timeout cannot overtake a test any more: it is the deadline plus the reconciler's interval and a margin
# (flows.orchestrate.suspend_timeout_s), so a suspended run waits minutes past its deadline for the reconcile a
# test triggers by hand.
SECONDS_PER_ITEM = 2
BASE_SECONDS = 15
# The dispatch timeout: above the slowest 200 the ordinary tests provoke (two callbacks first, ~3 s), below the
# cold-start test's late 200 (COLD_START_ANSWER_S).
DISPATCH_TIMEOUT_S = 8
COLD_START_ANSWER_S = 11
# Jobs left pending this long are the reconciler's to start (production: 2 min); the give-up limit stays at its
# default, and the test that needs it ages its job instead.
PENDING_ORPHAN_AFTER_S = 2


@dataclass
class Stack:
    api_url: str
    webhook_url: str
    simulator: SimulatorHandle
    serve: ManagedProcess
    webhook: ManagedProcess
    prefect_proxy: CuttableProxy
    engine: object
    credentials_key: str
    log_dir: Path
    auth_string: str = ""  # the Prefect server's basic auth (user:password): the whole suite runs with it on

    def restart_simulator(self) -> None:
        """Bring the simulator back on the same port (after a test stopped it to make the robot unreachable)."""
        port = int(self.simulator.url.rsplit(":", 1)[1])
        self.simulator = start_simulator(port=port, delay=0.1)


def _e2e_databases(tmp: Path):
    """The stack's own databases: (domain URL, Prefect server URL or None, drop). On SQLite a file, and the Prefect
    server keeps its own SQLite; on PostgreSQL a fresh domain database and a fresh one for the Prefect server
    (asyncpg), both on the test server, as production runs them. On SQLite the Prefect server once stalled on
    "database is locked" for a minute under the PostgreSQL suite's load and lost a suspend's run-input schema (a CI
    rehearsal of eefed3a, 2026-12-05): the PostgreSQL run no longer depends on it."""
    if TEST_DATABASE == "sqlite":
        return f"sqlite:///{tmp / 'robotjobs-e2e.db'}", None, None
    import psycopg

    url = make_url(TEST_DATABASE)
    names = [f"rj_e2e_{uuid.uuid4().hex[:10]}", f"rj_e2e_prefect_{uuid.uuid4().hex[:10]}"]
    conninfo = dict(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres")
    if url.password:
        conninfo["password"] = url.password
    with psycopg.connect(**conninfo, autocommit=True, connect_timeout=5) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    domain = url.set(database=names[0]).render_as_string(hide_password=False)
    prefect = url.set(drivername="postgresql+asyncpg", database=names[1]).render_as_string(hide_password=False)
    return domain, prefect, drop


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    # Logs outlive pytest's temporary directories (it keeps only the last few runs).
    log_dir = Path(os.environ.get("ROBOTJOBS_E2E_LOG_DIR") or PROJECT_ROOT / "var" / "e2e-logs") / time.strftime(
        "%Y%m%d-%H%M%S"
    )
    database_url, prefect_database_url, drop_database = _e2e_databases(tmp)
    upgrade(database_url)
    engine = make_engine(database_url)
    credentials_key = Fernet.generate_key().decode()
    prefect_home = tmp / "prefect-home"
    started: list = []
    simulator = proxy = None
    try:
        simulator = start_simulator(port=0, delay=0.1)
        auth_string = f"e2e:{secrets.token_urlsafe(16)}"
        server, api_url = start_prefect_server(
            prefect_home, log_dir=log_dir, auth_string=auth_string, database_url=prefect_database_url
        )
        started.append(server)
        host_port = api_url.split("//", 1)[1].split("/", 1)[0]
        proxy = CuttableProxy("127.0.0.1", int(host_port.rsplit(":", 1)[1]))
        domain_env = {
            "DATABASE_URL": database_url,
            "CREDENTIALS_KEY": credentials_key,
            "PREFECT_API_AUTH_STRING": auth_string,
        }
        webhook, webhook_url = start_webhook(
            env={
                **domain_env,
                "PREFECT_HOME": str(prefect_home),
                # The webhook reaches Prefect through a proxy a test can cut (lost resume).
                "PREFECT_API_URL": f"http://127.0.0.1:{proxy.port}/api",
                "ROBOTJOBS_WEBHOOK_ACCESSLOG": "-",
            },
            log_dir=log_dir,
        )
        started.append(webhook)
        serve = start_flow_runner(
            prefect_home,
            api_url,
            env={
                **domain_env,
                "ROBOT_URL": simulator.url,
                "PUBLIC_BASE_URL": webhook_url,
                "ROBOT_DISPATCH_TIMEOUT_S": str(DISPATCH_TIMEOUT_S),
                "PENDING_ORPHAN_AFTER_S": str(PENDING_ORPHAN_AFTER_S),
                "CALLBACK_SECONDS_PER_ITEM": str(SECONDS_PER_ITEM),
                "CALLBACK_BASE_SECONDS": str(BASE_SECONDS),
                "RECONCILER_ENABLED": "true",
                # No schedule here: a scheduled reconcile racing the tests' own would make them flaky. The
                # schedule is checked in test_deploy (prefect.yaml) and by `make demo` (served).
                "ROBOTJOBS_RECONCILE_SCHEDULED": "false",
            },
            log_dir=log_dir,
        )
        started.append(serve)
        with temporary_settings(
            updates={PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth_string, PREFECT_CLIENT_MAX_RETRIES: 2}
        ):
            yield Stack(
                api_url, webhook_url, simulator, serve, webhook, proxy, engine, credentials_key, log_dir, auth_string
            )
    finally:
        for process in reversed(started):
            process.stop()
        if proxy is not None:
            proxy.stop()
        if simulator is not None:
            simulator.stop()
        engine.dispose() if "engine" in locals() else None
        if drop_database:
            drop_database()
        if os.environ.get("ROBOTJOBS_E2E_SHOW_LOGS"):
            for log in sorted(log_dir.glob("*.log")):
                print(f"===== {log.name}\n{log.read_text(errors='replace')[-5000:]}")


@pytest.fixture
def sim(stack):
    """The simulator reset to a fast, successful robot for each test (a batch a test left held is dropped)."""
    if not stack.simulator._thread.is_alive():
        stack.restart_simulator()
    stack.simulator.reset()
    stack.simulator.configure(
        scenario="success",
        delay=0.1,
        duplicate_callbacks=False,
        early_callbacks=0,
        fatal_after=1,
        dispatch_status=None,
        order_scenarios={},
        unknown_cities=[],
        answer_delay=0.0,
        drop_answer=False,
    )
    yield stack.simulator
    stack.prefect_proxy.cut = False
