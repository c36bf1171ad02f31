"""The orchestration's memory on a large batch: peak RSS of each flow-run process of one real N-order batch.

Starts its own stack on 127.0.0.1 with latency_bench's helpers (a Prefect server with basic auth on its own SQLite,
`python -m flows.serve`, the webhook under gunicorn, the robot simulator) on a fresh domain database (a private
PostgreSQL by default), seeds a workspace of N orders (default 10,000), submits it through the `submit-robot-job`
deployment as an operator does, and lets a fast simulated robot (`--delay` s per order) report every result in signed
batch reports of ≤ 5,000. While it runs, every process under the runner (the `python -m prefect.engine` of the
first start, suspended, then the one of the resumed finish: summary + artifacts of N items) is polled for VmHWM
(its peak RSS, /proc/PID/status) every 50 ms. Prints each flow-run process's peak (target: ≤ 300 MB), the job's
counts (they must be exact) and the time from click to Completed.

    .venv/bin/python -m benchmarks.flow_memory_bench [--orders 10000] [--delay 0.003] [--database-url URL|sqlite]
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from uuid import UUID

from cryptography.fernet import Fernet
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from sqlmodel import select

from benchmarks.common import database, label, rss_mb, seed_workspace
from benchmarks.latency_bench import _commit, _deployment_id, _wait_state, start_stack, stop_stack
from domain.db import UnitOfWork, make_engine
from domain.models import RobotJob
from flows.deployments import SUBMIT
from simulator.server import start_simulator
from stack.processes import child_pids, process_cmdline

COMMAND = ".venv/bin/python -m benchmarks.flow_memory_bench"
TARGET_MB = 300


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set size of a live process, in MB (VmHWM); None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in child_pids(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


class PeakWatcher:
    """Polls the VmHWM of every process under `root` until stopped: {pid: (command line, peak MB, first seen)}."""

    def __init__(self, root: int, interval_s: float = 0.05) -> None:
        self.root, self.interval_s = root, interval_s
        self.peaks: dict[int, tuple[str, float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vmhwm-poll", daemon=True)

    def __enter__(self) -> PeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for pid in descendants(self.root):
                peak = vm_hwm_mb(pid)
                if peak is None:
                    continue
                cmdline, known, seen = self.peaks.get(pid, ("", 0.0, time.time()))
                self.peaks[pid] = (cmdline or process_cmdline(pid), max(known, peak), seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument(
        "--delay",
        type=float,
        default=0.003,
        help="the simulated robot's seconds per order: the batch must outlast its run's suspend",
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL or sqlite; default: a private PostgreSQL")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the batch's run to end")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="robotjobs-flowmem-"))
    credentials_key = Fernet.generate_key().decode()
    auth_string = f"bench:{secrets.token_urlsafe(12)}"
    signing_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with database(args.database_url, name="flowmem") as database_url:
        engine = make_engine(database_url)
        started = []
        simulator = start_simulator(port=0, delay=args.delay, report="batch", webhook_secret=signing_secret)
        try:
            domain_env = {
                "DATABASE_URL": database_url,
                "CREDENTIALS_KEY": credentials_key,
                "PREFECT_API_AUTH_STRING": auth_string,
            }
            api_url, _ = start_stack(
                started, tmp, domain_env, simulator.url, webhook_env={"WEBHOOK_SIGNING_SECRETS": signing_secret}
            )
            runner = started[-1]
            assert runner.pid is not None
            workspace_id = seed_workspace(engine, credentials_key, args.orders, name="flow memory")
            runner_before = rss_mb(runner.pid)
            with (
                temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth_string}),
                get_client(sync_client=True) as client,
                PeakWatcher(runner.pid) as watcher,
            ):
                t0 = time.monotonic()
                client.create_flow_run_from_deployment(
                    _deployment_id(client, SUBMIT), parameters={"workspace": workspace_id}
                )
                deadline = time.monotonic() + args.timeout
                job = None
                while time.monotonic() < deadline:
                    with UnitOfWork(engine, readonly=True) as uow:
                        job = uow.session.exec(select(RobotJob).where(RobotJob.workspace_id == workspace_id)).first()
                    if job and job.status in ("completed", "failed") and job.flow_run_id:
                        break
                    time.sleep(0.5)
                assert job is not None and job.flow_run_id, f"no job ended: {job}"
                recorded_s = time.monotonic() - t0
                _wait_state(client, UUID(job.flow_run_id), "COMPLETED", timeout_s=args.timeout)
                completed_s = time.monotonic() - t0
                time.sleep(1)  # the finishing process exits; its last peak is polled before
            flow_runs = {pid: peak for pid, peak in watcher.peaks.items() if "prefect.engine" in peak[0]}
            print(
                f"\nflow-run memory ({args.orders:,} orders, robot {args.delay} s/order, batch reports of ≤ 5,000, "
                f"{label(database_url)}, commit {_commit()})"
            )
            runner_after = rss_mb(runner.pid)
            print(f"  runner (flows.serve) RSS before the batch {runner_before:6.1f} MB, after {runner_after:6.1f} MB")
            for n, (pid, (_, peak, _)) in enumerate(sorted(flow_runs.items(), key=lambda kv: kv[1][2])):
                what = "start → suspend" if n == 0 else "resumed → summary + artifacts"
                print(f"  flow-run process {n + 1} (pid {pid}, {what}): peak RSS (VmHWM) {peak:6.1f} MB")
            worst = max((peak for _, peak, _ in flow_runs.values()), default=float("nan"))
            print(f"  worst flow-run process {worst:6.1f} MB (target ≤ {TARGET_MB} MB)")
            print(
                f"  job {job.status}: {job.total_items} items, {job.success_count} succeeded, "
                f"{job.error_count} failed; results recorded {recorded_s:.1f} s, run Completed {completed_s:.1f} s "
                "after the click"
            )
            exact = job.status == "completed" and job.success_count == job.total_items == args.orders
            print(f"  counts exact: {'yes' if exact else 'NO'}; {len(flow_runs)} flow-run processes seen")
            print(f"rerun: {COMMAND} --orders {args.orders} --delay {args.delay}")
            return 0 if exact and len(flow_runs) >= 2 else 1
        finally:
            stop_stack(started, simulator, engine)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
