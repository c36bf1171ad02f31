"""Process supervision for the local stack and the end-to-end tests: a Prefect server, the served flows, the
webhook under gunicorn and the robot simulator, each on a loopback port, each stopped by its own PID.

Every child starts in its own session, so stopping it (SIGTERM, then SIGKILL) also reaches the processes it
started itself (gunicorn workers, flow-run subprocesses) through its process group, and nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from stack.prefect_auth import CLIENT_VAR, SERVER_VAR, auth_header

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent


class ProcessFailed(RuntimeError):
    """A supervised process exited or never became ready; the message ends with its log's tail."""


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedProcess:
    """One child process with its output in `log_path`: `start()`, `wait_until(check)`, `stop()`."""

    def __init__(self, name: str, args: list[str], *, env: Mapping[str, str], log_path: Path, cwd: Path = PROJECT_ROOT):
        self.name, self.args, self.env, self.log_path, self.cwd = name, args, dict(env), Path(log_path), cwd
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.args, cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def wait_until(self, check: Callable[[], bool], *, timeout_s: float, what: str) -> ManagedProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessFailed(f"{self.name} exited ({self.process.returncode}) before {what}:\n{self.log_tail()}")
            try:
                if check():
                    return self
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
        raise ProcessFailed(f"{self.name}: no {what} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def wait_http_ok(self, url: str, *, timeout_s: float = 60) -> ManagedProcess:
        return self.wait_until(
            lambda: httpx.get(url, timeout=2).status_code == 200, timeout_s=timeout_s, what=f"200 from {url}"
        )

    def stop(self, *, grace_s: float = 15) -> None:
        """SIGTERM our child's process group (the group we created for it), then SIGKILL what is left."""
        if self.process is not None:
            pgid = self.process.pid  # start_new_session: the child leads its own group
            for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
                if self.process.poll() is not None:
                    break
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=wait_s)
                except subprocess.TimeoutExpired:
                    continue
            try:  # children of a child that already exited (e.g. flow-run subprocesses)
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log is not None:
            self._log.close()
            self._log = None


def base_env(**extra: str) -> dict[str, str]:
    # The local stack's processes share the key `make up` generated under var/ (never a production path).
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONUNBUFFERED": "1",
        "CREDENTIALS_KEY_AUTOGENERATE": "true",
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def prefect_env(
    prefect_home: Path, api_url: str | None = None, *, auth_string: str | None = None, **extra: str
) -> dict[str, str]:
    """Environment of a process talking to (or being) our Prefect server; never the user's profile. With
    `auth_string` (user:password) the process's Prefect client sends it as basic auth."""
    env = base_env(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="INFO",
        **extra,
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    if auth_string:
        env[CLIENT_VAR] = auth_string
    return env


def start_prefect_server(
    prefect_home: Path,
    *,
    port: int | None = None,
    log_dir: Path,
    timeout_s: float = 90,
    ui: bool = False,
    auth_string: str | None = None,
    database_url: str | None = None,
    **extra_env: str,
) -> tuple[ManagedProcess, str]:
    """`prefect server start` on 127.0.0.1 with its own SQLite under `prefect_home`, or on `database_url`
    (postgresql+asyncpg://..., the production setup); returns (process, api_url).

    With `auth_string` (user:password) the server refuses every API request without that basic auth (401), except
    its health probe; the UI asks for it once. Its own services (automations' actions) use the same credential.
    """
    port = port or free_port()
    prefect_home.mkdir(parents=True, exist_ok=True)
    if database_url:
        extra_env = {**extra_env, "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url}
    env = prefect_env(prefect_home, auth_string=auth_string, **extra_env)
    if auth_string:
        env[SERVER_VAR] = auth_string
    if ui:  # the operators' stack serves the Prefect UI; tests and the demo do not need it
        env.update(PREFECT_UI_ENABLED="true", PREFECT_SERVER_UI_ENABLED="true")
    process = ManagedProcess(
        "prefect-server",
        [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *([] if ui else ["--no-ui"]),
            "--analytics-off",
        ],
        env=env,
        log_path=log_dir / "prefect-server.log",
    ).start()
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        process.wait_http_ok(f"{api_url}/health", timeout_s=timeout_s)
    except Exception:
        process.stop()
        raise
    return process, api_url


def deployment_names(api_url: str, auth_string: str | None = None) -> set[str]:
    response = httpx.post(
        f"{api_url}/deployments/filter", json={"limit": 200}, timeout=5, headers=auth_header(auth_string)
    )
    response.raise_for_status()
    return {d["name"] for d in response.json()}


def start_flow_runner(
    prefect_home: Path,
    api_url: str,
    *,
    env: Mapping[str, str],
    log_dir: Path,
    expected: set[str] | None = None,
    timeout_s: float = 90,
) -> ManagedProcess:
    """`python -m flows.serve` (poll every second) until its deployments are registered."""
    from flows.deployments import ORCHESTRATE, RECONCILE, RETRY, SUBMIT

    expected = expected or {SUBMIT, ORCHESTRATE, RETRY, RECONCILE}
    runner_env = prefect_env(prefect_home, api_url, PREFECT_RUNNER_POLL_FREQUENCY="1", **dict(env))
    auth_string = runner_env.get(CLIENT_VAR)  # the server's basic auth, when on: passed in `env` (or inherited)
    process = ManagedProcess(
        "flows-serve", [PYTHON, "-m", "flows.serve"], env=runner_env, log_path=log_dir / "flows-serve.log"
    ).start()
    try:
        process.wait_until(
            lambda: expected <= deployment_names(api_url, auth_string), timeout_s=timeout_s, what="deployments"
        )
    except Exception:
        process.stop()
        raise
    return process


def prefect_cli(env: Mapping[str, str], *args: str, timeout_s: float = 300) -> str:
    """`prefect --no-prompt <args>` from the project directory (where prefect.yaml is); its output, or
    ProcessFailed with the output's tail when it exits non-zero."""
    done = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        cwd=PROJECT_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise ProcessFailed(
            f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def deploy_to_pool(env: Mapping[str, str], *, pool: str = "robotjobs") -> None:
    """The production deploy step: `prefect work-pool create <pool> --type process` (unless it exists), then
    `prefect deploy --all` (prefect.yaml's deployments on that pool). `env`: PREFECT_API_URL, the basic auth and
    ROBOTJOBS_HOME (the checkout the workers' pull step moves to)."""
    try:
        prefect_cli(env, "work-pool", "inspect", pool, timeout_s=120)
    except ProcessFailed:
        prefect_cli(env, "work-pool", "create", pool, "--type", "process", timeout_s=120)
    prefect_cli(env, "deploy", "--all")


def worker_names(api_url: str, pool: str, auth_string: str | None = None) -> set[str]:
    response = httpx.post(
        f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=5, headers=auth_header(auth_string)
    )
    response.raise_for_status()
    return {w["name"] for w in response.json()}


def start_worker(
    name: str,
    *,
    env: Mapping[str, str],
    log_dir: Path,
    pool: str = "robotjobs",
    limit: int | None = None,
    timeout_s: float = 90,
) -> ManagedProcess:
    """`prefect worker start --pool <pool> --name <name>` (a process worker: each flow run a subprocess with the
    worker's environment), polling every second, until the server lists it in the pool. `env` must hold
    PREFECT_API_URL and, when auth is on, PREFECT_API_AUTH_STRING."""
    worker_env = {"PREFECT_WORKER_QUERY_SECONDS": "1", **dict(env)}
    process = ManagedProcess(
        name,
        [
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            pool,
            "--name",
            name,
            "--type",
            "process",
            *(["--limit", str(limit)] if limit else []),
        ],
        env=worker_env,
        log_path=log_dir / f"{name}.log",
    ).start()
    try:
        process.wait_until(
            lambda: name in worker_names(env["PREFECT_API_URL"], pool, env.get(CLIENT_VAR)),
            timeout_s=timeout_s,
            what=f"worker {name} in pool {pool}",
        )
    except Exception:
        process.stop()
        raise
    return process


def start_webhook(
    *,
    env: Mapping[str, str],
    log_dir: Path,
    port: int | None = None,
    workers: int = 2,
    threads: int = 8,
    timeout_s: float = 30,
) -> tuple[ManagedProcess, str]:
    """The webhook under gunicorn (webhook/gunicorn.conf.py) on 127.0.0.1; returns (process, base_url)."""
    port = port or free_port()
    process = ManagedProcess(
        "webhook",
        [str(BIN / "gunicorn"), "-c", str(PROJECT_ROOT / "webhook" / "gunicorn.conf.py")],
        env=base_env(
            ROBOTJOBS_WEBHOOK_BIND=f"127.0.0.1:{port}",
            ROBOTJOBS_WEBHOOK_WORKERS=str(workers),
            ROBOTJOBS_WEBHOOK_THREADS=str(threads),
            **dict(env),
        ),
        log_path=log_dir / "webhook.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http_ok(f"{url}/readyz", timeout_s=timeout_s)
    except Exception:
        process.stop()
        raise
    return process, url


def start_simulator_process(
    *, log_dir: Path, port: int | None = None, args: list[str] | None = None, timeout_s: float = 20
) -> tuple[ManagedProcess, str]:
    """`python -m simulator` on 127.0.0.1; returns (process, base_url). Tests may use simulator.start_simulator."""
    port = port or free_port()
    process = ManagedProcess(
        "simulator",
        [PYTHON, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port), *(args or [])],
        env=base_env(),
        log_path=log_dir / "simulator.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http_ok(f"{url}/_sim/state", timeout_s=timeout_s)
    except Exception:
        process.stop()
        raise
    return process, url


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc), e.g. the flow-run subprocesses of the served runner."""
    children: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    if not task_dir.exists():
        return children
    for task in task_dir.iterdir():
        try:
            children += [int(p) for p in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return children


def process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""
