"""The local stack on loopback: Prefect server, served flows, webhook (gunicorn), robot simulator, fake WhatsApp
provider and automation runner, wired together through their settings. Used by `make up` and `make demo`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from domain.migrate import upgrade
from domain.settings import VAR_DIR, get_settings
from stack.prefect_auth import client_env, local_auth_string
from stack.private_postgres import PrivatePostgres
from stack.processes import (
    PYTHON,
    ManagedProcess,
    base_env,
    free_port,
    start_flow_runner,
    start_prefect_server,
    start_simulator_process,
    start_webhook,
)


@dataclass
class StackConfig:
    state_dir: Path = VAR_DIR / "stack"
    database_url: str | None = None  # default: settings (DATABASE_URL or var/robotjobs.db)
    # A folder for a private PostgreSQL (make up PG=private): it then holds the domain database ("robotjobs") and
    # the Prefect server's ("prefect"), and database_url is ignored. None: SQLite for both, as before.
    private_postgres: Path | None = None
    prefect_port: int | None = None  # None: a free port
    webhook_port: int | None = None
    simulator_port: int | None = None
    whatsapp_port: int | None = None
    ui: bool = False
    simulator_args: list[str] = field(default_factory=list)
    automation_runners: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    # The Prefect server's basic auth (user:password). None: Prefect's own setting if configured, else the
    # credential in var/prefect-auth (stack/prefect_auth.py). The stack never runs an open server.
    auth_string: str | None = None


@dataclass
class RunningStack:
    """What was started, and where: URLs for people, PIDs for `make down`."""

    api_url: str
    ui_url: str
    webhook_url: str
    simulator_url: str
    whatsapp_url: str
    database_url: str
    log_dir: Path
    processes: list[ManagedProcess | PrivatePostgres]
    auth_string: str = field(repr=False)  # never in describe() / pids.json
    alerts: str = ""  # what became of the alert automations (flows/alerts.py)

    def describe(self) -> dict:
        return {
            "api_url": self.api_url,
            "ui_url": self.ui_url,
            "webhook_url": self.webhook_url,
            "simulator_url": self.simulator_url,
            "whatsapp_url": self.whatsapp_url,
            "database_url": self.database_url.split("@")[-1],
            "log_dir": str(self.log_dir),
            "pids": {p.name: p.pid for p in self.processes},
        }

    def stop(self) -> None:
        # Reverse order: producers of work (runner, flows) first, then what they call.
        for process in reversed(self.processes):
            process.stop()


def start_stack(config: StackConfig) -> RunningStack:
    """Start every process; if one fails, stop those already started and raise."""
    settings = get_settings()
    database_url = config.database_url or settings.database_url
    auth_string = config.auth_string or local_auth_string()
    log_dir = config.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list[ManagedProcess | PrivatePostgres] = []
    prefect_database: dict[str, str] = {}  # default: the Prefect server's own SQLite under its PREFECT_HOME
    try:
        if config.private_postgres is not None:
            postgres = PrivatePostgres(config.private_postgres, durable=True)
            started.append(postgres.start())
            database_url = postgres.create_database("robotjobs")
            postgres.create_database("prefect")
            prefect_database["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres.url("prefect", driver="asyncpg")
        upgrade(database_url)
        server, api_url = start_prefect_server(
            config.state_dir / "prefect",
            port=config.prefect_port,
            log_dir=log_dir,
            ui=config.ui,
            # Schedule the every-minute reconciler within seconds of its deployment appearing, not a minute later.
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
            auth_string=auth_string,
            **prefect_database,
        )
        started.append(server)
        alerts = ensure_stack_alerts(api_url, auth_string)
        simulator, simulator_url = start_simulator_process(
            log_dir=log_dir, port=config.simulator_port, args=config.simulator_args
        )
        started.append(simulator)
        whatsapp_port = config.whatsapp_port or free_port()
        whatsapp_url = f"http://127.0.0.1:{whatsapp_port}"
        whatsapp = ManagedProcess(
            "fake-whatsapp",
            [PYTHON, "-m", "automations.fake_whatsapp", "--port", str(whatsapp_port)],
            env=base_env(),
            log_path=log_dir / "fake-whatsapp.log",
        ).start()
        started.append(whatsapp.wait_http_ok(f"{whatsapp_url}/healthz", timeout_s=20))

        webhook_port = config.webhook_port or free_port()
        app_env = {
            "DATABASE_URL": database_url,
            "ROBOT_URL": simulator_url,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{webhook_port}",
            **client_env(api_url, auth_string),  # URL and basic auth: the webhook's relay, the flows, the runner
            "WHATSAPP_BASE_URL": whatsapp_url,
            **config.extra_env,
        }
        webhook, webhook_url = start_webhook(env=app_env, log_dir=log_dir, port=webhook_port)
        started.append(webhook)
        started.append(start_flow_runner(config.state_dir / "prefect", api_url, env=app_env, log_dir=log_dir))
        for n in range(config.automation_runners):
            started.append(
                ManagedProcess(
                    f"automation-runner-{n + 1}",
                    [PYTHON, "-m", "automations.runner", "--worker-id", f"local-{n + 1}"],
                    env=base_env(**app_env),
                    log_path=log_dir / f"automation-runner-{n + 1}.log",
                ).start()
            )
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    ui_base = api_url[: -len("/api")]
    return RunningStack(
        api_url=api_url,
        ui_url=ui_base,
        webhook_url=webhook_url,
        simulator_url=simulator_url,
        whatsapp_url=whatsapp_url,
        database_url=database_url,
        log_dir=log_dir,
        processes=started,
        auth_string=auth_string,
        alerts=alerts,
    )


def pids_file(state_dir: Path) -> Path:
    return state_dir / "pids.json"


def write_pids(stack: RunningStack, state_dir: Path) -> None:
    record = {**stack.describe(), "cmdlines": {p.name: " ".join(p.args) for p in stack.processes}}
    pids_file(state_dir).write_text(json.dumps(record, indent=2))


@contextmanager
def prefect_client(api_url: str, auth_string: str | None) -> Iterator[None]:
    """This process's Prefect client pointed at our server, with its credential. Prefect reads its settings from the
    environment once, at import (stack start-up has imported it), so a settings context, not os.environ."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth_string}):
        yield


def ensure_stack_alerts(api_url: str, auth_string: str | None) -> str:
    """Create or update the alert automations on the stack's server (ALERT_WEBHOOK_URL), or say why not."""
    from flows.alerts import ensure_alerts

    with prefect_client(api_url, auth_string):
        return ensure_alerts()
