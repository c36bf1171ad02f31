"""Names of the flows and deployments, shared by `serve`, `prefect.yaml`, the CLI and the reconciler; the
reconciler's interval the batch runs' suspend timeout counts on; and how the reconciler starts a recovery run.
"""

from __future__ import annotations

from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

SUBMIT = "submit-robot-job"
ORCHESTRATE = "orchestrate-robot-job"
RETRY = "retry-failed-items"
RECONCILE = "reconcile"

# "<flow name>/<deployment name>": every deployment is named after its flow, served or deployed.
ORCHESTRATE_DEPLOYMENT = f"{ORCHESTRATE}/{ORCHESTRATE}"
RECONCILE_DEPLOYMENT = f"{RECONCILE}/{RECONCILE}"
# The reconciler's schedule (served by flows.serve; prefect.yaml's `every_minute` must say the same, a test checks).
RECONCILE_INTERVAL_S = 60
# How long past a job's deadline its suspended run may wait before Prefect's own timer fails it: one reconciler
# interval for the reconciler to close the job and resume the run, plus this margin (two more chances on a
# loaded server). Prefect's timer must never decide: an expired suspend fails the run with no hook.
SUSPEND_MARGIN_S = 120


def orchestrate_key(job_id: str, recovery: int = 0) -> str:
    """Idempotency key of a job's recovery run: `orchestrate:<job>`, then `orchestrate:<job>:recover:<n>` for each
    run the reconciler starts after the previous one ended."""
    return f"orchestrate:{job_id}" if recovery == 0 else f"orchestrate:{job_id}:recover:{recovery}"


def start_orchestration(job_id: str, *, recovery: int = 0) -> FlowRun:
    """Create (or, for a key already used, return) a recovery run of the job, without waiting for it: only the
    reconciler calls this, for a job whose own run died (the operator's run is the batch, flows/submit.py).

    Not a subflow: Prefect cannot suspend subflows, and the job's run must outlive the run that starts it.
    """
    return run_deployment(
        ORCHESTRATE_DEPLOYMENT,
        parameters={"job_id": job_id},
        timeout=0,
        idempotency_key=orchestrate_key(job_id, recovery),
        as_subflow=False,
        tags=[f"job:{job_id}"],
    )
