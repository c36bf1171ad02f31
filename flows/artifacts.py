"""Artifacts of the operator-facing flows: the orders rejected before dispatch, and (from relay.artifacts, shared
with the webhook's resume consumer) the job's summary and items table.

Artifacts carry order, recipient and result data only; never credentials or the callback secret.
"""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from domain.batches.jobs import RejectedOrder
from relay.artifacts import items_key, publish_summary, summary_key

__all__ = ["items_key", "publish_rejected", "publish_summary", "rejected_key", "summary_key"]


def rejected_key(job_id: str) -> str:
    return f"robot-job-{job_id.lower()}-rejected"


def publish_rejected(job_id: str, rejected: list[RejectedOrder]) -> None:
    """Orders that failed coverage validation and were never sent to the robot."""
    create_table_artifact(
        table=[{"pedido": r.order_name, "order_id": r.order_id, "motivo": r.reason} for r in rejected]
        or [{"pedido": "", "order_id": "", "motivo": "Ningún pedido rechazado"}],
        key=rejected_key(job_id),
        description="Pedidos rechazados antes del envío (validación de cobertura)",
    )
