"""The robot's callback route: authenticate, validate, record every result in one transaction, acknowledge.

Order of work for `POST /api/webhooks/robot-callback`:
1. body size (413) and credential headers (401) — a signature is verified over the raw body before any parsing;
2. JSON and the protocol (400/422);
3. one unit of work: webhook-id receipt (replays → 200, nothing done), per-job secret against the item's or the
   job's stored hash (401 when the item/job is unknown or the secret is wrong: the caller cannot tell which),
   the domain use case (403 for another job's item), commit;
4. 200 only after the commit; the resume and progress notifiers run on a background pool (webhook/after_commit.py),
   and their failures are logged, never returned (the outbox keeps "robot.batch.completed" for redelivery).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import IntegrityError

from domain.db import UnitOfWork
from domain.errors import UnknownItem, UnknownJob
from domain.jobs import get_job
from domain.models import WebhookReceipt
from domain.results import RecordOutcome, get_item_auth, record_batch_results, record_item_result
from webhook.auth import CallbackCredential, callback_credential
from webhook.errors import BadRequest, Unauthorized, Unprocessable
from webhook.logs import correlate, log
from webhook.schemas import BatchCallback, CallbackAck, CallbackResult, ErrorDetail, ResultAck

bp = Blueprint("callbacks", __name__)

CALLBACK_PATH = "/api/webhooks/robot-callback"


@dataclass
class Recorded:
    job_id: str | None
    outcomes: list[RecordOutcome]
    job_finished: bool
    job_status: str | None
    duplicate_delivery: bool = False


def parse_body(raw: bytes) -> CallbackResult | BatchCallback:
    """The per-order or the batch body; a `results` or `jobId` key makes it a batch."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            "El cuerpo no es UTF-8.", code="invalid_encoding", details=[ErrorDetail(field="", reason=str(exc))]
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError, and RecursionError-free since json raises ValueError
        raise BadRequest(
            "El cuerpo no es JSON válido.", code="invalid_json", details=[ErrorDetail(field="", reason=str(exc))]
        ) from None
    except RecursionError:
        raise BadRequest("JSON demasiado anidado.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise Unprocessable(
            "El cuerpo debe ser un objeto JSON.", details=[ErrorDetail(field="", reason="expected a JSON object")]
        )
    if "results" in data or "jobId" in data:
        return BatchCallback.model_validate(data)
    return CallbackResult.model_validate(data)


def _receipt_is_new(session, webhook_id: str, job_id: str | None) -> bool:
    """Insert the webhook-id first, so a concurrent replay blocks on it and then sees the conflict."""
    try:
        with session.begin_nested():
            session.add(WebhookReceipt(webhook_id=webhook_id, job_id=job_id))
            session.flush()
        return True
    except IntegrityError:
        return False


def _record(session, body: CallbackResult | BatchCallback, credential: CallbackCredential) -> Recorded:
    checker = current_app.extensions["robotjobs"].secrets
    if credential.webhook_id is not None:
        job_hint = body.job_id if isinstance(body, BatchCallback) else None
        if not _receipt_is_new(session, credential.webhook_id, job_hint):
            log("info", "callback_replayed")
            return Recorded(job_id=job_hint, outcomes=[], job_finished=False, job_status=None, duplicate_delivery=True)

    if isinstance(body, BatchCallback):
        correlate(job_id=body.job_id)
        job_id: str | None = body.job_id
        if credential.method == "secret":
            try:
                stored_hash = get_job(session, body.job_id).callback_secret_hash
            except UnknownJob:
                checker.check(credential.secret, None)  # a legacy secret may still vouch; then 404 below
                raise
            checker.check(credential.secret, stored_hash)
        batch = record_batch_results(session, body.job_id, [r.to_domain() for r in body.results])
        return Recorded(batch.job_id, batch.outcomes, batch.job_finished, batch.job_status)

    correlate(item_id=body.item_id)
    job_id = None
    if credential.method == "secret":
        try:
            auth = get_item_auth(session, body.item_id)
        except UnknownItem:
            # Unknown item under a per-job secret: the same 401 as a wrong secret, so ids cannot be probed.
            if not checker.is_legacy(credential.secret):
                raise Unauthorized("unknown item under X-Callback-Secret") from None
            raise
        correlate(job_id=auth.job_id)
        if checker.check(credential.secret, auth.callback_secret_hash) == "job":
            job_id = auth.job_id  # the secret vouches for this job only
    outcome = record_item_result(session, body.to_domain(), job_id=job_id)
    return Recorded(outcome.job_id, [outcome], outcome.job_finished, outcome.job_status)


def _ack(recorded: Recorded) -> dict[str, Any]:
    outcomes = recorded.outcomes
    ack = CallbackAck(
        job_id=recorded.job_id,
        job_finished=recorded.job_finished,
        job_status=recorded.job_status,
        changed=[o.item_id for o in outcomes if o.changed],
        unchanged=[o.item_id for o in outcomes if not o.changed],
        results=[ResultAck(item_id=o.item_id, changed=o.changed, item_status=o.item_status) for o in outcomes],
        duplicate_delivery=recorded.duplicate_delivery,
    )
    return ack.model_dump(mode="json", by_alias=True)


@bp.post(CALLBACK_PATH)
def robot_callback():
    state = current_app.extensions["robotjobs"]
    raw = request.get_data(cache=True)  # MAX_CONTENT_LENGTH makes this a 413 before reading a byte too many
    credential = callback_credential(request.headers, raw, state.verifier)
    correlate(webhook_id=credential.webhook_id)
    body = parse_body(raw)

    with UnitOfWork(state.engine) as uow:
        recorded = _record(uow.session, body, credential)
        flow_run_id = get_job(uow.session, recorded.job_id).flow_run_id if recorded.outcomes else None
        uow.commit()
    # Committed: from here on nothing may turn this into an error response.
    correlate(job_id=recorded.job_id, flow_run_id=flow_run_id)
    changed = sum(1 for o in recorded.outcomes if o.changed)
    log(
        "info",
        "callback_recorded",
        auth=credential.method,
        results=len(recorded.outcomes),
        changed=changed,
        job_finished=recorded.job_finished,
        job_status=recorded.job_status,
        duplicate_delivery=recorded.duplicate_delivery,
    )
    if recorded.job_id and (changed or recorded.job_finished):
        state.notify_after_commit(recorded.job_id, finished=recorded.job_finished)
    return jsonify(_ack(recorded))
