"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from webhook.errors import DATABASE_DOWN, RETRY_AFTER_SECONDS
from webhook.logs import log
from webhook.schemas import Health

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(Health(status="ok").model_dump(exclude_none=True))


@bp.get("/readyz")
def readyz():
    engine = current_app.extensions["robotjobs"].engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DATABASE_DOWN as exc:
        log("error", "readiness_failed", error=type(exc).__name__)
        response = jsonify(Health(status="unavailable", database="unavailable").model_dump())
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return jsonify(Health(status="ok", database="ok").model_dump())
