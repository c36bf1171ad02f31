"""Fail fast: the robot unreachable, busy (409) or broken (500) fails the job at once, dispatched at most once."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import (
    items,
    items_artifact,
    job_of,
    orchestration_run_of,
    seed_workspace,
    submit,
    summary_artifact,
    table_rows,
    wait_flow_final,
    wait_job_finished,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("failure", "reason_part"),
    [
        ("unreachable", "No se pudo conectar con el servicio del robot"),
        (409, "HTTP 409"),
        (500, "HTTP 500"),
    ],
)
def test_robot_refusal_fails_the_job_at_once(stack, sim, failure, reason_part):
    workspace_id, order_ids = seed_workspace(stack, 2)
    if failure == "unreachable":
        sim.stop()
    else:
        sim.configure(dispatch_status=failure)
    try:
        submit(workspace_id, order_ids)
        job = job_of(stack, workspace_id)
        run = wait_flow_final(orchestration_run_of(stack, job.id))
        job = wait_job_finished(stack, job.id, timeout_s=5)
    finally:
        if failure == "unreachable":
            stack.restart_simulator()

    assert job.status == "failed" and reason_part in job.failure_reason
    assert job.dispatch_state == "refused"
    closed = items(stack, job.id)
    assert {(i.status, i.error_type) for i in closed} == {("error", "dispatch")}
    assert all(reason_part in i.error_message for i in closed)
    assert run.state.is_failed() and reason_part in run.state.message
    posts = stack.simulator.state()["posts"]
    assert posts.get(job.id, 0) == (0 if failure == "unreachable" else 1)  # never retried
    assert reason_part in summary_artifact(job.id).data
    assert {r["tipo_error"] for r in table_rows(items_artifact(job.id))} == {"dispatch"}
