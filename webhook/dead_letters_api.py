"""The read API of callback dead letters (`GET /api/dead-letters`), for operators; same bearer token as /api/jobs."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from domain import dead_letters
from domain.db import UnitOfWork
from webhook.auth import check_bearer
from webhook.errors import BadRequest
from webhook.inbox_schemas import DeadLetterList, DeadLetterOut

bp = Blueprint("dead_letters_api", __name__)

_MAX_LIMIT = 500


@bp.before_request
def _authenticate() -> None:
    check_bearer(request.headers.get("Authorization"), current_app.extensions["robotjobs"].settings.api_token)


def dead_letter_out(letter) -> DeadLetterOut:
    headers = dict(letter.headers)
    auth = headers.pop(dead_letters.AUTH_KEY, None)
    encoding = headers.pop(dead_letters.ENCODING_KEY, None) or "utf-8"
    return DeadLetterOut(
        id=letter.id,
        received_at=letter.received_at,
        reason=letter.reason,
        job_id=letter.job_id,
        auth=auth or None,
        headers=headers,
        body=letter.body,
        body_encoding=encoding,
        replayed_at=letter.replayed_at,
        replay_result=letter.replay_result,
    )


@bp.get("/api/dead-letters")
def list_dead_letters():
    """Newest first. `?pending=true` leaves out replayed ones; `?job_id=`; `?limit=` (default 100, at most 500)."""
    unknown = set(request.args) - {"pending", "job_id", "limit"}
    if unknown:
        raise BadRequest(f"Parámetros desconocidos: {', '.join(sorted(unknown))[:200]}.", code="invalid_parameter")
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError:
        raise BadRequest("limit debe ser un entero.", code="invalid_parameter") from None
    if not 1 <= limit <= _MAX_LIMIT:
        raise BadRequest(f"limit debe estar entre 1 y {_MAX_LIMIT}.", code="invalid_parameter")
    job_id = request.args.get("job_id") or None
    if job_id is not None and ("\x00" in job_id or len(job_id) > 36):
        raise BadRequest("job_id inválido.", code="invalid_parameter")
    pending = request.args.get("pending", "false").lower()
    if pending not in ("true", "false", "1", "0"):
        raise BadRequest("pending debe ser true o false.", code="invalid_parameter")
    with UnitOfWork(current_app.extensions["robotjobs"].engine, readonly=True) as uow:
        letters = dead_letters.list_letters(
            uow.session, pending_only=pending in ("true", "1"), job_id=job_id, limit=limit
        )
        out = DeadLetterList(dead_letters=[dead_letter_out(letter) for letter in letters])
    return jsonify(out.model_dump(mode="json"))
