"""HTTP errors of the webhook app and the one place where domain, validation and database errors become statuses.

| cause | status |
| --- | --- |
| bad JSON, non-UTF-8 body, body not a JSON object | 400 |
| missing/malformed/wrong credentials; unknown item or job under a per-job secret (never says which) | 401 |
| a result for an item of another job | 403 |
| unknown job/item once authenticated (signature, legacy secret, API token) | 404 |
| body larger than `webhook_max_body_bytes` | 413 |
| a field breaking the protocol (status, trackingNumber, errorType, sizes) | 422 |
| database unreachable or locked (a callback: spooled instead, 202 — webhook/callbacks.py) | 503 + Retry-After |
| the callback spool full or unwritable | 503 + Retry-After |
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from domain import errors as domain_errors
from webhook.logs import log
from webhook.schemas import ErrorBody, ErrorDetail

RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """A refusal with its HTTP status; raised by the adapters, rendered by `register_error_handlers`."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: list[ErrorDetail] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.details = details or []


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    """Credentials missing or wrong. `reason` goes to the log only: the client always reads the same message."""

    status, code = 401, "unauthorized"

    def __init__(self, reason: str):
        super().__init__("Credenciales ausentes o inválidas.")
        self.reason = reason


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Unprocessable(ApiError):
    status, code = 422, "validation_error"


class Unavailable(ApiError):
    """We cannot take the request now (the callback spool is full); answered with Retry-After."""

    status, code = 503, "unavailable"


# Domain refusals → HTTP. Order matters: the first matching class wins (subclasses before their bases).
DOMAIN_STATUS: list[tuple[type[domain_errors.DomainError], int]] = [
    (domain_errors.ItemNotInJob, 403),
    (domain_errors.NotFound, 404),
    (domain_errors.InvalidResult, 422),
    (domain_errors.InvalidField, 422),
    (domain_errors.InvalidTransition, 409),
    (domain_errors.DomainError, 409),
]

DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)


def _camel(name: str) -> str:
    # Pydantic reports a defaulted field (validate_default) by its name, not its alias; callers know the alias.
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def validation_details(exc: ValidationError) -> list[ErrorDetail]:
    """Pydantic errors as `{field, reason}` with the request's own (alias) field names."""
    details = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(_camel(str(part)) for part in error["loc"])
        reason = error["msg"].removeprefix("Value error, ")
        details.append(ErrorDetail(field=field, reason=reason))
    return details


def refusal_of(exc: Exception) -> tuple[int, str, str, list[ErrorDetail]]:
    """(status, code, message, details) of a refusal: an ApiError, a pydantic ValidationError or a DomainError."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message, exc.details
    if isinstance(exc, ValidationError):
        return 422, "validation_error", "El cuerpo no cumple el protocolo.", validation_details(exc)
    if isinstance(exc, domain_errors.DomainError):
        return next(s for cls, s in DOMAIN_STATUS if isinstance(exc, cls)), exc.code, exc.message, []
    raise TypeError(f"not a refusal: {type(exc).__name__}")


def _render(status: int, code: str, message: str, details=None, headers: dict[str, str] | None = None):
    body = ErrorBody(error=code, message=message, details=details or [])
    response = jsonify(body.model_dump(mode="json"))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        fields: dict[str, Any] = {"status": exc.status, "error": exc.code}
        if isinstance(exc, Unauthorized):
            fields["reason"] = exc.reason
        log("critical" if exc.status == 503 else "warning", "request_refused", **fields)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.status == 503:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return _render(exc.status, exc.code, exc.message, exc.details, headers)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError):
        status, code, message, details = refusal_of(exc)
        log("warning", "request_refused", status=status, error=code, fields=[d.field for d in details])
        return _render(status, code, message, details)

    @app.errorhandler(domain_errors.DomainError)
    def _domain_error(exc: domain_errors.DomainError):
        status, code, message, _ = refusal_of(exc)
        log("warning", "request_refused", status=status, error=code, message=message)
        return _render(status, code, message)

    def _database_down(exc: Exception):
        # Loud on purpose: while the database is down, robot results are being refused and the robot never retries.
        log("critical", "database_unavailable", error=type(exc).__name__, detail=str(exc).splitlines()[0][:300])
        return _render(
            503,
            "database_unavailable",
            "Base de datos no disponible; reintente más tarde.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    for exc_class in DATABASE_DOWN:
        app.register_error_handler(exc_class, _database_down)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        if exc.code == 413:
            code = "body_too_large"
        log("warning", "request_refused", status=exc.code, error=code)
        headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
        return _render(exc.code or 500, code, exc.description or exc.name, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log("error", "unexpected_error", error=type(exc).__name__, exc_info=exc)
        return _render(500, "internal_error", "Error interno.")
