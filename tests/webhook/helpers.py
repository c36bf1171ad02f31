"""Helpers of the webhook tests: robot-like bodies and headers, Standard Webhooks signing, fakes, DB snapshots."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask.testing import FlaskClient
from sqlalchemy import text
from standardwebhooks import Webhook

CALLBACK = "/api/webhooks/robot-callback"
API_TOKEN = "read-api-token-for-tests"
LEGACY_SECRET = "legacy-global-secret"


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def robot_body(payload: dict) -> bytes:
    """What the robot's Node fetch sends: compact UTF-8 JSON, non-ASCII unescaped."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(secret: str, body: bytes, *, msg_id: str | None = None, timestamp: float | None = None) -> dict[str, str]:
    """Standard Webhooks headers made with the standardwebhooks package itself (an independent signer)."""
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    moment = datetime.fromtimestamp(timestamp if timestamp is not None else datetime.now(UTC).timestamp(), UTC)
    signature = Webhook(secret).sign(msg_id, moment, body.decode("utf-8"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


class RecordingNotifier:
    """A fake notifier: remembers job ids; raises when told to (a Prefect outage, say)."""

    def __init__(self, error: Exception | None = None):
        self.calls: list[str] = []
        self.error = error

    def __call__(self, job_id: str) -> None:
        self.calls.append(job_id)
        if self.error is not None:
            raise self.error


class SettledClient(FlaskClient):
    """Waits for the app's after-commit pool after each request, so a test sees what the notifiers did."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        self.application.extensions["robotjobs"].after_commit.join()
        return response


@dataclass
class Job:
    id: str
    secret: str
    items: list[str]  # pending item ids, in creation order
    rejected: list[str] = field(default_factory=list)


def db_state(engine) -> dict:
    """Everything a callback may change; equal before and after a refused request means nothing was written."""
    with engine.connect() as conn:
        return {
            "items": conn.execute(
                text("SELECT id, status, tracking_number, error_type, error_message FROM robot_job_items ORDER BY id")
            ).all(),
            "jobs": conn.execute(
                text("SELECT id, status, success_count, error_count, finished_at FROM robot_jobs ORDER BY id")
            ).all(),
            "orders": conn.execute(text("SELECT id, tracking_number, carrier FROM orders ORDER BY id")).all(),
            "events": conn.execute(text("SELECT count(*) FROM outbox_events")).scalar_one(),
            "receipts": conn.execute(text("SELECT count(*) FROM webhook_receipts")).scalar_one(),
        }


def robot_headers(secret: str | None) -> dict[str, str]:
    """The existing robot's exact header set (robot-protocol.md §2)."""
    headers = {"Content-Type": "application/json", "user-agent": "node"}
    if secret is not None:
        headers["X-Callback-Secret"] = secret
    return headers
