"""Click to robot, and last result to Completed, against Prefect's own floor measured in the same run.

Starts its own stack on 127.0.0.1 as the end-to-end tests do (a Prefect server with basic auth on its own SQLite,
`python -m flows.serve` polling every second and also serving the trivial floor flows of flows/floor.py, the
webhook under gunicorn, the robot simulator, a SQLite domain database), then, N times each:

- floor start: create a run of `floor-start` (a flow that does nothing) → its `Running` state;
- floor resume: a `floor-resume` run suspended with a keyed input → resumed through the client's resume call (the
  relay's own) → its `Completed` state;
- click → robot: `create_flow_run_from_deployment` of `submit-robot-job` → the simulator received the dispatch;
- result → Completed: the simulator's last callback answered → the batch's run (the job's `flow_run_id`) `Completed`.

Each start (and the floor's resume) waits a random part of the runner's poll interval first (`--seed`), so the wait
for the poll is uniform on both sides. Prints the median and spread of each, and the ratios of the medians
(targets: ≤ 1.3 each).

    .venv/bin/python -m benchmarks.latency_bench [--runs 5] [--orders 32] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from uuid import UUID

from cryptography.fernet import Fernet
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from sqlmodel import select

from domain.db import UnitOfWork, make_engine
from domain.migrate import upgrade
from domain.models import RobotJob
from flows.deployments import ORCHESTRATE, RECONCILE, RETRY, SUBMIT
from flows.floor import FLOOR_RESUME, FLOOR_START
from sample_data.seed import DEMO_ORDERS, seed_demo
from simulator.server import start_simulator
from stack.processes import start_flow_runner, start_prefect_server, start_webhook

COMMAND = ".venv/bin/python -m benchmarks.latency_bench"
# The runner's poll interval here (stack.processes.start_flow_runner: every second).
POLL_INTERVAL_S = 1.0
# Each measured start waits a random 0 s–poll interval first. Without it the bench's own rhythm fixed the phase of
# every creation against the runner's poll: measured at 9e507bf, 15 runs, the floor's starts waited a median
# 0.19 s for the poll and the batches' 0.62 s, which read as our overhead. Seeded: `--seed` reruns the same phases.
PHASE = random.Random()


def random_phase() -> None:
    """Sleep a uniform random part of the poll interval, so that a run's wait for the poll is uniform on both sides,
    as an operator's click at any moment is."""
    time.sleep(PHASE.uniform(0.0, POLL_INTERVAL_S))


def _state_time(client, run_id: UUID, state_type: str, *, timeout_s: float = 120) -> float:
    """The server's timestamp (epoch seconds) of the run's first state of `state_type`, once it has one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for state in client.read_flow_run_states(run_id):
            if state.type.value == state_type:
                return state.timestamp.timestamp()
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id}: no {state_type} within {timeout_s:.0f} s")


def _wait_state(client, run_id: UUID, state_type: str, *, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = client.read_flow_run(run_id).state
        if state and state.type.value == state_type:
            return
        if state and state.is_final():
            raise RuntimeError(f"run {run_id} ended {state.type.value}: {state.message}")
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id}: not {state_type} within {timeout_s:.0f} s")


def _deployment_id(client, name: str) -> UUID:
    return client.read_deployment_by_name(f"{name}/{name}").id


def poll_waits(client, run_id: UUID) -> list[float]:
    """Each wait of the run for the runner's poll: from a `Scheduled` state to the `Pending` the runner proposed
    when it picked the run up (the first start, then each resume). Random in 0 s–poll interval, the same for the
    floor and for robotjobs: the figures "without the poll wait" subtract it from both."""
    states = sorted(client.read_flow_run_states(run_id), key=lambda state: state.timestamp)
    waits, scheduled = [], None
    for state in states:
        if state.type.value == "SCHEDULED":
            scheduled = state.timestamp.timestamp()
        elif state.type.value == "PENDING" and scheduled is not None:
            waits.append(state.timestamp.timestamp() - scheduled)
            scheduled = None
    return waits


def floor_start(client) -> tuple[float, float]:
    random_phase()
    t0 = time.time()
    run = client.create_flow_run_from_deployment(_deployment_id(client, FLOOR_START))
    running = _state_time(client, run.id, "RUNNING")
    if BREAKDOWN:
        _wait_state(client, run.id, "COMPLETED")
        for state in sorted(client.read_flow_run_states(run.id), key=lambda s: s.timestamp):
            print(f"    floor+{state.timestamp.timestamp() - t0:6.3f} s  state {state.type.value}")
    return running - t0, poll_waits(client, run.id)[0]


def floor_resume(client) -> tuple[float, float]:
    run = client.create_flow_run_from_deployment(_deployment_id(client, FLOOR_RESUME))
    _wait_state(client, run.id, "PAUSED")
    time.sleep(1.5)  # the suspended run's process has exited, as a batch's has when its last result comes
    random_phase()  # a batch's last result comes at any moment of the poll interval
    t0 = time.time()
    client.resume_flow_run(run.id, run_input={"note": "resume"})
    _wait_state(client, run.id, "COMPLETED")
    return _state_time(client, run.id, "COMPLETED") - t0, poll_waits(client, run.id)[-1]


def _submit_parameters(client, workspace_id: str, order_ids: list[str]) -> dict:
    """The submit's parameters for the code deployed: the nested `request` form (before #11) or the flat one."""
    schema = client.read_deployment_by_name(f"{SUBMIT}/{SUBMIT}").parameter_openapi_schema or {}
    if "request" in schema.get("properties", {}):
        return {"request": {"workspace_id": workspace_id, "orders": {"order_ids": order_ids}}}
    return {"workspace": workspace_id, "order_ids": order_ids}


def batch(client, engine, simulator, credentials_key: str, orders: list[tuple]) -> tuple[float, float, float, float]:
    """(click → the robot received the dispatch, last result answered → the batch's run Completed, and the poll
    wait within each)."""
    with UnitOfWork(engine) as uow:
        demo = seed_demo(
            uow.session, credentials_key=credentials_key, name=f"Bench {uuid.uuid4().hex[:6]}", orders=orders
        )
        uow.commit()
    parameters = _submit_parameters(client, demo.workspace_id, demo.order_ids)
    random_phase()
    t0 = time.time()
    client.create_flow_run_from_deployment(_deployment_id(client, SUBMIT), parameters=parameters)
    deadline = time.monotonic() + 120
    job = None
    while time.monotonic() < deadline:
        with UnitOfWork(engine, readonly=True) as uow:
            job = uow.session.exec(select(RobotJob).where(RobotJob.workspace_id == demo.workspace_id)).first()
        if job and job.status in ("completed", "failed") and job.flow_run_id:
            break
        time.sleep(0.1)
    assert job is not None and job.status == "completed", f"batch did not complete: {job}"
    run_id = UUID(job.flow_run_id)
    _wait_state(client, run_id, "COMPLETED")
    state = simulator.state()
    dispatched = [d["at"] for d in state["dispatches"] if d["jobId"] == job.id]
    answered = [c["at"] for c in state["callbacks"] if c["jobId"] == job.id]
    completed = _state_time(client, run_id, "COMPLETED")
    if BREAKDOWN:
        _print_breakdown(client, run_id, t0, dispatched[0], max(answered), completed)
    waits = poll_waits(client, run_id)
    return dispatched[0] - t0, completed - max(answered), waits[0], waits[-1]


BREAKDOWN = False


def _print_breakdown(client, run_id: UUID, t0: float, dispatched: float, answered: float, completed: float) -> None:
    """Where one batch's time went: the run's states and its task runs, relative to the click and to the last
    result (server timestamps; the simulator's clock for the dispatch and the last callback)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    marks = [(s.timestamp.timestamp(), f"state {s.type.value}") for s in client.read_flow_run_states(run_id)]
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    for t in tasks:
        if t.start_time:
            marks.append((t.start_time.timestamp(), f"task {t.name} start"))
        if t.end_time:
            marks.append((t.end_time.timestamp(), f"task {t.name} end"))
    marks += [(dispatched, "robot received dispatch"), (answered, "last callback answered")]
    for at, what in sorted(marks):
        base, label = (t0, "click") if at < answered else (answered, "result")
        print(f"    {label}+{at - base:6.3f} s  {what}")


def _spread(values: list[float], unit: str = " s") -> str:
    return (
        f"median {statistics.median(values):5.2f}{unit}  (min {min(values):5.2f}, max {max(values):5.2f}; "
        + ", ".join(f"{v:.2f}" for v in values)
        + ")"
    )


def _commit() -> str:
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.strip()
    return found.stdout.strip() + (" (+ uncommitted changes)" if dirty else "")


def start_stack(
    started: list,
    tmp: Path,
    domain_env: dict[str, str],
    robot_url: str,
    *,
    webhook_env: dict[str, str] | None = None,
    runner_env: dict[str, str] | None = None,
    expected: set[str] = frozenset(),
) -> tuple[str, str]:
    """A Prefect server (basic auth from `domain_env`), the webhook under gunicorn and `python -m flows.serve` (no
    reconciler schedule) on 127.0.0.1, each appended to `started` as it comes up (the caller stops them); returns
    (Prefect API URL, webhook URL). Generous start-up limits: the machine may be loaded."""
    home = tmp / "prefect-home"
    auth_string = domain_env["PREFECT_API_AUTH_STRING"]
    server, api_url = start_prefect_server(home, log_dir=tmp, auth_string=auth_string, timeout_s=300)
    started.append(server)
    webhook, webhook_url = start_webhook(
        env={**domain_env, **(webhook_env or {}), "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url},
        log_dir=tmp,
        timeout_s=300,
    )
    started.append(webhook)
    env = {
        **domain_env,
        "ROBOT_URL": robot_url,
        "PUBLIC_BASE_URL": webhook_url,
        "ROBOTJOBS_RECONCILE_SCHEDULED": "false",
    }
    started.append(
        start_flow_runner(
            home,
            api_url,
            log_dir=tmp,
            timeout_s=300,
            expected={SUBMIT, RETRY, ORCHESTRATE, RECONCILE, *expected},
            env={**env, **(runner_env or {})},
        )
    )
    return api_url, webhook_url


def stop_stack(started: list, simulator, engine) -> None:
    """Stop what `start_stack` started (last first), the simulator, and the benchmark's own engine."""
    for process in reversed(started):
        process.stop()
    simulator.stop()
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--orders", type=int, default=32, help="orders per batch (demo orders, up to 32)")
    parser.add_argument(
        "--delay",
        type=float,
        default=0.5,
        help="the simulated robot's seconds per order: a batch must outlast its run's suspend, as a "
        "real one (30 s per order) does, or the last result races the suspend instead",
    )
    parser.add_argument("--breakdown", action="store_true", help="print each batch's states and task runs in time")
    parser.add_argument("--seed", type=int, default=None, help="the random phases' seed (default: a new one)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    PHASE.seed(seed)
    global BREAKDOWN
    BREAKDOWN = args.breakdown

    tmp = Path(tempfile.mkdtemp(prefix="robotjobs-latency-"))
    database_url = f"sqlite:///{tmp / 'robotjobs.db'}"
    upgrade(database_url)
    engine = make_engine(database_url)
    credentials_key = Fernet.generate_key().decode()
    auth_string = f"bench:{secrets.token_urlsafe(12)}"
    started: list = []
    simulator = start_simulator(port=0, delay=args.delay)
    try:
        api_url, _ = start_stack(
            started,
            tmp,
            {"DATABASE_URL": database_url, "CREDENTIALS_KEY": credentials_key, "PREFECT_API_AUTH_STRING": auth_string},
            simulator.url,
            runner_env={"ROBOTJOBS_SERVE_FLOOR": "true"},
            expected={FLOOR_START, FLOOR_RESUME},
        )
        orders = DEMO_ORDERS[: args.orders]
        starts, resumes, clicks, finishes = [], [], [], []
        waits: dict[str, list[float]] = {"start": [], "resume": [], "click": [], "finish": []}
        with (
            temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth_string}),
            get_client(sync_client=True) as client,
        ):
            floor_start(client)  # warm-up: the runner's first run imports more than the next ones
            for n in range(args.runs):  # interleaved, so load on the machine hits floor and robotjobs alike
                start, waits_start = floor_start(client)
                resume, waits_resume = floor_resume(client)
                click, finish, waits_click, waits_finish = batch(client, engine, simulator, credentials_key, orders)
                starts.append(start)
                resumes.append(resume)
                clicks.append(click)
                finishes.append(finish)
                for name, wait in zip(waits, (waits_start, waits_resume, waits_click, waits_finish), strict=True):
                    waits[name].append(wait)
                print(
                    f"run {n + 1}/{args.runs}: floor start {starts[-1]:.2f} s, floor resume {resumes[-1]:.2f} s, "
                    f"click→robot {click:.2f} s, result→Completed {finish:.2f} s",
                    flush=True,
                )
        print(
            f"\nlatency ({args.runs} runs, {len(orders)}-order batches, robot {args.delay} s/order, commit {_commit()})"
        )
        print(f"  floor: creation → Running         {_spread(starts)}")
        print(f"  floor: resume → Completed         {_spread(resumes)}")
        print(f"  robotjobs: click → robot          {_spread(clicks)}")
        print(f"  robotjobs: last result → Completed {_spread(finishes)}")
        print(
            f"  ratio click→robot / floor start        {statistics.median(clicks) / statistics.median(starts):.2f}×"
            " (target ≤ 1.3)"
        )
        print(
            f"  ratio result→Completed / floor resume  "
            f"{statistics.median(finishes) / statistics.median(resumes):.2f}× (target ≤ 1.3)"
        )
        # Each run's own pair (floor and batch measured back to back) too: a median ratio can hide a bad run.
        click_ratios = [click / start for click, start in zip(clicks, starts, strict=True)]
        finish_ratios = [finish / resume for finish, resume in zip(finishes, resumes, strict=True)]
        print(f"  per-run click→robot / floor start    {_spread(click_ratios, unit='×')}")
        print(f"  per-run result→Completed / floor     {_spread(finish_ratios, unit='×')}")
        # The runner's poll wait (0–1 s, random) is the same mechanism on both sides and dominates the spread:
        # subtracted from each run, what remains is start-up, our code and Prefect's resume path.
        own = {
            "start": [t - w for t, w in zip(starts, waits["start"], strict=True)],
            "resume": [t - w for t, w in zip(resumes, waits["resume"], strict=True)],
            "click": [t - w for t, w in zip(clicks, waits["click"], strict=True)],
            "finish": [t - w for t, w in zip(finishes, waits["finish"], strict=True)],
        }
        print("  without the runner's poll wait (subtracted from each run, floor and robotjobs alike):")
        print(f"    poll wait, all runs                {_spread([w for ws in waits.values() for w in ws])}")
        for name, label_ in (
            ("start", "floor start"),
            ("resume", "floor resume"),
            ("click", "click"),
            ("finish", "last result"),
        ):
            print(f"    poll wait, {label_:<24}{_spread(waits[name])}")
        print(f"    floor: picked up → Running         {_spread(own['start'])}")
        print(f"    floor: resume → Completed          {_spread(own['resume'])}")
        print(f"    robotjobs: click → robot           {_spread(own['click'])}")
        print(f"    robotjobs: last result → Completed {_spread(own['finish'])}")
        print(
            f"    ratio click→robot / floor start        "
            f"{statistics.median(own['click']) / statistics.median(own['start']):.2f}×"
        )
        print(
            f"    ratio result→Completed / floor resume  "
            f"{statistics.median(own['finish']) / statistics.median(own['resume']):.2f}×"
        )
        print(f"rerun: {COMMAND} --runs {args.runs} --orders {args.orders} --delay {args.delay} --seed {seed}")
    finally:
        stop_stack(started, simulator, engine)


if __name__ == "__main__":
    main(sys.argv[1:])
