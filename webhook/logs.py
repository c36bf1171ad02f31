"""Structured JSON logs of the webhook app, each line carrying the request's correlation ids.

Correlation ids (request, job, item, webhook-id, flow run, spool entry) live in `flask.g` for the request (or for
the app context a spool replay pushes per entry) and are added to every line logged through `log()`. Secrets never
reach a log line: callers pass named fields, never headers or bodies.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import g, has_app_context

LOGGER_NAME = "robotjobs.webhook"
logger = logging.getLogger(LOGGER_NAME)

CORRELATION_KEYS = ("request_id", "job_id", "item_id", "webhook_id", "flow_run_id", "spool_entry")


def correlate(**ids: str | None) -> None:
    """Remember correlation ids for every later line of this request."""
    if not has_app_context():
        return
    current = g.setdefault("correlation", {})
    current.update({key: value for key, value in ids.items() if value})


def annotate_request(**fields: Any) -> None:
    """Fields for this request's one `http_request` line (webhook/app.py), e.g. what a callback recorded."""
    if has_app_context():
        g.setdefault("request_fields", {}).update(fields)


def request_fields() -> dict[str, Any]:
    return dict(g.get("request_fields", {})) if has_app_context() else {}


def correlation() -> dict[str, Any]:
    if not has_app_context():
        return {}
    return dict(g.get("correlation", {}))


# Probes are answered without a line: a load balancer polls them every few seconds.
UNLOGGED_PATHS = ("/healthz", "/readyz")


def request_id_from(incoming: str | None) -> str:
    """The request's correlation id: the caller's X-Request-Id when it is a short printable ASCII token, else new."""
    if incoming and incoming.isascii() and incoming.isprintable() and len(incoming) <= 64:
        return incoming
    return uuid.uuid4().hex


def log_request(method: str, path: str, status: int, started: float, user_agent: str | None) -> None:
    """The request's one `http_request` line, with what the route annotated (`started`: its time.monotonic())."""
    if path in UNLOGGED_PATHS:
        return
    log(
        "info",
        "http_request",
        method=method,
        path=path,
        status=status,
        ms=round(1000 * (time.monotonic() - started), 1),
        user_agent=(user_agent or "")[:100],
        **request_fields(),
    )


def log(level: str, event: str, *, exc_info: BaseException | None = None, **fields: Any) -> None:
    """Log one event with its fields and the request's correlation ids."""
    number = _LEVELS[level.upper()]
    if not logger.isEnabledFor(number):
        return
    record_fields = {**correlation(), **fields}
    logger.log(number, event, exc_info=exc_info, extra={"event": event, "fields": record_fields})


# Read once: `logging.getLevelNamesMapping()` copies the table on every call (two lines per callback).
_LEVELS = logging.getLevelNamesMapping()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, correlation ids and fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", record.getMessage()),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # json's `", "` and `": "` separators are the line's shape readers match on (tests/webhook/test_gunicorn.py);
        # orjson writes none of them: it saved ~12 us a line and was reverted (BENCHMARKS.md round 14).
        return json.dumps(line, ensure_ascii=False, default=str)


# The relay runs after commit inside this process (resume, progress): its lines belong in the same JSON stream.
JSON_LOGGERS = (LOGGER_NAME, "relay")


def configure_logging(level: str = "INFO") -> None:
    """Send the webhook's (and the relay's) logs to stderr as JSON lines (once per process)."""
    for name in JSON_LOGGERS:
        target = logging.getLogger(name)
        target.setLevel(level)
        if not any(getattr(handler, "_robotjobs", False) for handler in target.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(JsonFormatter())
            handler._robotjobs = True  # type: ignore[attr-defined]
            target.addHandler(handler)
