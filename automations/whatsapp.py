"""The WhatsApp provider's HTTP client: template and text messages, each sent with an Idempotency-Key.

The request body follows the WhatsApp Cloud API message shape (`messaging_product`, `to`, `type`, `template` with
`components`), posted to `{whatsapp_base_url}/v1/messages` with `Authorization: Bearer <token>`. The provider must
honour `Idempotency-Key`: a repeated key returns the first answer without sending again (the fake does).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from pydantic import BaseModel

from automations.http_retry import RetryPolicy, post_with_retry

DEFAULT_TIMEOUT_S = 10.0


class ProviderError(Exception):
    """The provider refused the message or could not be reached; the message says why, in Spanish."""


class SentMessage(BaseModel):
    message_id: str | None
    status_code: int
    replayed: bool = False


def normalize_phone(phone: str) -> str:
    """Digits only; a 10-digit Colombian mobile (3xx...) gets the country code 57."""
    digits = re.sub(r"\D", "", phone or "")
    if len(digits) == 10 and digits.startswith("3"):
        return "57" + digits
    return digits


def template_body(to: str, *, template_name: str, language: str, parameters: list[str]) -> dict[str, Any]:
    components = (
        [{"type": "body", "parameters": [{"type": "text", "text": value} for value in parameters]}]
        if parameters
        else []
    )
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": template_name, "language": {"code": language}, "components": components},
    }


def text_body(to: str, *, text: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": text}}


class WhatsAppClient:
    """One per process (composition root); wraps an httpx.Client."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ):
        self.retry = retry or RetryPolicy()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def send(self, body: dict[str, Any], *, idempotency_key: str) -> SentMessage:
        to = normalize_phone(body.get("to", ""))
        if not to:
            raise ProviderError("El contacto no tiene teléfono")
        body = {**body, "to": to}
        # Retried through blips with the same Idempotency-Key: the customer gets one message, not zero or two.
        attempts = post_with_retry(
            self._client, "/v1/messages", json=body, headers={"Idempotency-Key": idempotency_key}, policy=self.retry
        )
        response = attempts.response
        if response is None:
            exc = attempts.error
            if isinstance(exc, httpx.TimeoutException):
                raise ProviderError(
                    f"El proveedor de WhatsApp no respondió a tiempo ({type(exc).__name__}; {attempts.describe()})"
                ) from exc
            raise ProviderError(
                f"No se pudo conectar con el proveedor de WhatsApp: {exc} ({attempts.describe()})"
            ) from exc
        if response.status_code >= 300:
            raise ProviderError(
                f"El proveedor de WhatsApp respondió {response.status_code} ({attempts.describe()}): "
                f"{response.text[:300]}"
            )
        try:
            data = response.json()
        except ValueError:
            data = {}
        messages = data.get("messages") or [{}]
        return SentMessage(
            message_id=messages[0].get("id"),
            status_code=response.status_code,
            replayed=response.headers.get("Idempotent-Replayed") == "true",
        )
