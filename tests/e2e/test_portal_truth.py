"""The portal's truth always lands, end to end: a robot whose 200 comes after our dispatch timeout, successes that
arrive after our deadline closed the job, and unusual but honest fields. After each, the database, the run's state
and the published summary agree."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from domain.batches.jobs import TIMEOUT_MESSAGE
from domain.batches.results import TRUNCATED
from relay.settle import CORRECTED_MESSAGE
from simulator.scenarios import CAPTCHA
from tests.e2e.conftest import COLD_START_ANSWER_S, DISPATCH_TIMEOUT_S
from tests.e2e.helpers import (
    coord_completed,
    flow_run,
    items,
    items_artifact,
    job,
    job_of,
    orchestration_run_of,
    reconcile,
    record_figure,
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


def assert_summary_agrees(the_job) -> None:
    """The summary was published for the job as it is now, and shows its counts."""
    assert the_job.summary_published_at is not None and the_job.summary_published_at >= the_job.updated_at
    summary = summary_artifact(the_job.id).data
    assert f"✅ {the_job.success_count} pedido(s) creado(s):" in summary
    assert f"Creados: **{the_job.success_count}** · Con error: **{the_job.error_count}**" in summary


def test_a_200_later_than_the_dispatch_timeout_is_not_a_refusal(stack, sim):
    # A cold start: the robot works (a result every 3 s, the last one after our timeout) while its 200 comes later.
    assert 3 * 3.0 > DISPATCH_TIMEOUT_S and COLD_START_ANSWER_S > DISPATCH_TIMEOUT_S
    sim.configure(delay=3.0, answer_delay=COLD_START_ANSWER_S)
    workspace_id, order_ids = seed_workspace(stack, 3)
    submit(workspace_id, order_ids)
    the_job = job_of(stack, workspace_id)
    run = wait_flow_final(orchestration_run_of(stack, the_job.id), timeout_s=90)
    the_job = wait_job_finished(stack, the_job.id, timeout_s=10)

    assert the_job.dispatch_state == "unknown"  # no answer reached us: neither accepted nor refused
    assert (the_job.status, the_job.success_count, the_job.error_count) == ("completed", 3, 0)
    assert all(i.status == "success" and i.tracking_number for i in items(stack, the_job.id))
    assert len(coord_completed(stack, the_job.id)) == 3
    assert sim.state()["posts"] == {the_job.id: 1}  # never re-sent
    assert run.state.is_completed(), run.state
    assert_summary_agrees(the_job)


def test_successes_after_the_deadline_correct_the_job_its_run_and_its_summary(stack, sim):
    workspace_id, order_ids = seed_workspace(stack, 2)
    sim.configure(order_scenarios={order_id: "held" for order_id in order_ids})  # the robot is slow, not dead
    submit(workspace_id, order_ids)
    the_job = job_of(stack, workspace_id)
    run_id = orchestration_run_of(stack, the_job.id)
    wait_flow_state(run_id, "Suspended", timeout_s=60)
    deadline = job(stack, the_job.id).deadline_at
    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.5)

    # Our clock decides: the reconciler times the job out and resumes its run, which ends Failed with the reason.
    assert reconcile().state.is_completed()
    run = wait_flow_final(run_id, timeout_s=60)
    record_figure(
        stack,
        "deadline → run Failed (reconcile triggered at the deadline)",
        (run.state.timestamp - deadline).total_seconds(),
    )
    timed_out = wait_job_finished(stack, the_job.id, timeout_s=5)
    assert (timed_out.status, timed_out.failure_reason, timed_out.error_count) == ("failed", TIMEOUT_MESSAGE, 2)
    assert run.state.is_failed() and TIMEOUT_MESSAGE in run.state.message
    wait_for(lambda: TIMEOUT_MESSAGE in summary_artifact(the_job.id).data, timeout_s=10, what="the timeout summary")

    # The robot was only slow: its successes come after the closure, and the portal's truth wins.
    released = time.monotonic()
    sim.release()
    wait_for(lambda: flow_run(run_id).state.is_completed(), timeout_s=30, what="the run corrected to Completed")
    record_figure(
        stack,
        "late success → run Completed and summary republished (webhook after-commit)",
        time.monotonic() - released,
    )
    the_job = job(stack, the_job.id)
    assert (the_job.status, the_job.success_count, the_job.error_count) == ("completed", 2, 0)
    assert the_job.failure_reason is None
    assert {(i.status, bool(i.tracking_number), i.resolved_by) for i in items(stack, the_job.id)} == {
        ("success", True, "robot")
    }
    assert len(coord_completed(stack, the_job.id)) == 2
    corrected = flow_run(run_id)
    assert corrected.state.is_completed() and corrected.state.message == CORRECTED_MESSAGE
    wait_for(
        lambda: job(stack, the_job.id).summary_published_at >= the_job.updated_at,
        timeout_s=10,
        what="the corrected summary",
    )
    assert_summary_agrees(job(stack, the_job.id))
    assert sorted(r["estado"] for r in table_rows(items_artifact(the_job.id))) == ["creado", "creado"]
    assert sim.state()["posts"] == {the_job.id: 1}


def test_unusual_robot_fields_are_recorded(stack, sim):
    workspace_id, order_ids = seed_workspace(stack, 3)
    sim.configure(
        order_scenarios={order_ids[0]: "unknown_error_type", order_ids[1]: "long_error", order_ids[2]: "no_tracking"}
    )
    submit(workspace_id, order_ids)
    the_job = job_of(stack, workspace_id)
    run = wait_flow_final(orchestration_run_of(stack, the_job.id))
    the_job = wait_job_finished(stack, the_job.id, timeout_s=5)

    assert sim.state()["callbacksLost"] == 0 and len(sim.state()["callbacks"]) == 3  # every one acknowledged
    by_order = {i.order_id: i for i in items(stack, the_job.id)}
    unknown, long, no_tracking = (by_order[order_id] for order_id in order_ids)
    assert (unknown.status, unknown.error_type) == ("error", "unknown")
    assert "captcha" in unknown.error_message and CAPTCHA in unknown.error_message  # the robot's own type is kept
    assert (long.status, long.error_type) == ("error", "portal")
    assert long.error_message.endswith(TRUNCATED) and len(long.error_message) <= 1000
    assert long.error_message.startswith("page.click: Timeout 30000ms exceeded.\nCall log:\n")
    assert (no_tracking.status, no_tracking.tracking_number) == ("success", None)  # created, number unknown
    assert (the_job.status, the_job.success_count, the_job.error_count) == ("completed", 1, 2)
    [fired] = coord_completed(stack, the_job.id)
    assert fired.payload["item_id"] == no_tracking.id and fired.payload["order"]["tracking_number"] == ""
    assert run.state.is_completed(), run.state
    assert_summary_agrees(the_job)
    assert "número de pedido desconocido" in summary_artifact(the_job.id).data
