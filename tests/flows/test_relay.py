"""The resume relay without a Prefect server: what is delivered, what is retried, and that it never raises."""

from __future__ import annotations

import uuid

from prefect.settings import PREFECT_API_URL, temporary_settings

from domain import outbox
from domain.batches.jobs import TIMEOUT_MESSAGE, fail_job, get_job, start_job
from domain.batches.results import ItemResult, record_item_result
from domain.db import UnitOfWork
from domain.events import BATCH_CORRECTED, RobotBatchCompleted
from domain.models import ErrorType
from relay.progress import progress_key
from relay.resume import Outcome, deliver_resume_events, resume_after_commit, resume_run, run_input_of
from relay.run_input import BatchCompleted, pause_key, response_key
from relay.settle import CORRECTED_MESSAGE, agreeing_state
from simulator.server import unused_loopback_url


def _finish(engine, job_id):
    with UnitOfWork(engine) as uow:
        fail_job(uow.session, job_id, reason="r", error_type=ErrorType.TIMEOUT, error_message="m")
        uow.commit()


def test_run_input_from_an_outbox_payload():
    payload = {
        "job_id": "j",
        "flow_run_id": "f",
        "status": "completed",
        "success_count": 2,
        "error_count": 1,
        "total_items": 3,
    }
    assert BatchCompleted.from_event(RobotBatchCompleted.from_payload(payload)).model_dump() == {
        "job_id": "j",
        "status": "completed",
        "success_count": 2,
        "error_count": 1,
        "total_items": 3,
        "timed_out": False,
        "timed_out_items": 0,
    }
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


def _item_ids(engine, job_id):
    from domain.batches.jobs import get_job_view

    with UnitOfWork(engine, readonly=True) as uow:
        return [entry.item.id for entry in get_job_view(uow.session, job_id).items]


def test_run_input_of_a_job_our_deadline_closed_says_timed_out(engine, started_job):
    first, *_ = _item_ids(engine, started_job)
    with UnitOfWork(engine) as uow:
        record_item_result(uow.session, ItemResult(item_id=first, status="success", tracking_number="7600123"))
        fail_job(
            uow.session,
            started_job,
            reason=TIMEOUT_MESSAGE,
            error_type=ErrorType.TIMEOUT,
            error_message=TIMEOUT_MESSAGE,
        )
        uow.commit()
    with UnitOfWork(engine, readonly=True) as uow:
        run_input = run_input_of(uow.session, get_job(uow.session, started_job))
    # One order created, the others closed by the deadline: the job is completed, and the run learns it timed out.
    others = run_input.total_items - 1
    assert (run_input.status, run_input.success_count, run_input.error_count) == ("completed", 1, others)
    assert (run_input.timed_out, run_input.timed_out_items) == (True, others)


def test_run_input_of_a_job_the_robot_finished_is_not_timed_out(engine, started_job):
    with UnitOfWork(engine) as uow:
        for item_id in _item_ids(engine, started_job):
            record_item_result(
                uow.session,
                ItemResult(item_id=item_id, status="error", error_type="timeout", error_message="timeout del portal"),
            )
        uow.commit()
    with UnitOfWork(engine, readonly=True) as uow:
        run_input = run_input_of(uow.session, get_job(uow.session, started_job))
    assert (run_input.status, run_input.timed_out) == ("failed", False)  # the robot's own "timeout" is not ours


def test_a_correction_waits_for_prefect_when_it_is_unreachable(engine, started_job):
    with UnitOfWork(engine) as uow:
        start_job(uow.session, started_job, flow_run_id=str(uuid.uuid4()))
        uow.commit()
    _finish(engine, started_job)  # timed out by us, every item closed
    first, *_ = _item_ids(engine, started_job)
    with UnitOfWork(engine) as uow:  # the robot created the order after all
        outcome = record_item_result(uow.session, ItemResult(item_id=first, status="success"))
        uow.commit()
    assert outcome.job_corrected and outcome.job_status == "completed"
    with temporary_settings(updates={PREFECT_API_URL: unused_loopback_url() + "/api"}):
        stats = deliver_resume_events(engine, worker_id="t", limit=10)
    assert (stats.claimed, stats.unreachable, stats.corrected) == (2, 2, 0)
    with UnitOfWork(engine, readonly=True) as uow:
        pending = outbox.undelivered(uow.session, consumer=outbox.RESUME, event_type=BATCH_CORRECTED)
    assert len(pending) == 1 and pending[0].last_error.startswith("unreachable")


def test_an_ended_run_is_made_to_agree_with_its_job():
    from prefect.states import Cancelled, Completed, Crashed, Failed

    assert agreeing_state(Failed(), "completed", None).is_completed()
    assert agreeing_state(Failed(), "completed", None).message == CORRECTED_MESSAGE
    assert agreeing_state(Crashed(), "completed", None).is_completed()
    crashed_failed = agreeing_state(Crashed(), "failed", "Tiempo de espera agotado.")
    assert crashed_failed.is_failed() and "Tiempo de espera agotado." in crashed_failed.message
    assert agreeing_state(Failed(), "failed", "x") is None
    assert agreeing_state(Completed(), "completed", None) is None
    assert agreeing_state(Cancelled(), "completed", None) is None  # an operator's cancel stays


class RecordingPrefect:
    """The two calls `_resume` may make, answered as a real server would for a run in `state`."""

    def __init__(self, state, *, resume_status: str) -> None:
        self.state, self.resume_status, self.calls = state, resume_status, []

    def resume_flow_run(self, run_id, run_input=None):
        from prefect.client.schemas import OrchestrationResult
        from prefect.client.schemas.responses import SetStateStatus, StateAbortDetails, StateAcceptDetails

        self.calls.append("resume")
        if self.resume_status == "ACCEPT":
            details = StateAcceptDetails()
        else:
            details = StateAbortDetails(reason="Cannot resume a flow run that is not paused.")
        return OrchestrationResult(state=None, status=SetStateStatus(self.resume_status), details=details)

    def read_flow_run(self, run_id):
        from types import SimpleNamespace

        self.calls.append("read")
        return SimpleNamespace(state=self.state)

    def read_flow_run_input(self, run_id, key):
        from prefect.exceptions import ObjectNotFound

        self.calls.append("read_input")
        raise ObjectNotFound(http_exc=Exception("404"))


def test_a_suspended_run_is_resumed_in_one_call_with_no_read_before():
    """The resume is the first call (it is on the last result → Completed path); nothing is read when it lands."""
    from prefect.states import Paused

    from relay.resume import _resume

    prefect = RecordingPrefect(Paused(), resume_status="ACCEPT")
    run_input = BatchCompleted(job_id="j", status="completed", success_count=1, error_count=0, total_items=1)
    assert _resume(prefect, uuid.uuid4(), run_input)[0] == Outcome.RESUMED
    assert prefect.calls == ["resume"]


def test_a_resume_refused_reads_the_run_to_say_why():
    from prefect.states import Completed, Running

    from relay.resume import _resume

    run_input = BatchCompleted(job_id="j", status="completed", success_count=1, error_count=0, total_items=1)
    running = RecordingPrefect(Running(), resume_status="ABORT")
    assert _resume(running, uuid.uuid4(), run_input)[0] == Outcome.NOT_SUSPENDED_YET  # retried within seconds
    assert running.calls == ["resume", "read", "read_input"]
    finished = RecordingPrefect(Completed(), resume_status="ABORT")
    assert _resume(finished, uuid.uuid4(), run_input)[0] == Outcome.ALREADY_DONE
    assert finished.calls == ["resume", "read"]
