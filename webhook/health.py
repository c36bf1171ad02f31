"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: callbacks can be taken — recorded in the
database, or kept in this host's spool while it is down — with the database's and the spool's state)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from webhook.errors import DATABASE_DOWN, RETRY_AFTER_SECONDS
from webhook.inbox_schemas import Readiness, SpoolStatus
from webhook.logs import log
from webhook.schemas import Health

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(Health(status="ok").model_dump(exclude_none=True))


@bp.get("/readyz")
def readyz():
    state = current_app.extensions["robotjobs"]
    database = "ok"
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DATABASE_DOWN as exc:
        log("error", "readiness_database_unavailable", error=type(exc).__name__)
        database = "unavailable"
    try:
        spool = SpoolStatus(**state.inbox.status())
    except OSError as exc:  # the spool directory cannot be created or read: nothing to fall back on
        log("critical", "readiness_spool_unusable", error=f"{type(exc).__name__}: {exc}"[:300])
        spool = SpoolStatus(
            entries=0,
            bytes=0,
            max_bytes=state.inbox.spool.max_bytes,
            oldest_age_s=None,
            replaying=False,
            full=True,
            held=0,
        )
    # Down to the spool alone is still ready: the robot never retries, so a host that can keep callbacks must
    # keep taking them. Only a full (or unusable) spool makes this host unready.
    status = "unavailable" if spool.full else ("ok" if database == "ok" else "degraded")
    if spool.full:
        log("critical", "readiness_spool_full", entries=spool.entries, bytes=spool.bytes, max_bytes=spool.max_bytes)
    response = jsonify(Readiness(status=status, database=database, spool=spool).model_dump(mode="json"))
    if status == "unavailable":
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
