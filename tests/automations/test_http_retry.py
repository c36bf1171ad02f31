"""The retried POST of external actions: what is retried, for how long, and with which key (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from automations.http_retry import RetryPolicy, post_with_retry, retry_after_seconds


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _run(answers, policy=RetryPolicy(budget_s=30, base_delay_s=0.5, max_delay_s=8)):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Idempotency-Key"))
        answer = answers[min(len(seen) - 1, len(answers) - 1)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = FakeClock()
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://127.0.0.1") as client:
        attempts = post_with_retry(
            client,
            "/x",
            json={},
            headers={"Idempotency-Key": "k-1"},
            policy=policy,
            sleep=clock.sleep,
            clock=lambda: clock.now,
        )
    return attempts, seen, clock


def test_timeouts_resets_and_5xx_are_retried_with_the_same_key_and_backoff():
    attempts, seen, clock = _run(
        [
            httpx.ReadTimeout("slow"),
            httpx.ConnectError("refused"),
            httpx.Response(502),
            httpx.Response(200),
        ]
    )
    assert attempts.response.status_code == 200 and attempts.count == 4 and not attempts.gave_up
    assert seen == ["k-1"] * 4 and clock.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_a_definite_refusal_is_final_at_once(status):
    attempts, seen, clock = _run([httpx.Response(status)])
    assert attempts.response.status_code == status and attempts.count == 1 and clock.sleeps == []


def test_retry_after_is_honoured_and_the_budget_bounds_the_call():
    attempts, seen, clock = _run([httpx.Response(429, headers={"Retry-After": "7"})], RetryPolicy(budget_s=20))
    assert attempts.gave_up and attempts.response.status_code == 429
    assert clock.sleeps == [7.0, 7.0] and clock.now <= 20  # a third wait would pass the budget


def test_retry_after_as_an_http_date():
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": later}), now=now) == 42
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": "soon"})) is None
