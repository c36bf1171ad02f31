"""`make demo`: a real batch end to end on the embedded defaults, checked, then everything stopped.

It starts the local stack on free loopback ports, seeds a fresh demo workspace (with an automation that moves
shipped orders to "Despachado" and sends the customer a WhatsApp template), submits the dispatch stage through the
`submit-robot-job` deployment as an operator does from the UI, shows progress, prints the batch summary and the
Prefect UI link, checks the counts, the artifacts and the automations, and exits 0 only if everything held.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlmodel import select

from domain.automations.rules import save_automation
from domain.batches.summary import render_summary_text
from domain.batches.view import load_batch
from domain.credentials import load_credentials_key
from domain.db import UnitOfWork, make_engine
from domain.models import FINISHED_JOB_STATUSES, Order, RobotJob
from domain.settings import VAR_DIR, get_settings
from sample_data.seed import DemoWorkspace, seed_demo
from stack.local import StackConfig, prefect_client, start_stack

# The simulator's scenario for this demo: the courier does not know one city, and one order hits a portal error.
UNKNOWN_CITY = "CHINCHINA (CDAS)"
PORTAL_ERROR_ORDER = "Pedido 1045"
SIMULATOR_ARGS = [
    "--delay", "0.25",
    "--unknown-city", UNKNOWN_CITY,
    "--order-scenario", f"{PORTAL_ERROR_ORDER}=login_failure",
]  # fmt: skip
TIMEOUT_S = 300


@dataclass
class Check:
    what: str
    ok: bool
    detail: str = ""


def say(text: str = "") -> None:
    print(text, flush=True)


def seed(engine, settings) -> DemoWorkspace:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    with UnitOfWork(engine) as uow:
        demo = seed_demo(
            uow.session,
            credentials_key=load_credentials_key(settings, allow_generate=True),
            name=f"Tienda Demo {stamp}",
        )
        save_automation(
            uow.session,
            workspace_id=demo.workspace_id,
            data={
                "name": "Pedido despachado: mover y avisar al cliente",
                "trigger_type": "robot.coord.completed",
                "trigger_config": {"pipeline_id": demo.pipeline_id},
                "actions": [
                    {"type": "change_stage", "stage_id": demo.stage_ids["Despachado"]},
                    {
                        "type": "send_whatsapp_template",
                        "template_name": "pedido_despachado",
                        "parameters": ["{{contacto.nombre}}", "{{orden.tracking_number}}", "{{orden.total_formato}}"],
                    },
                ],
            },
        )
        uow.commit()
    return demo


def submit(workspace_id: str) -> str:
    from prefect.deployments import run_deployment

    run = run_deployment(
        "submit-robot-job/submit-robot-job",
        parameters={"workspace": workspace_id},
        timeout=0,
    )
    return str(run.id)


def wait_for_job(engine, workspace_id: str, deadline: float) -> RobotJob:
    job, last = None, ""
    while time.monotonic() < deadline:
        with UnitOfWork(engine, readonly=True) as uow:
            job = uow.session.exec(select(RobotJob).where(RobotJob.workspace_id == workspace_id)).first()
        if job is not None:
            done = job.success_count + job.error_count
            line = (
                f"  progreso: {done}/{job.total_items}  exitosos {job.success_count}  "
                f"con error {job.error_count}  ({job.status})"
            )
            if line != last:
                say(line)
                last = line
            if job.status in FINISHED_JOB_STATUSES:
                return job
        time.sleep(0.5)
    raise TimeoutError(f"the batch did not finish within {TIMEOUT_S} s (last: {last.strip() or 'no job yet'})")


def flow_run_state(flow_run_id: str, deadline: float) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if (state and state.is_final()) or time.monotonic() > deadline:
                return state.name if state else "?"
            time.sleep(0.5)


def artifact_keys(flow_run_id: str) -> set[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in artifacts if a.key}


def wait_for(check, deadline: float):
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def main() -> int:
    settings = get_settings()
    state_dir = VAR_DIR / "demo"
    shutil.rmtree(state_dir / "prefect", ignore_errors=True)  # each demo gets a fresh Prefect server database
    say("robotjobs demo: starting the local stack on 127.0.0.1 (Prefect server, flows, webhook, robot, automations)")
    started_at = time.monotonic()
    stack = start_stack(StackConfig(state_dir=state_dir, simulator_args=SIMULATOR_ARGS))
    checks: list[Check] = []
    with prefect_client(stack.api_url, stack.auth_string):  # the server runs with basic auth
        try:
            say(f"  stack ready in {time.monotonic() - started_at:.0f} s; logs in {stack.log_dir}")
            engine = make_engine(stack.database_url)
            demo = seed(engine, settings)
            say(f"  demo workspace {demo.workspace_id}: {len(demo.order_ids)} orders in 'Por despachar'")

            submit_run = submit(demo.workspace_id)
            say(f"submitted through the deployment submit-robot-job: flow run {submit_run}")
            deadline = time.monotonic() + TIMEOUT_S
            job = wait_for_job(engine, demo.workspace_id, deadline)
            orchestration_state = flow_run_state(job.flow_run_id, deadline) if job.flow_run_id else "none"
            with UnitOfWork(engine, readonly=True) as uow:
                batch = load_batch(uow.session, job.id)
            job, summary = batch.job, batch.summary

            say("")
            say(render_summary_text(summary).rstrip("\n"))
            say(f"Exitosos: {job.success_count}  Con error: {job.error_count}  Total: {job.total_items}")
            say("")
            say(f"Prefect UI (while the stack runs): {stack.ui_url}/runs/flow-run/{job.flow_run_id}")

            rejected_messages = [line.error_message or "" for line in summary.rejected]
            expected_rejected_before_dispatch = 5  # seed_demo: unknown/empty cities and COD-less cities
            checks += [
                Check("the job finished as completed", job.status == "completed", job.status),
                Check(
                    "counts add up (success + error == total, none pending)",
                    job.success_count + job.error_count == job.total_items == len(demo.order_ids)
                    and summary.pending_count == 0,
                    f"{job.success_count} + {job.error_count} of {job.total_items}",
                ),
                Check(
                    "the counts equal the items",
                    (job.success_count, job.error_count) == (len(summary.successes), len(summary.rejected)),
                ),
                Check(
                    "errors: 5 rejected before dispatch, the unknown city and the portal error",
                    job.error_count == expected_rejected_before_dispatch + 2
                    and "No se encontró el municipio" in rejected_messages
                    and "Login fallido en el portal de Coordinadora" in rejected_messages,
                    f"{job.error_count} errors",
                ),
                Check("the orchestration flow run completed", orchestration_state == "Completed", orchestration_state),
            ]
            keys = wait_for(lambda: artifact_keys(job.flow_run_id), time.monotonic() + 20) if job.flow_run_id else set()
            checks.append(
                Check(
                    "the summary and items artifacts are published",
                    any("summary" in k for k in keys) and any("items" in k for k in keys),
                    ", ".join(sorted(keys)),
                )
            )

            def reconciler_runs() -> int:
                from prefect import get_client
                from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

                with get_client(sync_client=True) as client:
                    runs = client.read_flow_runs(
                        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["reconcile"]))
                    )
                return len(runs)

            refused = httpx.post(f"{stack.api_url}/flow_runs/filter", json={"limit": 1}, timeout=10).status_code
            checks.append(
                Check("the Prefect API refuses a request without the credential", refused == 401, f"HTTP {refused}")
            )

            scheduled = wait_for(reconciler_runs, time.monotonic() + 30)
            checks.append(
                Check(
                    "the every-minute reconciler is scheduled on the server",
                    scheduled > 0,
                    f"{scheduled} reconcile runs",
                )
            )

            def shipped_and_messaged():
                messages = httpx.get(f"{stack.whatsapp_url}/_fake/messages", timeout=5).json()
                with UnitOfWork(engine, readonly=True) as uow:
                    moved = sum(
                        1
                        for order_id in demo.order_ids
                        if uow.session.get(Order, order_id).stage_id == demo.stage_ids["Despachado"]
                    )
                count = len(messages if isinstance(messages, list) else messages.get("messages", []))
                return (moved, count) if moved == count == job.success_count else None

            automations = wait_for(shipped_and_messaged, time.monotonic() + 60)
            checks.append(
                Check(
                    "automations: every shipped order moved to Despachado and messaged once",
                    automations is not None,
                    f"{job.success_count} expected",
                )
            )
        except Exception as exc:  # noqa: BLE001 - reported as a failed check, then the stack is stopped
            checks.append(Check("the demo ran", False, f"{type(exc).__name__}: {exc}"))
        finally:
            say("stopping the stack...")
            stack.stop()

    say("")
    for check in checks:
        say(f"  [{'ok' if check.ok else 'FAILED'}] {check.what}" + (f"  ({check.detail})" if check.detail else ""))
    ok = all(c.ok for c in checks)
    say(f"demo {'passed' if ok else 'FAILED'} in {time.monotonic() - started_at:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
