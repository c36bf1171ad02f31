"""How relay talks to the Prefect API from processes that must never hang on it (the webhook, the reconciler)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prefect.client.orchestration import SyncPrefectClient
from prefect.context import SettingsContext, get_settings_context
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import Settings


class PrefectUnavailable(Exception):
    """The Prefect API is not configured or did not answer; the caller retries later."""


# Errors that mean "Prefect did not answer" rather than "Prefect said no".
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, OSError)


def is_server_error(exc: BaseException) -> bool:
    return isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code >= 500


_lock = threading.Lock()
# Prefect's client reads its retry count from the settings at every request, so a fail-fast call needs settings with
# no retries. Building them (`temporary_settings`) re-reads env, .env and profiles: 24 % of a webhook worker's CPU
# when done per call (BENCHMARKS.md round 2). Built once per base settings object instead, kept with it, and by
# copying the two sections that change (`model_copy`, no validation: 0.04 ms) rather than `copy_with_update`, which
# re-reads every source too: 30 ms on a quiet machine, and under load ~12 % of the webhook workers' GIL time in
# py-spy (once per worker and timeout, on the first publication after start, BENCHMARKS.md round 7).
_fail_fast: dict[tuple[int, float], tuple[Settings, Settings]] = {}
# One long-lived client per process and timeout: a new one costs an SSL context and a CSRF token fetch.
_clients: dict[tuple[int, float], tuple[tuple, SyncPrefectClient]] = {}


def fail_fast_settings(base: Settings, timeout_s: float) -> Settings:
    """`base` with no client retries (PREFECT_CLIENT_MAX_RETRIES=0) and PREFECT_API_REQUEST_TIMEOUT=`timeout_s`."""
    return base.model_copy(
        update={
            "client": base.client.model_copy(update={"max_retries": 0}),
            "api": base.api.model_copy(update={"request_timeout": timeout_s}),
        }
    )


def _fail_fast_settings(base: Settings, timeout_s: float) -> Settings:
    kept = _fail_fast.get((id(base), timeout_s))
    if kept is None or kept[0] is not base:
        with _lock:
            if len(_fail_fast) > 16:  # tests swap settings; a service has one
                _fail_fast.clear()
            kept = (base, fail_fast_settings(base, timeout_s))
            _fail_fast[(id(base), timeout_s)] = kept
    return kept[1]


@contextmanager
def _fail_fast_calls(timeout_s: float) -> Iterator[Settings]:
    """Refuse without PREFECT_API_URL (Prefect would start a private ephemeral server, and resuming there resumes
    nothing); else the current settings with no client retries (the outbox retries, not the HTTP client) and a short
    timeout."""
    context = get_settings_context()
    if not context.settings.api.url:
        raise PrefectUnavailable("PREFECT_API_URL is not set")
    settings = _fail_fast_settings(context.settings, timeout_s)
    with SettingsContext(profile=context.profile, settings=settings):
        yield settings


@contextmanager
def prefect_calls(*, timeout_s: float = 10.0) -> Iterator[None]:
    """Fail fast for callers that build their own client: no client retries and a short timeout."""
    with _fail_fast_calls(timeout_s):
        yield


def _keeps_client(exc: BaseException) -> bool:
    """A 4xx answer (not found, conflict) came over a healthy connection; anything else may have broken it."""
    return isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code < 500


@contextmanager
def prefect_client(*, timeout_s: float = 10.0) -> Iterator[SyncPrefectClient]:
    """This process's long-lived fail-fast sync client (no retries, `timeout_s` per request), shared by threads.

    Created lazily in the process that uses it (gunicorn forks after import: a parent's client is not reused) and
    for the current API URL and auth; dropped after an error that may have broken it, so the next call builds a new
    one. Raises PrefectUnavailable without PREFECT_API_URL.
    """
    with _fail_fast_calls(timeout_s) as settings:
        identity = (
            settings.api.url,
            settings.api.auth_string and settings.api.auth_string.get_secret_value(),
            settings.api.key and settings.api.key.get_secret_value(),
        )
        slot = (os.getpid(), timeout_s)
        kept = _clients.get(slot)
        if kept is None or kept[0] != identity:
            with _lock:
                kept = _clients.get(slot)
                if kept is None or kept[0] != identity:
                    client = SyncPrefectClient(
                        settings.api.url,
                        auth_string=identity[1],
                        api_key=identity[2],
                        httpx_settings={"timeout": httpx.Timeout(timeout_s)},
                    )
                    client.__enter__()
                    kept = (identity, client)
                    _clients[slot] = kept
        client = kept[1]
        try:
            yield client
        except BaseException as exc:
            if not _keeps_client(exc):
                with _lock:
                    if _clients.get(slot, (None, None))[1] is client:
                        # Not closed here: another thread may be mid-request on it; its sockets close with it.
                        del _clients[slot]
            raise
