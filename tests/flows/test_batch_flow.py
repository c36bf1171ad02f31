"""The batch flows' own steps without a Prefect server: the operator's create task starts its job in the same
transaction, a rerun finds its job before any task, and the final progress is published by a hook (after the
run's final state), for the run's own job only."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from domain.batches.jobs import create_robot_job, get_job
from domain.db import UnitOfWork
from domain.models import JobStatus
from flows import orchestrate, runtime, submit
from sample_data.seed import seed_demo
from tests.flows.conftest import GOOD_ORDERS


def _created(engine, credentials_key, run_id):
    with UnitOfWork(engine) as uow:
        demo = seed_demo(uow.session, credentials_key=credentials_key, orders=GOOD_ORDERS)
        created = create_robot_job(
            uow.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids, flow_run_id=run_id
        )
        batch = submit._batch(uow, created, run_id)
        uow.commit()
    return batch


def test_the_create_task_starts_the_job_it_created_in_the_same_transaction(
    engine, credentials_key, settings, monkeypatch
):
    monkeypatch.setattr(runtime, "settings", lambda: settings)
    run_id = str(uuid.uuid4())
    batch = _created(engine, credentials_key, run_id)
    assert batch.owned and batch.started is not None
    assert batch.started.status == JobStatus.PROCESSING
    assert batch.started.pending_items == len(GOOD_ORDERS)
    assert batch.started.deadline_at is not None
    with UnitOfWork(engine, readonly=True) as uow:
        job = get_job(uow.session, batch.job_id)
        assert (job.status, job.flow_run_id) == (JobStatus.PROCESSING, run_id)
        assert job.deadline_at == batch.started.deadline_at


def test_a_rerun_finds_its_started_job_and_a_new_run_finds_none(engine, credentials_key, settings, monkeypatch):
    monkeypatch.setattr(runtime, "settings", lambda: settings)
    monkeypatch.setattr(runtime, "engine", lambda: engine)
    run_id = str(uuid.uuid4())
    batch = _created(engine, credentials_key, run_id)
    again = submit.own_batch(run_id)
    assert again is not None and again.job_id == batch.job_id and again.label == batch.label
    assert again.resumed is not None and again.resumed.pending_items == len(GOOD_ORDERS)
    assert submit.own_batch(str(uuid.uuid4())) is None


def test_the_final_progress_hook_publishes_the_runs_own_job(engine, credentials_key, settings, monkeypatch):
    monkeypatch.setattr(runtime, "settings", lambda: settings)
    monkeypatch.setattr(runtime, "engine", lambda: engine)
    published: list[str] = []
    monkeypatch.setattr(orchestrate, "publish_progress", lambda _engine, job_id: published.append(job_id))
    run_id = str(uuid.uuid4())
    batch = _created(engine, credentials_key, run_id)

    orchestrate.publish_final_progress(None, SimpleNamespace(id=uuid.UUID(run_id)), None)
    orchestrate.publish_final_progress(None, SimpleNamespace(id=uuid.uuid4()), None)  # a run without a job

    assert published == [batch.job_id]
    assert submit.submit_robot_job.on_completion_hooks == [orchestrate.publish_final_progress]
    assert submit.submit_robot_job.on_failure_hooks == [orchestrate.publish_final_progress]
    assert orchestrate.orchestrate_robot_job.on_failure_hooks == [orchestrate.publish_final_progress]
