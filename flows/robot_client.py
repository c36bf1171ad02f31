"""The robot's HTTP client: one dispatch, no retries (a retry risks duplicate shipments on the courier portal).

Two kinds of failure, because the robot starts working before it answers (robot-protocol.md §2):
- `DispatchRefused`: a definite "no" — the connection was never made (refused, DNS, connect timeout) or the robot
  answered non-2xx. Nothing is being processed; the job fails fast with a Spanish reason on each item.
- `DispatchOutcomeUnknown`: the request went out but no answer came back (read or write timeout, connection reset
  or closed mid-answer). The robot may well be processing the batch: the job waits for its results.
The request body carries the portal password: it is sent, never logged or kept.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx
from pydantic import BaseModel, Field

DISPATCH_PATH = "/api/crear-pedidos-batch"


class DispatchRefused(Exception):
    """A definite refusal: the robot was never reached (refused, DNS, connect timeout), or answered non-2xx."""

    def __init__(self, reason: str, *, status_code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class DispatchOutcomeUnknown(Exception):
    """The batch was sent but no answer reached us: the robot may be processing it. Never re-send."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# After these the request may have reached the robot whole: only its answer is missing.
UNKNOWN_OUTCOME_ERRORS: tuple[type[httpx.HTTPError], ...] = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.RemoteProtocolError,
)


class DispatchAccepted(BaseModel):
    """The robot's 2xx answer; holds nothing secret."""

    status_code: int = Field(description="HTTP status of the robot's answer.")
    message: str | None = Field(default=None, description="The robot's message, e.g. 'Batch aceptado, procesando...'.")


def _json_field(response: httpx.Response, name: str) -> str | None:
    """A text field of the robot's JSON answer (its 500 is an HTML page: never echoed); None when unreadable."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get(name) if isinstance(body, dict) else None
    return str(value)[:300] if value else None


def _tls_for(url: str) -> ssl.SSLContext | bool:
    """httpx builds a verified TLS context for every client, loading the CA bundle (~20 ms), even for a plain
    http:// robot; each flow run is a fresh process and the dispatch is on the click → robot path. An http:// URL
    gets a bare client context instead: never used, and were it used it would refuse every certificate (no CA
    loaded, verification and hostname checks on), so nothing is weakened. https:// keeps httpx's verified default."""
    return True if url.lower().startswith("https://") else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def dispatch_batch(
    robot_url: str, request: dict[str, Any], *, timeout_s: float, transport: httpx.BaseTransport | None = None
) -> DispatchAccepted:
    """POST the batch once. DispatchRefused on a definite refusal, DispatchOutcomeUnknown when no answer came.

    `transport` is for tests (a fake that raises the transport error under test); production passes none.
    """
    url = f"{robot_url.rstrip('/')}{DISPATCH_PATH}"
    try:
        # No retries, and no redirects: a 3xx is not an acceptance.
        with httpx.Client(
            timeout=timeout_s, follow_redirects=False, transport=transport, verify=_tls_for(url)
        ) as client:
            response = client.post(url, json=request)
    except UNKNOWN_OUTCOME_ERRORS as exc:
        raise DispatchOutcomeUnknown(
            f"El robot no respondió al envío del lote ({type(exc).__name__}, plazo {timeout_s:g} s); puede estar "
            "procesándolo. No se reenvía: se esperan sus resultados hasta el plazo del lote."
        ) from None
    except httpx.TimeoutException:  # connect or pool timeout: the request never left
        raise DispatchRefused(
            f"El servicio del robot no aceptó la conexión en {timeout_s:g} s; el lote no se envió. "
            "Revise que el robot esté en línea y reintente los pedidos fallidos."
        ) from None
    except httpx.HTTPError as exc:  # refused connection, DNS failure, a body that could not be written
        raise DispatchRefused(
            f"No se pudo conectar con el servicio del robot ({type(exc).__name__}); el lote no se envió. "
            "Revise que el robot esté en línea y reintente los pedidos fallidos."
        ) from None
    status = response.status_code
    if 200 <= status < 300:
        # The robot took the batch; an unreadable body does not change that.
        return DispatchAccepted(status_code=status, message=_json_field(response, "message"))
    error = _json_field(response, "error")
    if status == 409:
        reason = (
            "El robot ya tiene un lote en proceso para este workspace (HTTP 409); el lote no se envió. "
            "Espere a que termine y reintente los pedidos fallidos."
        )
    else:
        reason = f"El robot rechazó el lote (HTTP {status})" + (f": {error}" if error else "") + "."
    raise DispatchRefused(reason, status_code=status)
