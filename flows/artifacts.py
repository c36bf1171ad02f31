"""The batch summary as Prefect artifacts, keyed per job: the operators' text (markdown) and a table of items.

Artifacts carry order, recipient and result data only; never credentials or the callback secret.
"""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlalchemy import Engine

from domain.db import UnitOfWork
from domain.jobs import RejectedOrder, get_job_view
from domain.money import format_cop
from domain.summary import batch_summary, render_summary_text

STATUS_LABEL = {"pending": "pendiente", "processing": "en proceso", "completed": "completado", "failed": "fallido",
                "success": "creado", "error": "error"}


def summary_key(job_id: str) -> str:
    return f"robot-job-{job_id.lower()}-summary"


def items_key(job_id: str) -> str:
    return f"robot-job-{job_id.lower()}-items"


def rejected_key(job_id: str) -> str:
    return f"robot-job-{job_id.lower()}-rejected"


def summary_markdown(engine: Engine, job_id: str) -> str:
    """The reference text format (domain.summary), fenced so its spacing and bullets survive rendering."""
    with UnitOfWork(engine, readonly=True) as uow:
        job = get_job_view(uow.session, job_id).job
        text = render_summary_text(batch_summary(uow.session, job_id))
    header = (
        f"### Lote `{job.id}` — {STATUS_LABEL.get(job.status, job.status)}\n\n"
        f"Creados: **{job.success_count}** · Con error: **{job.error_count}** · Total: **{job.total_items}**\n"
    )
    if job.failure_reason:
        header += f"\nMotivo: {job.failure_reason}\n"
    return f"{header}\n```text\n{text}\n```\n"


def items_table(engine: Engine, job_id: str) -> list[dict[str, object]]:
    with UnitOfWork(engine, readonly=True) as uow:
        view = get_job_view(uow.session, job_id)
        rows = []
        for entry in view.items:
            item, order, contact = entry.item, entry.order, entry.contact
            city = (item.robot_input or {}).get("ciudad") or order.shipping_city or ""
            rows.append(
                {
                    "pedido": order.name,
                    "destinatario": (contact.name if contact else None) or "",
                    "direccion": order.shipping_address or "",
                    "ciudad": city,
                    "telefono": (item.robot_input or {}).get("celular") or ((contact.phone if contact else None) or ""),
                    "valor": format_cop(order.total_value),
                    "estado": STATUS_LABEL.get(item.status, item.status),
                    "guia": item.tracking_number or "",
                    "tipo_error": item.error_type or "",
                    "mensaje": item.error_message or "",
                    "item_id": item.id,
                }
            )
    return rows


def publish_summary(engine: Engine, job_id: str) -> None:
    """Publish (a new version of) the job's summary and items artifacts in the current run."""
    create_markdown_artifact(
        markdown=summary_markdown(engine, job_id),
        key=summary_key(job_id),
        description="Resumen del lote de envíos (formato de los operadores)",
    )
    create_table_artifact(
        table=items_table(engine, job_id), key=items_key(job_id), description="Pedidos del lote y su resultado"
    )


def publish_rejected(job_id: str, rejected: list[RejectedOrder]) -> None:
    """Orders that failed coverage validation and were never sent to the robot."""
    create_table_artifact(
        table=[{"pedido": r.order_name, "order_id": r.order_id, "motivo": r.reason} for r in rejected]
        or [{"pedido": "", "order_id": "", "motivo": "Ningún pedido rechazado"}],
        key=rejected_key(job_id),
        description="Pedidos rechazados antes del envío (validación de cobertura)",
    )
