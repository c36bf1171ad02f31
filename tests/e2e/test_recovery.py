"""Recovery, end to end: a robot that never calls back, a lost resume, a flow process killed after dispatch (rerun by
the operator, or recovered by the reconciler), jobs left pending, and the operator's retry of failed orders."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Scheduled

from domain import outbox
from domain.batches.jobs import NEVER_STARTED_MESSAGE, TIMEOUT_MESSAGE
from domain.db import UnitOfWork
from domain.events import BATCH_COMPLETED
from relay.settle import INTERRUPTED_MESSAGE
from tests.e2e.conftest import DISPATCH_TIMEOUT_S, PENDING_ORPHAN_AFTER_S
from tests.e2e.helpers import (
    age_job,
    coord_completed,
    create_pending_job,
    events,
    flow_run,
    flow_run_process,
    items,
    items_artifact,
    job,
    job_of,
    jobs_of,
    orchestration_run_of,
    reconcile,
    record_figure,
    retry,
    seed_workspace,
    submit,
    summary_artifact,
    table_rows,
    wait_flow_final,
    wait_flow_state,
    wait_for,
    wait_job_finished,
)

pytestmark = pytest.mark.e2e


def test_robot_that_never_calls_back_times_out(stack, sim):
    sim.configure(scenario="silent")
    workspace_id, order_ids = seed_workspace(stack, 2)
    submit(workspace_id, order_ids)
    the_job = job_of(stack, workspace_id)
    run_id = orchestration_run_of(stack, the_job.id)
    wait_flow_state(run_id, "Suspended")
    deadline = job(stack, the_job.id).deadline_at
    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.5)

    report = reconcile()
    assert report.state.is_completed(), report.state

    the_job = wait_job_finished(stack, the_job.id, timeout_s=5)
    assert the_job.status == "failed" and the_job.failure_reason == TIMEOUT_MESSAGE
    assert {(i.status, i.error_type, i.error_message) for i in items(stack, the_job.id)} == {
        ("error", "timeout", TIMEOUT_MESSAGE)
    }
    run = wait_flow_final(run_id, timeout_s=30)
    record_figure(
        stack,
        "deadline → run Failed (robot silent, reconcile triggered at the deadline)",
        (run.state.timestamp - deadline).total_seconds(),
    )
    # The run ended on our clock, not Prefect's: resumed by the reconciler, failed with the operators' reason.
    assert run.state.is_failed() and TIMEOUT_MESSAGE in run.state.message, run.state
    assert TIMEOUT_MESSAGE in summary_artifact(the_job.id).data
    assert {r["tipo_error"] for r in table_rows(items_artifact(the_job.id))} == {"timeout"}


def _suspended_batch_whose_results_then_land(stack, sim):
    """A 2-order batch whose run is `Suspended` before the robot's results land (held until then: a fast robot can
    finish before the run reads its job, and that run never suspends); (the finished job, its run id)."""
    workspace_id, order_ids = seed_workspace(stack, 2)
    sim.configure(order_scenarios={order_id: "held" for order_id in order_ids})
    submit(workspace_id, order_ids)
    the_job = job_of(stack, workspace_id)
    run_id = orchestration_run_of(stack, the_job.id)
    wait_flow_state(run_id, "Suspended")
    sim.release()
    return wait_job_finished(stack, the_job.id, timeout_s=30), run_id


def _wait_for_a_failed_resume(stack, job_id: str) -> None:
    """Until the webhook's after-commit resume has tried once and found Prefect unreachable (the proxy is cut)."""
    wait_for(
        lambda: any((e.last_error or "").startswith("unreachable") for e in events(stack, BATCH_COMPLETED, job_id)),
        timeout_s=20,
        what="the webhook's failed resume attempt",
    )


def test_a_resume_prefect_could_not_take_at_once_is_retried_by_the_webhook(stack, sim):
    # Prefect does not answer when the last result lands (cut here; in CI a busy server, or a run still short of its
    # suspend): the webhook keeps trying on a timer (webhook/after_commit.py), longer than its old 5 s patience, and
    # the run completes with no reconcile.
    stack.prefect_proxy.cut = True
    the_job, run_id = _suspended_batch_whose_results_then_land(stack, sim)
    assert the_job.status == "completed"
    _wait_for_a_failed_resume(stack, the_job.id)
    time.sleep(8)
    assert flow_run(run_id).state.name == "Suspended"
    restored = time.monotonic()
    stack.prefect_proxy.cut = False
    run = wait_flow_final(run_id, timeout_s=60)
    record_figure(stack, "Prefect back → run Completed (the webhook's resume retries)", time.monotonic() - restored)
    assert run.state.is_completed(), run.state
    assert all(e.delivered_at is not None for e in events(stack, BATCH_COMPLETED, the_job.id))


def test_lost_resume_is_completed_by_the_reconciler(stack, sim):
    stack.prefect_proxy.cut = True  # the webhook cannot reach Prefect: its after-commit resume is lost
    the_job, run_id = _suspended_batch_whose_results_then_land(stack, sim)
    assert the_job.status == "completed"
    # And lose the outbox event too (as a webhook process killed mid-retry, with the event's redelivery lost): only
    # the "finished job, still suspended run" scan can save this one. Once the webhook has tried, the event is marked
    # delivered; the webhook's next try (every ~1.2 s) finds nothing to claim and stops.
    _wait_for_a_failed_resume(stack, the_job.id)
    with UnitOfWork(stack.engine) as uow:
        for event in events(stack, BATCH_COMPLETED, the_job.id):
            outbox.mark_delivered(uow.session, event.event_id)
        uow.commit()
    time.sleep(3)  # a try that claimed the event before the mark has ended, still cut off
    stack.prefect_proxy.cut = False
    time.sleep(1)
    assert flow_run(run_id).state.name == "Suspended"

    # The reconciler runs every minute in production; a resume refused under load (Prefect's own SQLite answers
    # "database is locked") is tried again by the next run, as here.
    for _ in range(3):
        reconcile()
        try:
            run = wait_flow_final(run_id, timeout_s=20)
            break
        except AssertionError:
            continue
    else:
        run = flow_run(run_id)
    assert run.state.is_completed(), run.state
    assert "✅ 2 pedido(s) creado(s):" in summary_artifact(the_job.id).data


def test_flow_killed_after_dispatch_is_rerun_without_dispatching_again(stack, sim):
    # The robot answers its 200 only after two callbacks (≈ 2 × 1.5 s): the flow is killed while waiting for it.
    sim.configure(delay=1.5, early_callbacks=2)
    workspace_id, order_ids = seed_workspace(stack, 3)
    submit(workspace_id, order_ids)
    the_job = job_of(stack, workspace_id)
    run_id = orchestration_run_of(stack, the_job.id)
    wait_for(lambda: sim.state()["posts"].get(the_job.id), timeout_s=30, what="the dispatch")
    pid = wait_for(lambda: flow_run_process(stack, run_id), timeout_s=5, what="the flow-run process")
    os.kill(pid, signal.SIGKILL)
    crashed = wait_flow_final(run_id, timeout_s=30)
    assert crashed.state.is_crashed(), crashed.state
    assert job(stack, the_job.id).dispatch_state == "claimed"

    # The operator retries the crashed run (as the UI's "Retry" does).
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(run_id), Scheduled(name="AwaitingRetry"), force=True)
    run = wait_flow_final(run_id, timeout_s=60)
    the_job = wait_job_finished(stack, the_job.id, timeout_s=30)

    assert sim.state()["posts"] == {the_job.id: 1}  # the rerun found the dispatch claimed and did not send
    assert (the_job.status, the_job.success_count) == ("completed", 3)
    assert run.state.is_completed(), run.state
    assert "✅ 3 pedido(s) creado(s):" in summary_artifact(the_job.id).data


def _kill_while_it_waits_for_the_200(stack, sim, count: int) -> tuple[str, str, list[str]]:
    """Submit a batch whose results the robot holds, and kill its run while it waits for the (late) 200."""
    workspace_id, order_ids = seed_workspace(stack, count)
    sim.configure(answer_delay=DISPATCH_TIMEOUT_S - 2, order_scenarios={order_id: "held" for order_id in order_ids})
    submit(workspace_id, order_ids)
    the_job = job_of(stack, workspace_id)
    run_id = orchestration_run_of(stack, the_job.id)
    wait_for(lambda: sim.state()["posts"].get(the_job.id), timeout_s=30, what="the dispatch")
    pid = wait_for(lambda: flow_run_process(stack, run_id), timeout_s=5, what="the flow-run process")
    os.kill(pid, signal.SIGKILL)  # only the flow-run subprocess this test's stack started for this run
    crashed = wait_flow_final(run_id, timeout_s=30)
    assert crashed.state.is_crashed(), crashed.state
    assert (job(stack, the_job.id).status, job(stack, the_job.id).dispatch_state) == ("processing", "claimed")
    return the_job.id, run_id, order_ids


def test_killed_run_gets_a_recovery_run_from_the_reconciler_that_only_waits(stack, sim):
    job_id, crashed_id, _ = _kill_while_it_waits_for_the_200(stack, sim, 2)

    assert reconcile().state.is_completed()
    recovery_id = wait_for(
        lambda: (j := job(stack, job_id)).flow_run_id != crashed_id and j.flow_run_id,
        timeout_s=60,
        what="the recovery run to take the job",
    )
    wait_flow_state(recovery_id, "Suspended", timeout_s=60)
    sim.release()
    run = wait_flow_final(recovery_id, timeout_s=60)

    the_job = wait_job_finished(stack, job_id, timeout_s=5)
    assert (the_job.status, the_job.success_count, the_job.error_count) == ("completed", 2, 0)
    assert len(coord_completed(stack, job_id)) == 2
    assert sim.state()["posts"] == {job_id: 1}  # the recovery run found the dispatch claimed: never re-sent
    assert run.state.is_completed(), run.state
    assert flow_run(crashed_id).state.is_crashed()  # history stays; the job's run is the recovery run
    assert the_job.summary_published_at >= the_job.updated_at
    assert "✅ 2 pedido(s) creado(s):" in summary_artifact(job_id).data


def test_killed_run_whose_job_completes_meanwhile_is_closed_by_the_reconciler(stack, sim):
    job_id, crashed_id, _ = _kill_while_it_waits_for_the_200(stack, sim, 2)
    sim.release()  # the robot finishes the batch while no run waits for it
    the_job = wait_job_finished(stack, job_id, timeout_s=30)
    assert the_job.status == "completed" and the_job.summary_published_at is None

    assert reconcile().state.is_completed()
    the_job = job(stack, job_id)
    assert the_job.flow_run_id == crashed_id and the_job.summary_published_at >= the_job.updated_at
    assert "✅ 2 pedido(s) creado(s):" in summary_artifact(job_id).data
    closed = flow_run(crashed_id)
    assert closed.state.is_completed() and closed.state.message == INTERRUPTED_MESSAGE
    assert len(coord_completed(stack, job_id)) == 2 and sim.state()["posts"] == {job_id: 1}


def test_pending_jobs_are_started_or_given_up_by_the_reconciler(stack, sim):
    # Two jobs whose submit died before it started their orchestration; one of them long ago.
    started_ws, started_orders = seed_workspace(stack, 2)
    stuck_ws, stuck_orders = seed_workspace(stack, 2)
    started = create_pending_job(stack, started_ws, started_orders)
    stuck = create_pending_job(stack, stuck_ws, stuck_orders)
    age_job(stack, stuck, 11 * 60)  # past the give-up limit (10 min)
    time.sleep(PENDING_ORPHAN_AFTER_S + 0.5)

    assert reconcile().state.is_completed()
    run = wait_flow_final(orchestration_run_of(stack, started), timeout_s=60)
    the_job = wait_job_finished(stack, started, timeout_s=5)
    assert (the_job.status, the_job.success_count) == ("completed", 2) and run.state.is_completed()
    assert len(coord_completed(stack, started)) == 2
    assert "✅ 2 pedido(s) creado(s):" in summary_artifact(started).data

    given_up = job(stack, stuck)
    assert (given_up.status, given_up.failure_reason, given_up.dispatch_state) == (
        "failed",
        NEVER_STARTED_MESSAGE,
        "not_dispatched",
    )
    assert {(i.status, i.error_type) for i in items(stack, stuck)} == {("error", "dispatch")}
    assert given_up.summary_published_at >= given_up.updated_at
    assert NEVER_STARTED_MESSAGE in summary_artifact(stuck).data
    assert stuck not in sim.state()["posts"]

    # The workspace can submit again: the orders that were never sent go now.
    submit(stuck_ws, stuck_orders)
    again = job_of(stack, stuck_ws)
    assert again.id != stuck
    wait_flow_final(orchestration_run_of(stack, again.id))
    assert (wait_job_finished(stack, again.id, timeout_s=5).success_count, sim.state()["posts"].get(again.id)) == (2, 1)


def test_retry_failed_items_creates_a_new_job(stack, sim):
    workspace_id, order_ids = seed_workspace(stack, 3)
    sim.configure(order_scenarios={order_ids[0]: "login_failure", order_ids[2]: "invalid_city"})
    submit(workspace_id, order_ids)
    first = job_of(stack, workspace_id)
    wait_flow_final(orchestration_run_of(stack, first.id))
    first = wait_job_finished(stack, first.id, timeout_s=5)
    assert (first.success_count, first.error_count) == (1, 2)

    sim.configure(order_scenarios={})
    retried = retry(first.id)
    assert retried.state.is_completed(), retried.state

    jobs = jobs_of(stack, workspace_id)
    assert len(jobs) == 2
    second = jobs[-1]
    assert second.retry_of_job_id == first.id and second.total_items == 2
    run = wait_flow_final(orchestration_run_of(stack, second.id))
    second = wait_job_finished(stack, second.id, timeout_s=5)
    assert (second.status, second.success_count) == ("completed", 2)
    assert {i.order_id for i in items(stack, second.id)} == {order_ids[0], order_ids[2]}
    assert run.state.is_completed()
    assert sim.state()["posts"] == {first.id: 1, second.id: 1}
    assert "✅ 2 pedido(s) creado(s):" in summary_artifact(second.id).data

    retry(first.id)  # a second click: whatever it answers, no second batch is created or sent
    assert len(jobs_of(stack, workspace_id)) == 2
    assert sim.state()["posts"] == {first.id: 1, second.id: 1}


def test_served_reconciler_follows_the_scheduling_contract(stack):
    import httpx

    from stack.prefect_auth import auth_header

    found = {
        d["name"]: d
        for d in httpx.post(
            f"{stack.api_url}/deployments/filter", json={}, headers=auth_header(stack.auth_string)
        ).json()
    }
    reconcile_deployment = found["reconcile"]
    assert reconcile_deployment["global_concurrency_limit"]["limit"] == 1
    # This stack serves it unscheduled (see conftest); what `python -m flows.serve` serves by default is every 60 s.
    from flows.serve import deployments as served_deployments

    [served] = [d for d in served_deployments() if d.name == "reconcile"]
    assert [s.schedule.interval.total_seconds() for s in served.schedules] == [60.0]

    # Two runs in the same bucket do the work once: the second finds the first's result under the key.
    key = f"reconcile:e2e-{time.time_ns()}"
    from prefect.deployments import run_deployment

    from flows.deployments import RECONCILE_DEPLOYMENT

    runs = [
        run_deployment(
            RECONCILE_DEPLOYMENT, parameters={"idempotency_key": key}, timeout=90, poll_interval=0.5, as_subflow=False
        )
        for _ in range(2)
    ]
    assert all(r.state.is_completed() for r in runs)
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        task_states = [
            [
                t.state.name
                for t in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id])))
            ]
            for r in runs
        ]
    assert task_states == [["Completed"], ["Cached"]]
