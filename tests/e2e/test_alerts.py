"""Alerts end to end: the automations of flows/alerts.py on the stack's Prefect server (basic auth on) post to a
Slack-compatible receiver on loopback when a batch run fails and when a batch ends with orders in error."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from prefect import get_client

from flows.alerts import RUN_FAILED_AUTOMATION, WITH_ERRORS_AUTOMATION, ensure_alerts
from tests.automations.test_webhook_action import Receiver
from tests.e2e.helpers import (
    job_of,
    orchestration_run_of,
    record_figure,
    seed_workspace,
    submit,
    wait_flow_final,
    wait_for,
    wait_job_finished,
)

pytestmark = pytest.mark.e2e

ALERT_WITHIN_S = 30  # measured: about 1 s after the run ends on an idle machine (see figures.txt)


@pytest.fixture
def receiver(stack):
    """A receiver the alert automations post to, for this test only (they are deleted afterwards)."""
    received = Receiver()
    try:
        done = ensure_alerts(received.url)
        assert "creada" in done or "actualizada" in done, done
        yield received
    finally:
        with get_client(sync_client=True) as client:
            for name in (RUN_FAILED_AUTOMATION, WITH_ERRORS_AUTOMATION):
                for automation in client.read_automations_by_name(name):
                    client.delete_automation(automation.id)
        received.close()


def posts_naming(receiver: Receiver, job_id: str) -> list[dict]:
    return [r for r in receiver.requests if job_id in r["json"].get("text", "")]


def seconds_after(ended: datetime) -> float:
    return time.time() - ended.timestamp()


def test_a_failed_batch_run_alerts(stack, sim, receiver):
    sim.configure(scenario="login_failure")  # every order fails on the portal: the job fails, so does its run
    workspace_id, order_ids = seed_workspace(stack, 2)
    submit(workspace_id, order_ids)
    job = job_of(stack, workspace_id)
    run = wait_flow_final(orchestration_run_of(stack, job.id))
    assert run.state.is_failed()

    [post] = wait_for(lambda: posts_naming(receiver, job.id), timeout_s=ALERT_WITHIN_S, what="the alert's POST")
    latency = seconds_after(run.end_time or run.state.timestamp)
    record_figure(stack, "alert after a failed batch run", latency)
    text = post["json"]["text"]
    assert "Lote con problemas: submit-robot-job terminó Failed" in text  # the operator's run is the batch
    assert "Lote fallido" in text  # the run's own Spanish reason
    assert post["headers"]["Content-Type"] == "application/json"

    time.sleep(2)  # one run, one alert
    assert len(posts_naming(receiver, job.id)) == 1


def test_a_batch_with_orders_in_error_alerts(stack, sim, receiver):
    workspace_id, order_ids = seed_workspace(stack, 3)
    sim.configure(order_scenarios={order_ids[1]: "invalid_city"})
    submit(workspace_id, order_ids)
    job = job_of(stack, workspace_id)
    run = wait_flow_final(orchestration_run_of(stack, job.id))
    job = wait_job_finished(stack, job.id, timeout_s=5)
    assert (job.status, job.error_count, run.state.is_completed()) == ("completed", 1, True)

    [post] = wait_for(lambda: posts_naming(receiver, job.id), timeout_s=ALERT_WITHIN_S, what="the alert's POST")
    record_figure(stack, "alert after a batch with orders in error", seconds_after(run.end_time or run.state.timestamp))
    text = post["json"]["text"]
    assert "Lote terminado con pedidos con error" in text
    assert "1 de 3 pedido(s) con error o rechazados, 2 creados" in text


def test_a_clean_batch_does_not_alert(stack, sim, receiver):
    workspace_id, order_ids = seed_workspace(stack, 2)
    submit(workspace_id, order_ids)
    job = job_of(stack, workspace_id)
    run = wait_flow_final(orchestration_run_of(stack, job.id))
    assert run.state.is_completed()
    time.sleep(3)
    assert posts_naming(receiver, job.id) == []


def test_ensure_alerts_is_idempotent_by_name(stack, receiver):
    assert "actualizada" in ensure_alerts(receiver.url)
    with get_client(sync_client=True) as client:
        for name in (RUN_FAILED_AUTOMATION, WITH_ERRORS_AUTOMATION):
            assert len(client.read_automations_by_name(name)) == 1
    assert "ALERT_WEBHOOK_URL" in ensure_alerts("")
