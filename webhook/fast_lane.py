"""The existing robot's plain callback without Flask's request machinery: WSGI middleware in front of the app.

A per-order result under its job's X-Callback-Secret is nearly all of the webhook's traffic. Flask's work around
the view (request and app contexts, routing, hooks, response objects, the proxies) and our hooks cost ~250 us a
request in process, against 2-4 us for a plain WSGI callable. This lane answers that case itself, through the
functions the route uses (`callback_credential`, `callbacks.record_plain`, `callbacks.ack_body`, `log_request`).
With the call on the pool's own connection (report_one.py), the workers' CPU per callback fell by a third
(BENCHMARKS.md round 14).

It decides nothing of its own. Whatever it does not record goes to the Flask app as it came (the body put back),
marked so the route does not try the one round trip again: another method or path, a signature, a body over the
limit or without a length, callbacks waiting in the spool, a database without the one round trip (SQLite), a
credential the route refuses, a body the protocol refuses, a result the one round trip leaves to the full path, a
database error, a fault of ours (logged as `fast_lane_failed`). So every refusal, dead letter and spooled answer
still comes from the route and its error handlers.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from werkzeug.datastructures import EnvironHeaders

from domain.batches.report_one import usable_by
from webhook.auth import SIGNATURE_HEADERS, callback_credential
from webhook.callbacks import CALLBACK_PATH, TRIED_AT_ONCE, ack_body, record_plain
from webhook.errors import DATABASE_DOWN, ApiError
from webhook.logs import correlate, correlation, log, log_request, request_id_from

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Signature headers as the WSGI environ names them: such a callback is verified and recorded by the route.
_SIGNED = tuple("HTTP_" + name.upper().replace("-", "_") for name in SIGNATURE_HEADERS)


class CallbackFastLane:
    """`app.wsgi_app = CallbackFastLane(app, app.wsgi_app)`: gunicorn and Flask's test client both pass here."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApp):
        self.app = app
        self.flask_wsgi = flask_wsgi
        self.max_body = app.config["MAX_CONTENT_LENGTH"]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = self._plain_length(environ)
        if length is None:
            return self.flask_wsgi(environ, start_response)
        started = time.monotonic()
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)  # for the route, if it gets the request after all
        with self.app.app_context():
            answer = self._record(environ, raw, started)
        if answer is None:
            environ[TRIED_AT_ONCE] = True
            return self.flask_wsgi(environ, start_response)
        body, request_id = answer
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Request-Id", request_id)],
        )
        return [body]

    def _plain_length(self, environ: dict[str, Any]) -> int | None:
        """The body's length when the request may be the plain case; None sends it to the route untouched."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != CALLBACK_PATH:
            return None
        if not environ.get("HTTP_X_CALLBACK_SECRET") or any(environ.get(name) for name in _SIGNED):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        state = self.app.extensions["robotjobs"]
        if not 0 < length <= self.max_body or state.inbox.queued() or not self._records_on(state.engine):
            return None
        return length

    @staticmethod
    def _records_on(engine: Engine) -> bool:
        """Whether the one round trip exists on this database (not on SQLite): read once per engine."""
        try:
            return usable_by(engine)
        except (*DATABASE_DOWN, DBAPIError):
            return False  # not known yet: the route takes this one, and the next request asks again

    def _record(self, environ: dict[str, Any], raw: bytes, started: float) -> tuple[bytes, str] | None:
        state = self.app.extensions["robotjobs"]
        correlate(request_id=request_id_from(environ.get("HTTP_X_REQUEST_ID")))
        try:
            credential = callback_credential(EnvironHeaders(environ), raw, state.verifier)
            handled = record_plain(state, raw, credential)
        except ApiError:
            return None  # a credential the route refuses (401), with its own line
        except (*DATABASE_DOWN, DBAPIError):
            return None  # the route answers it: spooled while the database is down, else its error
        except Exception as exc:
            # A fault of ours here must not cost the robot its result (it never retries a 5xx): the route takes the
            # request again, through the full path, and the fault is logged loudly.
            log("error", "fast_lane_failed", exc_info=exc, error=type(exc).__name__)
            return None
        if handled is None:
            return None
        assert handled.recorded is not None  # record_plain returns only what it recorded
        body = ack_body(handled.recorded)
        log_request("POST", CALLBACK_PATH, 200, started, environ.get("HTTP_USER_AGENT"))
        return body, correlation().get("request_id", "")
