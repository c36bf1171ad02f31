"""How the simulated robot calls back: per-order POSTs shaped like Node's fetch, and the signed batch report.

`http.client` is used rather than httpx so the request carries exactly the robot's headers (plus the transport's
Host and Content-Length): no Accept, Accept-Encoding or Connection that the production robot would not send.
"""

from __future__ import annotations

import http.client
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks import Webhook

log = logging.getLogger("simulator.callbacks")


def compact_json(data: object) -> str:
    """The robot's wire form: compact, UTF-8, non-ASCII not escaped."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Delivery:
    """The outcome of one callback POST: the HTTP status, or the error that lost it."""

    status: int | None
    error: str | None = None


def post(url: str, body: str, headers: dict[str, str], *, timeout: float | None) -> Delivery:
    """POST `body` once. Never retries: a failed callback is lost, as with the production robot."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    payload = body.encode("utf-8")
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(payload)))
        connection.endheaders(payload)
        response = connection.getresponse()
        response.read()
        return Delivery(status=response.status)
    except (OSError, http.client.HTTPException) as exc:
        return Delivery(status=None, error=f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def send_order_result(url: str, body: dict, *, callback_secret: str | None, timeout: float | None) -> Delivery:
    """One per-order callback with the headers of the production robot."""
    headers = {"Content-Type": "application/json"}
    if callback_secret is not None:
        headers["X-Callback-Secret"] = callback_secret
    headers["user-agent"] = "node"
    delivery = post(url, compact_json(body), headers, timeout=timeout)
    if delivery.status is None or not 200 <= delivery.status < 300:
        log.warning("callback for item %s lost: %s", body.get("itemId"), delivery.error or delivery.status)
    return delivery


def signed_headers(secret: str, body: str) -> dict[str, str]:
    """Standard Webhooks headers for `body`: signature v1 over "{id}.{timestamp}.{body}"."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body),
    }


def send_batch_report(url: str, job_id: str, results: list[dict], *, secret: str, timeout: float | None) -> Delivery:
    """The signed batch form (§3): one POST {jobId, results} when the batch finishes."""
    body = compact_json({"jobId": job_id, "results": results})
    headers = {"Content-Type": "application/json", "user-agent": "node", **signed_headers(secret, body)}
    delivery = post(url, body, headers, timeout=timeout)
    if delivery.status is None or not 200 <= delivery.status < 300:
        log.warning("batch report for job %s lost: %s", job_id, delivery.error or delivery.status)
    return delivery
