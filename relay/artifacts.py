"""The batch summary as Prefect artifacts, keyed per job: the operators' text (markdown) and a table of items.

Published by the job's own flow run when it finishes, by the resume consumer when a late robot result corrects a
finished job, and by the reconciler for any finished job whose published summary is older than the job
(`summary_published_at`). A new version under the same key replaces the old one in the UI. The artifacts are
attached to the job's flow run, whoever publishes them.

Artifacts carry order, recipient and result data only; never credentials or the callback secret.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.utilities.context import get_flow_run_id
from sqlalchemy import Engine

from domain.batches.jobs import mark_summary_published
from domain.batches.summary import BatchSummary, render_summary_text, status_label
from domain.batches.view import load_batch
from domain.db import UnitOfWork


def summary_key(job_id: str) -> str:
    return f"robot-job-{job_id.lower()}-summary"


def items_key(job_id: str) -> str:
    return f"robot-job-{job_id.lower()}-items"


def render_markdown(summary: BatchSummary) -> str:
    """The reference text format (domain.batches.summary), fenced so its spacing and bullets survive rendering."""
    header = (
        f"### Lote `{summary.job_id}` — {status_label(summary.job_status)}\n\n"
        f"Creados: **{summary.success_count}** · Con error: **{summary.error_count}** · "
        f"Total: **{summary.total_items}**\n"
    )
    if summary.failure_reason:
        header += f"\nMotivo: {summary.failure_reason}\n"
    return f"{header}\n```text\n{render_summary_text(summary)}\n```\n"


def render_items(summary: BatchSummary) -> list[dict[str, object]]:
    """One row per item, from the same summary lines as the text (pedido number label, possible duplicates)."""
    return [
        {
            "pedido": line.order_name,
            "destinatario": line.recipient,
            "direccion": line.address,
            "ciudad": line.city,
            "telefono": line.phone,
            "valor": line.total,
            "estado": status_label(line.status),
            "guia": line.pedido if line.status == "success" else "",
            "tipo_error": line.error_type or "",
            "mensaje": line.error_message or "",
            "posible_duplicado": line.possible_duplicate or "",
            "item_id": line.item_id,
        }
        for line in summary.lines
    ]


def publish_summary(engine: Engine, job_id: str) -> None:
    """Publish (a new version of) the job's summary and items artifacts, then record what they show.

    `updated_at` is read before the summary: a result committed in between makes the summary newer than the mark,
    never older, so the worst case is one more publication by the reconciler. Raises if Prefect does not answer
    (the mark is then not written and the summary stays due).
    """
    # A publisher that showed a state already overtaken publishes again: when two corrections race, the older
    # summary's version may be created last, and only its own publisher can see that (the newer one marked first).
    for _ in range(3):
        if _publish_once(engine, job_id):
            return


def _publish_once(engine: Engine, job_id: str) -> bool:
    with UnitOfWork(engine, readonly=True) as uow:
        batch = load_batch(uow.session, job_id)
    as_of, flow_run_id, summary = batch.job.updated_at, batch.job.flow_run_id, batch.summary
    # The job's run (a reconciler or the webhook publishes for it); a job that never had one: the current run.
    run_id = UUID(flow_run_id) if flow_run_id else get_flow_run_id()
    artifacts = [
        ArtifactCreate(
            key=summary_key(job_id),
            type="markdown",
            data=render_markdown(summary),
            description="Resumen del lote de envíos (formato de los operadores)",
            flow_run_id=run_id,
        ),
        ArtifactCreate(
            key=items_key(job_id),
            type="table",
            data=json.dumps(render_items(summary), ensure_ascii=False, default=str),
            description="Pedidos del lote y su resultado",
            flow_run_id=run_id,
        ),
    ]
    # Both at once (one round trip's wait, not two): a finishing run publishes them between its resume and
    # `Completed`. Each key is independent; either failing raises here and the mark below is not written.
    with get_client(sync_client=True) as client, ThreadPoolExecutor(max_workers=2) as pool:
        for created in [pool.submit(client.create_artifact, artifact) for artifact in artifacts]:
            created.result()
    with UnitOfWork(engine) as uow:
        up_to_date = mark_summary_published(uow.session, job_id, as_of=as_of)
        uow.commit()
    return up_to_date
