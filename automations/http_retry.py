"""One POST to an external service, retried through its blips: timeouts, connection errors, 429 and 5xx.

Safe only because every attempt carries the same Idempotency-Key (the provider answers a repeated key with the
first answer, without a second effect). Backoff doubles from `base_delay_s` up to `max_delay_s`, a `Retry-After`
answer is honoured, and the whole call is bounded by `budget_s`: past it, the last failure is returned to the
caller, which fails the action visibly. Any other answer (2xx, or a 4xx such as 400/401) is final at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    budget_s: float = 30.0
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0


@dataclass
class Attempts:
    """The outcome of a retried POST: the final response, or the last transport error; and how many tries."""

    response: httpx.Response | None
    error: httpx.HTTPError | None
    count: int
    gave_up: bool  # True when a retryable failure was still there at the end of the budget

    def describe(self) -> str:
        return f"{self.count} intento(s)" + (" en el tiempo máximo de reintentos" if self.gave_up else "")


def retry_after_seconds(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (a number, or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def post_with_retry(
    client: httpx.Client,
    url: str,
    *,
    json: Any,
    headers: dict[str, str],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Attempts:
    deadline = clock() + policy.budget_s
    delay = policy.base_delay_s
    count = 0
    while True:
        count += 1
        response: httpx.Response | None = None
        error: httpx.HTTPError | None = None
        try:
            response = client.post(url, json=json, headers=headers)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            error = exc
        if response is not None and response.status_code not in RETRYABLE_STATUS:
            return Attempts(response=response, error=None, count=count, gave_up=False)
        wait = delay
        if response is not None:
            asked = retry_after_seconds(response)
            if asked is not None:
                wait = asked
        if clock() + wait > deadline:
            return Attempts(response=response, error=error, count=count, gave_up=True)
        sleep(wait)
        delay = min(delay * 2, policy.max_delay_s)
