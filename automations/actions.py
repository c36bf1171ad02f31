"""What each action does. Internal actions (change_stage, update_field, create_task) change the database through
domain functions in the caller's transaction; external ones (WhatsApp, webhook) call out through `Effects`.

Each function gets the action already rendered (variables replaced; see domain.automations.rules.render_action).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from automations.http_retry import RetryPolicy
from automations.webhook_action import WebhookFailed, WebhookSender, WebhookTargetRefused
from automations.whatsapp import ProviderError, WhatsAppClient, template_body, text_body
from domain.automations.models import Task
from domain.models import utcnow
from domain.orders.changes import move_order_to_stage, update_order
from domain.settings import Settings


class ActionFailed(Exception):
    """An action could not do its effect; the message (Spanish) goes to the execution log."""


@dataclass
class Effects:
    """The clients external actions use; built once per process from settings."""

    whatsapp: WhatsAppClient
    webhook: WebhookSender

    @classmethod
    def from_settings(cls, settings: Settings) -> Effects:
        token = settings.whatsapp_token.get_secret_value() if settings.whatsapp_token else None
        retry = RetryPolicy(budget_s=settings.automation_retry_budget_s)
        return cls(
            whatsapp=WhatsAppClient(settings.whatsapp_base_url, token, retry=retry),
            webhook=WebhookSender(allow_private=settings.webhook_action_allow_private, retry=retry),
        )

    def close(self) -> None:
        self.whatsapp.close()
        self.webhook.close()


def run_internal(
    session: Session,
    action: dict[str, Any],
    *,
    workspace_id: str,
    order_id: str | None,
    automation_id: str,
    idempotency_key: str,
    depth: int,
) -> dict[str, Any]:
    """Do an internal action in the caller's transaction; order changes emit events at `depth` (the cascade)."""
    kind = action["type"]
    if kind == "create_task":
        due_at = utcnow() + timedelta(hours=action["due_in_hours"]) if action.get("due_in_hours") is not None else None
        task = Task(
            workspace_id=workspace_id,
            order_id=order_id,
            title=action["title"],
            description=action.get("description") or None,
            due_at=due_at,
            automation_id=automation_id,
            source_key=idempotency_key,  # unique: a task per (event, automation, action), ever
        )
        session.add(task)
        session.flush()
        return {"task_id": task.id}
    if order_id is None:
        raise ActionFailed("El evento no trae un pedido")
    if kind == "change_stage":
        moved = move_order_to_stage(session, order_id, stage_id=action["stage_id"], depth=depth)
        return {"moved": moved, "stage_id": action["stage_id"]}
    if kind == "update_field":
        changed = update_order(session, order_id, changes={action["field"]: action["value"]}, depth=depth)
        return {"changed": changed}
    raise ActionFailed(f"Acción interna desconocida: {kind}")


def run_external(effects: Effects, action: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
    """Do an external action; raise ActionFailed with the reason when it did not succeed."""
    kind = action["type"]
    try:
        if kind == "send_whatsapp_template":
            body = template_body(
                action["to"],
                template_name=action["template_name"],
                language=action["language"],
                parameters=list(action.get("parameters") or []),
            )
            sent = effects.whatsapp.send(body, idempotency_key=idempotency_key)
            return sent.model_dump()
        if kind == "send_whatsapp_text":
            sent = effects.whatsapp.send(text_body(action["to"], text=action["text"]), idempotency_key=idempotency_key)
            return sent.model_dump()
        if kind == "webhook":
            body = action["body"] if action.get("body") is not None else {"text": action.get("message") or ""}
            return effects.webhook.post(action["url"], body, idempotency_key=idempotency_key).model_dump()
    except (ProviderError, WebhookFailed, WebhookTargetRefused) as exc:
        raise ActionFailed(str(exc)) from exc
    raise ActionFailed(f"Acción externa desconocida: {kind}")
