"""Alerts for operators, declared here rather than clicked in the UI: two Prefect automations that post to a
Slack-compatible incoming webhook (ALERT_WEBHOOK_URL) through one Prefect notification block, and the event a batch
emits when it ends with orders in error.

- "robotjobs: lote fallido": a batch run (the flows in BATCH_FLOWS) ends Failed, Crashed or TimedOut.
- "robotjobs: lote con errores": a batch ends `completed` with some orders in error or rejected before dispatch
  (the event BATCH_FINISHED_WITH_ERRORS; a `failed` batch already alerts through its Failed run).

`ensure_alerts()` creates or updates them by name (idempotent): `make up` calls it, and so does the production
deploy (`python -m flows.alerts`, after `prefect deploy --all`). The Prefect server evaluates them (its triggers
and actions services, on by default) and sends the post itself.
"""

from __future__ import annotations

import logging
import sys
import uuid
from datetime import timedelta

from prefect import get_client
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events import emit_event
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from domain.batches.jobs import get_job
from domain.db import UnitOfWork
from domain.models import JobStatus, Workspace
from domain.settings import get_settings
from flows import runtime
from flows.deployments import ORCHESTRATE, RETRY, SUBMIT

# The flows whose runs are "a batch run" for operators (each deployment is named after its flow). One list, so a
# merge of submit and orchestrate into one run per batch changes only this line.
BATCH_FLOWS = (SUBMIT, RETRY, ORCHESTRATE)
BATCH_FINISHED_WITH_ERRORS = "robotjobs.batch.finished-with-errors"
RUN_ENDED_BADLY = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut")

BLOCK_NAME = "robotjobs-alertas"
RUN_FAILED_AUTOMATION = "robotjobs: lote fallido"
WITH_ERRORS_AUTOMATION = "robotjobs: lote con errores"

# Slack's incoming-webhook body ({"text": ...}); Mattermost, Rocket.Chat and Google Chat take the same.
SLACK_BODY = {"text": "*{{subject}}*\n{{body}}"}
RUN_FAILED_SUBJECT = "Lote con problemas: {{ flow.name }} terminó {{ flow_run.state.name }}"
RUN_FAILED_BODY = (
    "Ejecución {{ flow_run.name }} ({{ flow.name }}): {{ flow_run.state.name }}.\n"
    "{{ flow_run.state.message or 'Sin mensaje.' }}\n"
    "Parámetros: {{ flow_run.parameters }}\n"
    "{% set link = flow_run|ui_url %}{% if link %}Ver en Prefect: {{ link }}{% endif %}"
)
WITH_ERRORS_SUBJECT = "Lote terminado con pedidos con error: {{ event.payload.workspace_name }}"
WITH_ERRORS_BODY = (
    "Lote {{ event.payload.job_id }} del workspace {{ event.payload.workspace_name }}: "
    "{{ event.payload.error_count }} de {{ event.payload.total_items }} pedido(s) con error o rechazados, "
    "{{ event.payload.success_count }} creados.\n"
    "Resumen: robotjobs summary {{ event.payload.job_id }}\n"
    "{% set link = flow_run|ui_url %}{% if link %}Ver en Prefect: {{ link }}{% endif %}"
)


def automations(block_document_id: uuid.UUID) -> list[AutomationCore]:
    """The two alert automations, both notifying through the block `block_document_id`."""
    batch_flow = {"prefect.resource.role": "flow", "prefect.resource.name": list(BATCH_FLOWS)}
    return [
        AutomationCore(
            name=RUN_FAILED_AUTOMATION,
            description="Avisa cuando una ejecución de lote (envío, reintento u orquestación) falla o se cae.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=batch_flow,
                expect=set(RUN_ENDED_BADLY),
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                SendNotification(block_document_id=block_document_id, subject=RUN_FAILED_SUBJECT, body=RUN_FAILED_BODY)
            ],
        ),
        AutomationCore(
            name=WITH_ERRORS_AUTOMATION,
            description="Avisa cuando un lote termina con pedidos con error o rechazados antes del envío.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "robotjobs.batch.*"},
                expect={BATCH_FINISHED_WITH_ERRORS},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                SendNotification(
                    block_document_id=block_document_id, subject=WITH_ERRORS_SUBJECT, body=WITH_ERRORS_BODY
                )
            ],
        ),
    ]


def ensure_alerts(webhook_url: str | None = None) -> str:
    """Create or update, by name, the notification block and both automations on the current Prefect server.
    Without a webhook URL (argument or ALERT_WEBHOOK_URL) nothing is created; returns what was done."""
    if webhook_url is None:
        secret = get_settings().alert_webhook_url
        webhook_url = secret.get_secret_value() if secret else None
    if not webhook_url:
        return "alertas: ALERT_WEBHOOK_URL no está configurada; no se crearon las automatizaciones de alerta"
    block = CustomWebhookNotificationBlock(
        name=BLOCK_NAME,
        # The URL of a Slack incoming webhook is a credential: kept as a block secret, shown masked in the UI.
        url="{{alert_url}}",
        secrets={"alert_url": webhook_url},
        json_data=SLACK_BODY,
        timeout=10,
    )
    block_document_id = block.save(BLOCK_NAME, overwrite=True)
    done = []
    with get_client(sync_client=True) as client:
        for automation in automations(block_document_id):
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                for duplicate in existing[1:]:  # created by hand or by a race: one automation per name
                    client.delete_automation(duplicate.id)
                done.append(f"{automation.name} (actualizada)")
            else:
                client.create_automation(automation)
                done.append(f"{automation.name} (creada)")
    return "alertas: " + ", ".join(done) + f"; bloque de notificación {BLOCK_NAME}"


def emit_batch_finished(job_id: str) -> None:
    """When the batch ended `completed` with orders in error (robot errors, deadline, rejected before dispatch),
    emit BATCH_FINISHED_WITH_ERRORS for the alert automation. The event id is derived from the job, so a rerun of
    the same run (resume, recovery) does not alert twice (Prefect drops an event id it has already seen).
    An alert must never fail the batch: any error here is logged and swallowed."""
    try:
        _emit_batch_finished(job_id)
    except Exception:  # the batch's outcome is already recorded; only the alert is lost
        logging.getLogger(__name__).exception("no se pudo emitir el evento de alerta del lote %s", job_id)


def _emit_batch_finished(job_id: str) -> None:
    with UnitOfWork(runtime.engine(), readonly=True) as uow:
        job = get_job(uow.session, job_id)
        workspace = uow.session.get(Workspace, job.workspace_id)
        if job.status != JobStatus.COMPLETED or job.error_count == 0:
            return
        payload = {
            "job_id": job.id,
            "workspace_id": job.workspace_id,
            "workspace_name": workspace.name if workspace else job.workspace_id,
            "status": str(job.status),
            "success_count": job.success_count,
            "error_count": job.error_count,
            "total_items": job.total_items,
        }
    emit_event(
        BATCH_FINISHED_WITH_ERRORS,
        resource={
            "prefect.resource.id": f"robotjobs.batch.{job_id}",
            "prefect.resource.name": payload["workspace_name"],
        },
        payload=payload,
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"{BATCH_FINISHED_WITH_ERRORS}:{job_id}"),
    )


def main() -> int:
    """`python -m flows.alerts`: the deploy step (PREFECT_API_URL, PREFECT_API_AUTH_STRING, ALERT_WEBHOOK_URL set)."""
    print(ensure_alerts())
    return 0


if __name__ == "__main__":
    sys.exit(main())
