"""The read API for the chat/commands screen and operators: a job with its items, and its batch summary."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from domain.batches.results import pedido_label
from domain.batches.summary import render_summary_text
from domain.batches.view import BatchView, load_batch
from domain.db import UnitOfWork
from domain.models import ItemStatus
from webhook.auth import check_bearer
from webhook.errors import NotFound
from webhook.logs import correlate
from webhook.schemas import ContactOut, ItemOut, JobOut, OrderOut, SummaryLineOut, SummaryOut

bp = Blueprint("jobs_api", __name__)

_MAX_JOB_ID = 64


@bp.before_request
def _authenticate() -> None:
    check_bearer(request.headers.get("Authorization"), current_app.extensions["robotjobs"].settings.api_token)


def _job_id(job_id: str) -> str:
    # Ids never hold NUL or run long; refusing them here keeps PostgreSQL from erroring on the lookup.
    if "\x00" in job_id or len(job_id) > _MAX_JOB_ID:
        raise NotFound("Trabajo de robot desconocido.", code="unknown_job")
    correlate(job_id=job_id)
    return job_id


def job_out(batch: BatchView) -> JobOut:
    job, duplicates = batch.job, batch.duplicates
    items = []
    for entry in batch.items:
        item, order, contact = entry.item, entry.order, entry.contact
        items.append(
            ItemOut(
                id=item.id,
                order_id=item.order_id,
                status=item.status,
                tracking_number=item.tracking_number,
                pedido=pedido_label(item.tracking_number) if item.status == ItemStatus.SUCCESS else None,
                resolved_by=item.resolved_by,
                possible_duplicate=duplicates.get(item.id),
                error_type=item.error_type,
                error_message=item.error_message,
                completed_at=item.completed_at,
                order=OrderOut(
                    id=order.id,
                    name=order.name,
                    total_value=str(order.total_value),
                    tracking_number=order.tracking_number,
                    carrier=order.carrier,
                    shipping_address=order.shipping_address,
                    shipping_city=order.shipping_city,
                    shipping_department=order.shipping_department,
                ),
                contact=ContactOut(id=contact.id, name=contact.name, phone=contact.phone, email=contact.email)
                if contact
                else None,
            )
        )
    return JobOut(
        id=job.id,
        workspace_id=job.workspace_id,
        carrier=job.carrier,
        status=job.status,
        total_items=job.total_items,
        success_count=job.success_count,
        error_count=job.error_count,
        dispatch_state=job.dispatch_state,
        flow_run_id=job.flow_run_id,
        retry_of_job_id=job.retry_of_job_id,
        failure_reason=job.failure_reason,
        created_at=job.created_at,
        dispatched_at=job.dispatched_at,
        deadline_at=job.deadline_at,
        finished_at=job.finished_at,
        items=items,
    )


@bp.get("/api/jobs/<job_id>")
def get_job(job_id: str):
    with UnitOfWork(current_app.extensions["robotjobs"].engine, readonly=True) as uow:
        body = job_out(load_batch(uow.session, _job_id(job_id))).model_dump(mode="json")
    correlate(flow_run_id=body["flow_run_id"])
    return jsonify(body)


@bp.get("/api/jobs/<job_id>/summary")
def get_summary(job_id: str):
    """JSON by default; the reference text with `?format=text` or `Accept: text/plain`."""
    with UnitOfWork(current_app.extensions["robotjobs"].engine, readonly=True) as uow:
        summary = load_batch(uow.session, _job_id(job_id)).summary
    text = render_summary_text(summary)
    wants_text = (
        request.args.get("format") == "text"
        or request.accept_mimetypes.best_match(["application/json", "text/plain"]) == "text/plain"
    )
    if wants_text:
        return Response(text, mimetype="text/plain", content_type="text/plain; charset=utf-8")
    out = SummaryOut(
        job_id=summary.job_id,
        job_status=summary.job_status,
        success_count=summary.success_count,
        error_count=summary.error_count,
        total_items=summary.total_items,
        pending_count=summary.pending_count,
        failure_reason=summary.failure_reason,
        successes=[SummaryLineOut.model_validate(line) for line in summary.successes],
        rejected=[SummaryLineOut.model_validate(line) for line in summary.rejected],
        pending=[SummaryLineOut.model_validate(line) for line in summary.pending],
        text=text,
    )
    return jsonify(out.model_dump(mode="json"))
