"""`prefect deploy --all` against a real Prefect server, and a deployed run executed by a process worker."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from stack.prefect_auth import auth_header
from stack.processes import BIN, PROJECT_ROOT, ManagedProcess, prefect_env, start_prefect_server

pytestmark = pytest.mark.e2e


def _prefect(env, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _created(api: httpx.Client, url: str, attempts: int = 5) -> dict:
    """POST `url` and the created object. A Prefect server on SQLite answers 503 while its database is locked (here
    the worker registering and the scheduler writing the reconcile's runs at once): asked again a moment later. A CI
    rehearsal lost this test to a body without an `id` once."""
    for attempt in range(1, attempts + 1):
        response = api.post(url, json={})
        if response.status_code < 500 or attempt == attempts:
            break
        time.sleep(attempt)
    assert response.status_code == 201, (response.status_code, response.text[:500])
    return response.json()


def test_prefect_deploy_all_and_a_process_worker(tmp_path):
    # The production topology: the server with basic auth, `prefect deploy` and the worker passing it.
    auth_string = "robotjobs:deploy-test"
    server, api_url = start_prefect_server(tmp_path / "home", log_dir=tmp_path, auth_string=auth_string)
    worker = None
    api = httpx.Client(headers=auth_header(auth_string), timeout=10)
    try:
        env = prefect_env(tmp_path / "home", api_url, auth_string=auth_string, ROBOTJOBS_HOME=str(PROJECT_ROOT))
        created = _prefect(env, "work-pool", "create", "robotjobs", "--type", "process")
        assert created.returncode == 0, created.stdout + created.stderr
        deployed = _prefect(env, "deploy", "--all")
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

        found = {d["name"]: d for d in api.post(f"{api_url}/deployments/filter", json={}).json()}
        assert set(found) == {"submit-robot-job", "retry-failed-items", "orchestrate-robot-job", "reconcile"}
        assert {d["work_pool_name"] for d in found.values()} == {"robotjobs"}
        reconcile = found["reconcile"]
        assert [s["schedule"]["interval"] for s in reconcile["schedules"]] == [60.0]
        assert reconcile["global_concurrency_limit"]["limit"] == 1
        assert reconcile["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
        # The operator's forms: flat, by name, every field described, no "str / None" toggle.
        schema = found["submit-robot-job"]["parameter_openapi_schema"]
        assert list(schema["properties"]) == ["workspace", "stage", "order_ids", "idempotency_key"]
        assert schema["required"] == ["workspace"] and not schema.get("definitions")
        assert "Nombre del workspace" in schema["properties"]["workspace"]["description"]
        retry = found["retry-failed-items"]["parameter_openapi_schema"]
        assert list(retry["properties"]) == ["batch", "idempotency_key"]
        assert "#<n>" in retry["properties"]["batch"]["description"]
        for form in (schema, retry):
            assert all(p.get("description") and "anyOf" not in p for p in form["properties"].values())

        # The deploy's alert step (README): the automations and their notification block, by name, twice.
        for _ in range(2):
            alerts = subprocess.run(
                [sys.executable, "-m", "flows.alerts"],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                env={**env, "ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook"},
            )
            assert alerts.returncode == 0, alerts.stdout + alerts.stderr
        automations = api.post(f"{api_url}/automations/filter", json={}).json()
        assert sorted(a["name"] for a in automations) == ["robotjobs: lote con errores", "robotjobs: lote fallido"]

        # A process worker runs a deployed flow: the reconciler, switched off by its settings flag.
        worker = ManagedProcess(
            "worker",
            [str(BIN / "prefect"), "worker", "start", "--pool", "robotjobs"],
            env={
                **env,
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "RECONCILER_ENABLED": "false",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
            },
            log_path=tmp_path / "worker.log",
        ).start()
        run = _created(api, f"{api_url}/deployments/{reconcile['id']}/create_flow_run")
        worker.wait_until(
            lambda: (
                api.get(f"{api_url}/flow_runs/{run['id']}").json()["state"]["type"]
                in ("COMPLETED", "FAILED", "CRASHED")
            ),
            timeout_s=90,
            what="the deployed run to finish",
        )
        final = api.get(f"{api_url}/flow_runs/{run['id']}").json()["state"]
        assert final["type"] == "COMPLETED", (final, worker.log_tail())
    finally:
        if worker is not None:
            worker.stop()
        api.close()
        server.stop()
