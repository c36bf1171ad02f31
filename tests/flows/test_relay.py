"""The resume relay without a Prefect server: what is delivered, what is retried, and that it never raises."""

from __future__ import annotations

import uuid

from prefect.settings import PREFECT_API_URL, temporary_settings

from domain import outbox
from domain.db import UnitOfWork
from domain.jobs import fail_job, start_job
from domain.models import ErrorType
from relay.progress import progress_key
from relay.resume import Outcome, deliver_resume_events, resume_after_commit, resume_run
from relay.run_input import BatchCompleted, pause_key, response_key
from simulator.server import unused_loopback_url


def _finish(engine, job_id):
    with UnitOfWork(engine) as uow:
        fail_job(uow.session, job_id, reason="r", error_type=ErrorType.TIMEOUT, error_message="m")
        uow.commit()


def test_run_input_from_an_outbox_payload():
    payload = {"job_id": "j", "flow_run_id": "f", "status": "completed", "success_count": 2, "error_count": 1,
               "total_items": 3}
    assert BatchCompleted.from_payload(payload).model_dump() == {
        "job_id": "j", "status": "completed", "success_count": 2, "error_count": 1, "total_items": 3}
    assert response_key("j") == f"suspended-{pause_key('j')}-response" == "suspended-robot-job-j-response"
    assert progress_key("ABC") == "robot-job-abc-progress"


def test_no_flow_run_counts_as_delivered():
    assert resume_run(None, BatchCompleted(job_id="j", status="failed"))[0] == Outcome.ALREADY_DONE


def test_a_job_without_flow_run_is_delivered(engine, started_job):
    _finish(engine, started_job)  # emits robot.batch.completed with no flow run to resume
    stats = deliver_resume_events(engine, worker_id="t", limit=10)
    assert (stats.claimed, stats.already_done) == (1, 1)
    with UnitOfWork(engine, readonly=True) as uow:
        assert outbox.undelivered(uow.session, consumer=outbox.RESUME) == []


def test_unreachable_prefect_keeps_the_event_for_later(engine, started_job):
    with UnitOfWork(engine) as uow:
        start_job(uow.session, started_job, flow_run_id=str(uuid.uuid4()))  # the job's run (on no server)
        uow.commit()
    _finish(engine, started_job)
    with temporary_settings(updates={PREFECT_API_URL: unused_loopback_url() + "/api"}):
        stats = deliver_resume_events(engine, worker_id="t", limit=10)
        assert (stats.claimed, stats.unreachable) == (1, 1)
        assert deliver_resume_events(engine, worker_id="t", limit=10).claimed == 0  # due again later, not now
    with UnitOfWork(engine, readonly=True) as uow:
        pending = outbox.undelivered(uow.session, consumer=outbox.RESUME)
    assert len(pending) == 1 and pending[0].last_error.startswith("unreachable")


def test_resume_after_commit_never_raises(engine, started_job):
    with temporary_settings(updates={PREFECT_API_URL: unused_loopback_url() + "/api"}):
        assert resume_after_commit(engine, started_job) is None  # still processing: nothing to resume
        assert resume_after_commit(engine, "no-such-job") is None
