"""Triggering the operator deployments on the Prefect server, exactly as the Prefect UI does."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from stack.prefect_auth import use_local_credential

SUBMIT_DEPLOYMENT = "submit-robot-job/submit-robot-job"
RETRY_DEPLOYMENT = "retry-failed-items/retry-failed-items"
DEFAULT_API_URL = "http://127.0.0.1:4200/api"


@dataclass(frozen=True)
class TriggeredRun:
    flow_run_id: str
    ui_url: str


class Deployments(Protocol):
    def trigger(self, deployment: str, parameters: dict[str, Any]) -> TriggeredRun: ...


def ui_url_of(flow_run_id: str) -> str:
    api = os.environ.get("PREFECT_API_URL", DEFAULT_API_URL).rstrip("/")
    base = api[: -len("/api")] if api.endswith("/api") else api
    return f"{base}/runs/flow-run/{flow_run_id}"


class PrefectDeployments:
    """Creates a flow run of a deployment and returns at once; a worker or `serve` runner picks it up."""

    def trigger(self, deployment: str, parameters: dict[str, Any]) -> TriggeredRun:
        os.environ.setdefault("PREFECT_API_URL", DEFAULT_API_URL)
        use_local_credential(os.environ["PREFECT_API_URL"])  # the server's basic auth, when make up generated it
        from prefect.deployments import run_deployment  # imported late: no Prefect client work at import time

        run = run_deployment(deployment, parameters=parameters, timeout=0)
        return TriggeredRun(flow_run_id=str(run.id), ui_url=ui_url_of(str(run.id)))
