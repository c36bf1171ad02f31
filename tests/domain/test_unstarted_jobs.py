"""A job left `pending` (its orchestration never started) is failed as never sent, and only while still pending."""

from __future__ import annotations

import threading
from datetime import timedelta

from domain import outbox
from domain.batches import jobs
from domain.events import BATCH_COMPLETED
from domain.models import utcnow


def _pending_job(uow, demo):
    with uow() as tx:
        job_id = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id).job.id
        tx.commit()
    return job_id


def test_a_pending_job_is_failed_as_never_sent_and_frees_the_workspace(uow, demo):
    job_id = _pending_job(uow, demo)
    with uow(readonly=True) as tx:
        assert jobs.pending_jobs_older_than(tx.session, 60, now=utcnow() + timedelta(seconds=61)) == [job_id]

    with uow() as tx:
        assert jobs.fail_unstarted_job(tx.session, job_id) is True
        tx.commit()

    with uow(readonly=True) as tx:
        view = jobs.get_job_view(tx.session, job_id)
        assert (view.job.status, view.job.failure_reason) == ("failed", jobs.NEVER_STARTED_MESSAGE)
        assert view.job.dispatch_state == "not_dispatched"  # honest: it was never sent
        sendable = [e.item for e in view.items if e.item.robot_input is not None]
        assert sendable and {(i.status, i.error_type, i.resolved_by) for i in sendable} == {
            ("error", "dispatch", "robotjobs")
        }
        assert all(i.error_message == jobs.NEVER_STARTED_MESSAGE for i in sendable)
        assert view.job.error_count == view.job.total_items
        assert len(outbox.events_of(tx.session, event_type=BATCH_COMPLETED, aggregate_id=job_id)) == 1
    with uow() as tx:  # the workspace can submit again
        again = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, idempotency_key="again")
        tx.commit()
    assert again.created and again.job.id != job_id


def test_a_started_job_is_never_failed_as_never_sent(uow, demo):
    job_id = _pending_job(uow, demo)
    with uow() as tx:
        jobs.start_job(tx.session, job_id, flow_run_id="run-1")
        tx.commit()
    with uow() as tx:
        assert jobs.fail_unstarted_job(tx.session, job_id) is False
        tx.commit()
    with uow(readonly=True) as tx:
        assert jobs.get_job(tx.session, job_id).status == "processing"


def test_a_run_starting_the_job_meanwhile_waits_and_finds_it_failed(uow, demo):
    job_id = _pending_job(uow, demo)
    started = threading.Event()

    def start():
        with uow() as tx:  # blocks on the row lock (PostgreSQL) or the write lock (SQLite) until the failure commits
            jobs.start_job(tx.session, job_id, flow_run_id="run-1")
            tx.commit()
        started.set()

    with uow() as tx:
        assert jobs.fail_unstarted_job(tx.session, job_id) is True
        runner = threading.Thread(target=start)
        runner.start()
        assert not started.wait(0.5)  # the run waits for this transaction
        tx.commit()
    runner.join(timeout=10)
    assert started.is_set()
    with uow(readonly=True) as tx:
        job = jobs.get_job(tx.session, job_id)
        assert (job.status, job.flow_run_id, job.failure_reason) == ("failed", None, jobs.NEVER_STARTED_MESSAGE)
