"""The batch summary as Prefect artifacts, keyed per job: the operators' text (markdown) and a table of items.

Artifacts carry order, recipient and result data only; never credentials or the callback secret.
"""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlalchemy import Engine

from domain.db import UnitOfWork
from domain.jobs import RejectedOrder
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
        summary = batch_summary(uow.session, job_id)
    header = (
        f"### Lote `{summary.job_id}` — {STATUS_LABEL.get(summary.job_status, summary.job_status)}\n\n"
        f"Creados: **{summary.success_count}** · Con error: **{summary.error_count}** · "
        f"Total: **{summary.total_items}**\n"
    )
    if summary.failure_reason:
        header += f"\nMotivo: {summary.failure_reason}\n"
    return f"{header}\n```text\n{render_summary_text(summary)}\n```\n"


def items_table(engine: Engine, job_id: str) -> list[dict[str, object]]:
    """One row per item, from the same summary lines as the text (pedido number label, possible duplicates)."""
    with UnitOfWork(engine, readonly=True) as uow:
        summary = batch_summary(uow.session, job_id)
    return [
        {
            "pedido": line.order_name,
            "destinatario": line.recipient,
            "direccion": line.address,
            "ciudad": line.city,
            "telefono": line.phone,
            "valor": line.total,
            "estado": STATUS_LABEL.get(line.status, line.status),
            "guia": line.pedido if line.status == "success" else "",
            "tipo_error": line.error_type or "",
            "mensaje": line.error_message or "",
            "posible_duplicado": line.possible_duplicate or "",
            "item_id": line.item_id,
        }
        for line in summary.lines
    ]


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
