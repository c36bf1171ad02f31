"""The `webhook` action: POST JSON to a user's URL (e.g. a Slack incoming webhook) with a 10 s timeout, refusing
loopback, private, link-local and other non-public addresses before any connection unless explicitly allowed.

The guard resolves host names and checks every address; redirects are not followed (a redirect could point
inside). A host that resolves differently between the check and the connection (DNS rebinding) is not covered.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from automations.http_retry import RetryPolicy, post_with_retry

WEBHOOK_TIMEOUT_S = 10.0


class WebhookTargetRefused(Exception):
    """The URL points at an address the webhook action may not call."""


class WebhookFailed(Exception):
    """The target answered non-2xx or could not be reached."""


class WebhookResponse(BaseModel):
    status_code: int
    body_preview: str


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookTargetRefused(f"No se pudo resolver el host del webhook: {host}") from exc
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise WebhookTargetRefused unless `url` is http(s) and (when not allowed) every address it names is public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookTargetRefused(f"URL de webhook no válida: {url}")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in _addresses(parts.hostname, port):
        if not _is_public(address):
            raise WebhookTargetRefused(
                f"El webhook apunta a una dirección privada o local ({address}); no está permitido"
            )


class WebhookSender:
    """Posts webhook bodies; one per process. `allow_private` comes from settings.webhook_action_allow_private."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = WEBHOOK_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ):
        self.allow_private = allow_private
        self.retry = retry or RetryPolicy()
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)

    def close(self) -> None:
        self._client.close()

    def post(self, url: str, body: dict[str, Any], *, idempotency_key: str) -> WebhookResponse:
        check_target(url, allow_private=self.allow_private)  # before any connection
        # Retried through blips with the same Idempotency-Key, so the receiver can tell a repeat from a new call.
        attempts = post_with_retry(
            self._client, url, json=body, headers={"Idempotency-Key": idempotency_key}, policy=self.retry
        )
        response = attempts.response
        if response is None:
            exc = attempts.error
            if isinstance(exc, httpx.TimeoutException):
                raise WebhookFailed(
                    f"El webhook no respondió en {WEBHOOK_TIMEOUT_S:.0f} s ({attempts.describe()})"
                ) from exc
            raise WebhookFailed(f"No se pudo llamar al webhook: {exc} ({attempts.describe()})") from exc
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(
                f"El webhook respondió {response.status_code} ({attempts.describe()}): {response.text[:300]}"
            )
        return WebhookResponse(status_code=response.status_code, body_preview=response.text[:300])
