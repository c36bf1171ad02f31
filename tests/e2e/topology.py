"""The production topology on one machine, for tests/e2e/test_topology.py: a private PostgreSQL holding Prefect's
database (asyncpg) and the domain's (psycopg), a Prefect server with basic auth on it, the deployments of
prefect.yaml registered by `prefect deploy --all` on a process work pool, two `prefect worker start` processes, the
webhook under gunicorn (4 workers) and the robot simulator, all on 127.0.0.1, each stopped by its PID at the end.

The portal-password key reaches the workers' flow runs as production does: a Prefect Secret block named in
CREDENTIALS_KEY_SECRET_BLOCK, with CREDENTIALS_KEY unset and no local key generation.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from domain.db import make_engine
from domain.migrate import upgrade
from stack.prefect_auth import auth_header, client_env
from stack.private_postgres import temporary_postgres
from stack.processes import (
    PROJECT_ROOT,
    ManagedProcess,
    deploy_to_pool,
    prefect_env,
    start_prefect_server,
    start_simulator_process,
    start_webhook,
    start_worker,
)
from tests.e2e.conftest import BASE_SECONDS, DISPATCH_TIMEOUT_S, SECONDS_PER_ITEM

POOL = "robotjobs"
WORKERS = ("worker-a", "worker-b")
# Each worker's concurrent flow runs: below the 20 batches, so neither worker can take every run alone.
WORKER_LIMIT = 5
WEBHOOK_WORKERS = 4
SECRET_BLOCK = "robotjobs-credentials-key"


@dataclass
class Topology:
    api_url: str
    auth_string: str
    webhook_url: str
    simulator_url: str
    engine: object
    credentials_key: str  # the key the seeded portal passwords are encrypted with (the Secret block's value)
    log_dir: Path
    workers: list[ManagedProcess] = field(default_factory=list)

    def api(self) -> httpx.Client:
        """An httpx client of the Prefect API with the server's basic auth."""
        return httpx.Client(base_url=self.api_url, headers=auth_header(self.auth_string), timeout=30)

    def simulator_state(self) -> dict:
        return httpx.get(f"{self.simulator_url}/_sim/state", timeout=10).json()

    def configure_simulator(self, **changes: object) -> None:
        httpx.post(f"{self.simulator_url}/_sim/config", json=changes, timeout=10).raise_for_status()

    def runs_submitted_by(self, worker: ManagedProcess) -> set[str]:
        """Flow-run ids this worker started (its log: "Worker '<name>' submitting flow run '<id>'")."""
        return set(
            re.findall(
                rf"Worker '{re.escape(worker.name)}' submitting flow run '([0-9a-f-]{{36}})'",
                worker.log_path.read_text(encoding="utf-8", errors="replace"),
            )
        )


def _save_secret_block(api_url: str, auth_string: str, value: str) -> None:
    """The operator's one-time step: the Fernet key as a Prefect Secret block (its value encrypted by the server)."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth_string}):
        Secret(value=value).save(SECRET_BLOCK, overwrite=True)


def start_topology(tmp: Path, log_dir: Path) -> Iterator[Topology]:
    """Start everything (a generator for a pytest fixture); every process is stopped, by PID, when it resumes."""
    with ExitStack() as cleanup:
        postgres = cleanup.enter_context(temporary_postgres(prefix="robotjobs-topology-"))
        postgres.create_database("prefect")
        database_url = postgres.create_database("robotjobs")
        upgrade(database_url)
        engine = make_engine(database_url)
        cleanup.callback(engine.dispose)

        auth_string = f"topology:{secrets.token_urlsafe(16)}"
        started = time.monotonic()
        server, api_url = start_prefect_server(
            tmp / "server-home",
            log_dir=log_dir,
            auth_string=auth_string,
            timeout_s=240,
            database_url=postgres.url("prefect", driver="asyncpg"),
        )
        cleanup.callback(server.stop)
        print(f"Prefect server on PostgreSQL ready in {time.monotonic() - started:.1f} s", flush=True)

        credentials_key = Fernet.generate_key().decode()
        _save_secret_block(api_url, auth_string, credentials_key)
        simulator, simulator_url = start_simulator_process(log_dir=log_dir, args=["--delay", "0.1"])
        cleanup.callback(simulator.stop)

        client = client_env(api_url, auth_string)
        webhook, webhook_url = start_webhook(
            env={
                "DATABASE_URL": database_url,
                **client,
                "PREFECT_HOME": str(tmp / "webhook-home"),
                "WEBHOOK_SPOOL_DIR": str(tmp / "spool"),
            },
            log_dir=log_dir,
            workers=WEBHOOK_WORKERS,
            threads=1,
            timeout_s=120,
        )
        cleanup.callback(webhook.stop)

        deploy_home = tmp / "deploy-home"
        started = time.monotonic()
        deploy_to_pool(
            prefect_env(deploy_home, api_url, auth_string=auth_string, ROBOTJOBS_HOME=str(PROJECT_ROOT)), pool=POOL
        )
        print(f"work pool + prefect deploy --all in {time.monotonic() - started:.1f} s", flush=True)

        worker_settings = {
            "ROBOTJOBS_HOME": str(PROJECT_ROOT),
            "DATABASE_URL": database_url,
            "ROBOT_URL": simulator_url,
            "PUBLIC_BASE_URL": webhook_url,
            "ROBOT_DISPATCH_TIMEOUT_S": str(DISPATCH_TIMEOUT_S),
            "CALLBACK_SECONDS_PER_ITEM": str(SECONDS_PER_ITEM),
            "CALLBACK_BASE_SECONDS": str(BASE_SECONDS),
            "CREDENTIALS_KEY_SECRET_BLOCK": SECRET_BLOCK,
            "CREDENTIALS_KEY_AUTOGENERATE": "false",  # production: the Secret block or nothing
        }
        workers = []
        for name in WORKERS:  # each as on its own host: its own PREFECT_HOME
            env = prefect_env(tmp / f"{name}-home", api_url, auth_string=auth_string, **worker_settings)
            env.pop("CREDENTIALS_KEY", None)
            worker = start_worker(name, env=env, log_dir=log_dir, pool=POOL, limit=WORKER_LIMIT)
            cleanup.callback(worker.stop)
            workers.append(worker)

        yield Topology(api_url, auth_string, webhook_url, simulator_url, engine, credentials_key, log_dir, workers)
        if os.environ.get("ROBOTJOBS_E2E_SHOW_LOGS"):
            for log in sorted(log_dir.glob("*.log")):
                print(f"===== {log.name}\n{log.read_text(errors='replace')[-5000:]}")
