"""Triggering the operator deployments on the Prefect server, exactly as the Prefect UI does."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from stack.prefect_auth import use_local_credential

SUBMIT_DEPLOYMENT = "submit-robot-job/submit-robot-job"
RETRY_DEPLOYMENT = "retry-failed-items/retry-failed-items"
DEFAULT_API_URL = "http://127.0.0.1:4200/api"
# Artifacts of a job's run are keyed `robot-job-<job id>-<what>` (relay/artifacts.py, flows/artifacts.py).
ARTIFACT_KEY = re.compile(r"^robot-job-([0-9a-f-]{36})-")


@dataclass(frozen=True)
class TriggeredRun:
    flow_run_id: str
    ui_url: str


@dataclass(frozen=True)
class RunState:
    name: str  # Prefect's state name, e.g. "Running", "Failed"
    final: bool
    message: str | None = None


class Deployments(Protocol):
    def trigger(self, deployment: str, parameters: dict[str, Any]) -> TriggeredRun: ...

    def run_state(self, flow_run_id: str) -> RunState | None:
        """The run's current state; None when it has none yet (or Prefect did not answer)."""

    def jobs_named_by(self, flow_run_id: str) -> list[str]:
        """Ids of the jobs whose artifacts (`robot-job-<id>-...`) the run published."""


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

    def run_state(self, flow_run_id: str) -> RunState | None:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(UUID(flow_run_id)).state
        except Exception:  # a blip: the next poll asks again
            return None
        return None if state is None else RunState(name=state.name, final=state.is_final(), message=state.message)

    def jobs_named_by(self, flow_run_id: str) -> list[str]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        try:
            with get_client(sync_client=True) as client:
                artifacts = client.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])),
                    limit=50,
                )
        except Exception:
            return []
        return list(dict.fromkeys(match.group(1) for a in artifacts if a.key and (match := ARTIFACT_KEY.match(a.key))))
