"""The Prefect server of the stack runs with basic auth: a request without the credential is refused, while every
process of ours (the served flows, the webhook's relay, the reconciler, this suite's client) passes it."""

from __future__ import annotations

import httpx
import pytest

from stack.prefect_auth import auth_header
from tests.e2e.helpers import job_of, orchestration_run_of, seed_workspace, submit, wait_flow_final

pytestmark = pytest.mark.e2e


def test_the_api_refuses_a_request_without_the_credential(stack):
    filter_runs = f"{stack.api_url}/flow_runs/filter"
    assert httpx.post(filter_runs, json={"limit": 1}, timeout=10).status_code == 401
    wrong = auth_header(stack.auth_string.split(":")[0] + ":not-the-password")
    assert httpx.post(filter_runs, json={"limit": 1}, headers=wrong, timeout=10).status_code == 401
    assert httpx.post(f"{stack.api_url}/artifacts/filter", json={}, timeout=10).status_code == 401  # customers' data
    assert (
        httpx.post(filter_runs, json={"limit": 1}, headers=auth_header(stack.auth_string), timeout=10).status_code
        == 200
    )
    assert httpx.get(f"{stack.api_url}/health", timeout=10).status_code == 200  # probes stay open


def test_a_batch_runs_end_to_end_with_auth_on(stack, sim):
    """Submit (this client), orchestration (the runner), resume (the webhook's relay): all authenticated."""
    workspace_id, order_ids = seed_workspace(stack, 2)
    submit(workspace_id, order_ids)
    job = job_of(stack, workspace_id)
    run = wait_flow_final(orchestration_run_of(stack, job.id))
    assert run.state.is_completed(), run.state
