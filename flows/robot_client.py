"""The robot's HTTP client: one dispatch, no retries (a retry risks duplicate shipments on the courier portal).

Every way the robot can refuse a batch becomes a `DispatchRefused` with a reason in Spanish that operators read
on each item of the failed job. The request body carries the portal password: it is sent, never logged or kept.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, Field

DISPATCH_PATH = "/api/crear-pedidos-batch"


class DispatchRefused(Exception):
    """The robot did not take the batch: unreachable, timed out, busy (409) or any non-2xx answer."""

    def __init__(self, reason: str, *, status_code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class DispatchAccepted(BaseModel):
    """The robot's 2xx answer; holds nothing secret."""

    status_code: int = Field(description="HTTP status of the robot's answer.")
    message: str | None = Field(default=None, description="The robot's message, e.g. 'Batch aceptado, procesando...'.")


def _error_of(response: httpx.Response) -> str | None:
    """The robot's `error` text when it answered JSON (its 500 is an HTML page: never echoed)."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error)[:300] if error else None


def dispatch_batch(robot_url: str, request: dict[str, Any], *, timeout_s: float) -> DispatchAccepted:
    """POST the batch once. Raises DispatchRefused with the operators' reason on anything but 2xx."""
    url = f"{robot_url.rstrip('/')}{DISPATCH_PATH}"
    try:
        # No retries, and no redirects: a 3xx is not an acceptance.
        with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
            response = client.post(url, json=request)
    except httpx.TimeoutException:
        raise DispatchRefused(
            f"El servicio del robot no respondió en {timeout_s:g} s al envío del lote; no se reintenta para no "
            "duplicar pedidos. Revise el robot y reintente los pedidos fallidos."
        ) from None
    except httpx.HTTPError as exc:
        raise DispatchRefused(
            f"No se pudo conectar con el servicio del robot ({type(exc).__name__}); el lote no se envió. "
            "Revise que el robot esté en línea y reintente los pedidos fallidos."
        ) from None
    status = response.status_code
    if 200 <= status < 300:
        body = response.json() if "json" in response.headers.get("content-type", "") else {}
        return DispatchAccepted(status_code=status, message=(body or {}).get("message"))
    error = _error_of(response)
    if status == 409:
        reason = (
            "El robot ya tiene un lote en proceso para este workspace (HTTP 409); el lote no se envió. "
            "Espere a que termine y reintente los pedidos fallidos."
        )
    else:
        reason = f"El robot rechazó el lote (HTTP {status})" + (f": {error}" if error else "") + "."
    raise DispatchRefused(reason, status_code=status)
