"""A real gunicorn serving the webhook on a free loopback port, for tests and the benchmark; stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = PROJECT_ROOT / "webhook" / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    """`with GunicornServer(env=..., worker_class=...) as server: server.url`; stderr goes to `server.log_path`.
    `project_root`: the tree whose code it runs (benchmarks/webhook_ab.py runs another commit's tree too).

    Ready when a worker answers /readyz; with `all_workers`, once every worker has also created its app (its
    `webhook_app_created` line). The benchmarks ask for that: the first worker answers while the others are still
    importing (~1.7 s of CPU each with Prefect's client), and a worker booting inside a measured window was counted
    as the webhook's cost (BENCHMARKS.md round 11)."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        log_path: Path,
        worker_class: str = "sync",
        workers: int = 2,
        threads: int = 1,
        extra_args: list[str] | None = None,
        ready_timeout_s: float = 30,
        project_root: Path = PROJECT_ROOT,
        all_workers: bool = False,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = {
            **os.environ,
            **env,
            "ROBOTJOBS_WEBHOOK_BIND": f"127.0.0.1:{self.port}",
            "ROBOTJOBS_WEBHOOK_WORKER_CLASS": worker_class,
            "ROBOTJOBS_WEBHOOK_WORKERS": str(workers),
            "ROBOTJOBS_WEBHOOK_THREADS": str(threads),
            "ROBOTJOBS_WEBHOOK_ACCESSLOG": env.get("ROBOTJOBS_WEBHOOK_ACCESSLOG", "-"),
            "PYTHONPATH": str(project_root),
        }
        self._root = project_root
        self._args = extra_args or []
        self._ready_timeout_s = ready_timeout_s
        self._workers = workers if all_workers else 1
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> GunicornServer:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self._log = open(self.log_path, "ab")
        self._log_start = self._log.tell()
        self.process = subprocess.Popen(
            [str(gunicorn), "-c", str(self._root / GUNICORN_CONF.relative_to(PROJECT_ROOT)), *self._args],
            cwd=self._root,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.process.returncode}: {self.log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200 and self._apps() >= self._workers:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"gunicorn did not become ready: {self.log_path.read_text()[-3000:]}")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # gunicorn's graceful stop; its workers exit with it
            try:
                self.process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()

    def _apps(self) -> int:
        """How many workers created their app since this server started (1 when not asked to count)."""
        if self._workers == 1:
            return 1
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            return log.read().count(b'"webhook_app_created"')

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")
