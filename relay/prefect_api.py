"""How relay talks to the Prefect API from processes that must never hang on it (the webhook, the reconciler)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_REQUEST_TIMEOUT, PREFECT_CLIENT_MAX_RETRIES, get_current_settings, temporary_settings


class PrefectUnavailable(Exception):
    """The Prefect API is not configured or did not answer; the caller retries later."""


# Errors that mean "Prefect did not answer" rather than "Prefect said no".
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, OSError)


def is_server_error(exc: BaseException) -> bool:
    return isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code >= 500


@contextmanager
def prefect_calls(*, timeout_s: float = 10.0) -> Iterator[None]:
    """Fail fast: no client retries and a short timeout (the outbox retries, not the HTTP client).

    Without PREFECT_API_URL Prefect would start a private ephemeral server, and resuming there resumes nothing:
    refuse instead.
    """
    if not get_current_settings().api.url:
        raise PrefectUnavailable("PREFECT_API_URL is not set")
    with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: timeout_s}):
        yield
