"""What the end-to-end tests do and read: seed a workspace, trigger deployments, wait for runs, read artifacts."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterName,
)
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from sqlalchemy import update
from sqlmodel import select

from domain import outbox
from domain.batches.jobs import create_robot_job
from domain.db import UnitOfWork
from domain.events import ROBOT_COORD_COMPLETED
from domain.models import OutboxEvent, RobotJob, RobotJobItem
from flows.artifacts import items_key, rejected_key, summary_key
from flows.deployments import RECONCILE_DEPLOYMENT, RETRY, SUBMIT
from sample_data.seed import DEMO_ORDERS, seed_demo
from stack.processes import child_pids

# Orders whose cities are in the coverage sample (Manizales, Medellín, Cali, Barranquilla).
GOOD_ORDERS = [o for o in DEMO_ORDERS if o[5] in ("Manizales", "Medellín", "Cali", "Barranquilla")]


def seed_workspace(stack, count: int = 3) -> tuple[str, list[str]]:
    with UnitOfWork(stack.engine) as uow:
        demo = seed_demo(
            uow.session,
            credentials_key=stack.credentials_key,
            name=f"e2e-{uuid.uuid4().hex[:6]}",
            orders=GOOD_ORDERS[:count],
        )
        uow.commit()
    return demo.workspace_id, demo.order_ids


def submit(workspace_id: str, order_ids: list[str], *, wait_s: float = 60, **parameters: Any) -> FlowRun:
    """Trigger `submit-robot-job` as an operator would; return its run once it has created its batch (the run is
    the batch: it goes on until the summary), or once it ended (a form it refused)."""
    run = run_deployment(
        f"{SUBMIT}/{SUBMIT}",
        parameters={"workspace": workspace_id, "order_ids": order_ids, **parameters},
        timeout=0,
        as_subflow=False,
    )
    wait_for(
        lambda: batch_created(run.id) or flow_run(run.id).state.is_final(),
        timeout_s=wait_s,
        what=f"run {run.id} to create its batch",
    )
    return flow_run(run.id)


def batch_created(run_id: str | UUID) -> bool:
    """The run's job-creating task has completed (its job is committed)."""
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(run_id))])),
            # Task run names carry a suffix: create-robot-job-1bc, create-retry-job-3f0.
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="create-r")),
        )
    return any(t.state and t.state.is_completed() for t in tasks)


def retry(batch: str, *, wait_s: float = 120) -> FlowRun:
    """Trigger `retry-failed-items` (`batch`: a job id or «<workspace> #<n>») and wait for its run, the new batch."""
    return run_deployment(
        f"{RETRY}/{RETRY}", parameters={"batch": batch}, timeout=wait_s, poll_interval=0.5, as_subflow=False
    )


def reconcile(*, wait_s: float = 90, attempts: int = 5) -> FlowRun:
    """A manual reconcile with its own bucket key; tried again if the concurrency limit (1) cancelled it."""
    for _ in range(attempts):
        run = run_deployment(
            RECONCILE_DEPLOYMENT,
            parameters={"idempotency_key": f"e2e:{uuid.uuid4()}"},
            timeout=wait_s,
            poll_interval=0.5,
            as_subflow=False,
        )
        if not (run.state and run.state.is_cancelled() and "concurrency" in (run.state.message or "")):
            return run
        time.sleep(2)
    return run


def job_of(stack, workspace_id: str) -> RobotJob:
    with UnitOfWork(stack.engine, readonly=True) as uow:
        jobs = list(
            uow.session.exec(
                select(RobotJob).where(RobotJob.workspace_id == workspace_id).order_by(RobotJob.created_at)
            )
        )
    assert jobs, f"no job in workspace {workspace_id}"
    return jobs[-1]


def jobs_of(stack, workspace_id: str) -> list[RobotJob]:
    with UnitOfWork(stack.engine, readonly=True) as uow:
        return list(
            uow.session.exec(
                select(RobotJob).where(RobotJob.workspace_id == workspace_id).order_by(RobotJob.created_at)
            )
        )


def job(stack, job_id: str) -> RobotJob:
    with UnitOfWork(stack.engine, readonly=True) as uow:
        return uow.session.get(RobotJob, job_id)


def items(stack, job_id: str) -> list[RobotJobItem]:
    with UnitOfWork(stack.engine, readonly=True) as uow:
        return list(uow.session.exec(select(RobotJobItem).where(RobotJobItem.job_id == job_id)))


def events(stack, event_type: str, job_id: str | None = None) -> list[OutboxEvent]:
    with UnitOfWork(stack.engine, readonly=True) as uow:
        found = outbox.events_of(uow.session, event_type=event_type)
    return [e for e in found if job_id is None or e.payload.get("job_id") == job_id]


def wait_for(predicate, *, timeout_s: float, what: str, every_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def flow_run(flow_run_id: str | UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(flow_run_id)))


def wait_flow_final(flow_run_id: str | UUID, *, timeout_s: float = 60) -> FlowRun:
    return wait_for(
        lambda: (run := flow_run(flow_run_id)).state and run.state.is_final() and run,
        timeout_s=timeout_s,
        what=f"flow run {flow_run_id} to finish",
    )


def wait_flow_state(flow_run_id: str | UUID, state_name: str, *, timeout_s: float = 60) -> FlowRun:
    return wait_for(
        lambda: (run := flow_run(flow_run_id)).state and run.state.name == state_name and run,
        timeout_s=timeout_s,
        what=f"flow run {flow_run_id} to be {state_name}",
    )


def wait_job_finished(stack, job_id: str, *, timeout_s: float = 60) -> RobotJob:
    return wait_for(
        lambda: (j := job(stack, job_id)).status in ("completed", "failed") and j,
        timeout_s=timeout_s,
        what=f"job {job_id} to finish",
    )


def orchestration_run_of(stack, job_id: str, *, timeout_s: float = 30) -> str:
    return wait_for(lambda: job(stack, job_id).flow_run_id, timeout_s=timeout_s, what=f"job {job_id} to start")


def artifact(key: str) -> Any:
    """The latest version of an artifact by key (None when absent)."""
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key])), limit=1
        )
    return found[0] if found else None


def summary_artifact(job_id: str):
    return artifact(summary_key(job_id))


def items_artifact(job_id: str):
    return artifact(items_key(job_id))


def rejected_artifact(job_id: str):
    return artifact(rejected_key(job_id))


def table_rows(collection) -> list[dict]:
    import json

    data = collection.data
    return json.loads(data) if isinstance(data, str) else data


def coord_completed(stack, job_id: str) -> list[OutboxEvent]:
    """The robot.coord.completed triggers one job fired (one per order the robot created)."""
    return events(stack, ROBOT_COORD_COMPLETED, job_id)


def create_pending_job(stack, workspace_id: str, order_ids: list[str]) -> str:
    """A job created as the submit flow creates it, whose orchestration run was never started."""
    with UnitOfWork(stack.engine) as uow:
        job_id = create_robot_job(uow.session, workspace_id=workspace_id, order_ids=order_ids).job.id
        uow.commit()
    return job_id


def age_job(stack, job_id: str, seconds: float) -> None:
    """Arrange a job created `seconds` ago (a test cannot wait the production limits out)."""
    with UnitOfWork(stack.engine) as uow:
        created_at = uow.session.get(RobotJob, job_id).created_at
        uow.session.execute(
            update(RobotJob).where(RobotJob.id == job_id).values(created_at=created_at - timedelta(seconds=seconds))
        )
        uow.commit()


def flow_run_process(stack, run_id: str) -> int | None:
    """The PID of the flow-run subprocess the stack's runner started for `run_id` (None while there is none)."""
    for pid in child_pids(stack.serve.pid):
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read()
        except FileNotFoundError:
            continue
        if f"PREFECT__FLOW_RUN_ID={run_id}".encode() in environ:
            return pid
    return None


def record_figure(stack, name: str, seconds: float) -> None:
    """A measured duration, kept beside the stack's logs (figures.txt) for the README's figures."""
    with open(stack.log_dir / "figures.txt", "a", encoding="utf-8") as out:
        out.write(f"{name}\t{seconds:.1f} s\n")
