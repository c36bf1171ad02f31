"""What the simulated robot does with a batch: the run configuration (scenarios) and each order's result.

A run-wide `scenario` applies to every order; a per-order override wins over it. An order is matched by
`order_scenarios[orderId]`, else `order_scenarios[pedidoInput.referencia]`, else by its `ciudad` being listed in
`unknown_cities` (→ `invalid_city`). Orders with an empty `ciudad` always get the validation error, as the robot does.
"""

from __future__ import annotations

import itertools
import random
from enum import Enum

from pydantic import BaseModel, Field, model_validator

# Spanish messages exactly as the production robot sends them (robot-protocol.md §2).
EMPTY_CITY = "Ciudad vacía o no proporcionada"
UNKNOWN_CITY = "No se encontró el municipio"
LOGIN_FAILED = "Login fallido en el portal de Coordinadora"
FATAL = "Error fatal en el procesamiento del batch"
IN_PROCESS = "Pedido ya en proceso"


class Scenario(str, Enum):
    """Run-wide behaviour of the simulated robot."""

    success = "success"  # every order gets a pedido number
    invalid_city = "invalid_city"  # every order: portal "No se encontró el municipio"
    login_failure = "login_failure"  # every order: portal login failure
    fatal = "fatal"  # `fatal_after` successes, then every order of the batch re-reported as unknown error
    silent = "silent"  # processes but never calls back


class OrderScenario(str, Enum):
    """Per-order override (see the module docstring for how an order is matched)."""

    success = "success"
    invalid_city = "invalid_city"
    login_failure = "login_failure"
    in_process = "in_process"  # validation "Pedido ya en proceso"
    silent = "silent"  # no callback for this order
    duplicate = "duplicate"  # success, and its callback is sent twice


class Report(str, Enum):
    """How results reach callbackUrl."""

    per_order = "per_order"  # the production robot: one unsigned POST per order
    batch = "batch"  # the signed protocol (§3): one Standard Webhooks POST {jobId, results} at the end
    both = "both"


class SimConfig(BaseModel):
    """The simulator's run configuration; `POST /_sim/config` merges a partial JSON object of these fields."""

    model_config = {"extra": "forbid"}

    scenario: Scenario = Field(default=Scenario.success, description="Run-wide behaviour.")
    delay: float = Field(default=2.0, ge=0, description="Seconds the robot spends per order (production: ~2 s).")
    duplicate_callbacks: bool = Field(default=False, description="Send every per-order callback twice.")
    early_callbacks: int = Field(default=0, ge=0, description="Callbacks sent before the dispatch gets its 200.")
    fatal_after: int = Field(default=1, ge=0, description="Successes before the fatal path (scenario fatal).")
    dispatch_status: int | None = Field(
        default=None, description="Answer every dispatch with this status and process nothing (500: HTML page)."
    )
    report: Report = Field(default=Report.per_order, description="per_order, batch (signed) or both.")
    webhook_secret: str | None = Field(default=None, description="whsec_... secret signing the batch report.")
    order_scenarios: dict[str, OrderScenario] = Field(
        default_factory=dict, description="Per-order overrides keyed by orderId or pedidoInput.referencia."
    )
    unknown_cities: list[str] = Field(
        default_factory=list, description="ciudad values the portal does not know (→ invalid_city)."
    )
    callback_timeout: float | None = Field(
        default=None, description="Callback timeout in seconds; the production robot sets none."
    )

    @model_validator(mode="after")
    def _batch_needs_secret(self) -> "SimConfig":
        if self.report != Report.per_order and not self.webhook_secret:
            raise ValueError("report batch/both needs webhook_secret (whsec_...)")
        return self

    def public(self) -> dict:
        """The configuration as JSON, with the signing secret masked."""
        data = self.model_dump(mode="json")
        if data["webhook_secret"]:
            data["webhook_secret"] = "whsec_***"
        return data


_pedido_numbers = itertools.count(random.randint(1_000_000, 8_000_000))


def new_tracking_number() -> str:
    """A courier pedido number in the portal's shape ("7600" + digits), unique within this process."""
    return f"7600{next(_pedido_numbers):07d}"


def result(item_id: str, status: str, **fields: str | None) -> dict:
    """A callback body: keys with no value are left out, as the robot does."""
    body = {"itemId": item_id, "status": status}
    body.update({key: value for key, value in fields.items() if value is not None})
    return body


def empty_city_result(item_id: str) -> dict:
    return result(item_id, "error", errorType="validation", errorMessage=EMPTY_CITY)


def fatal_result(item_id: str) -> dict:
    return result(item_id, "error", errorType="unknown", errorMessage=FATAL)


def order_scenario(config: SimConfig, order: dict) -> OrderScenario:
    """The scenario one order follows: its override, else the city rule, else the run-wide scenario."""
    pedido = order["pedidoInput"]
    for key in (order.get("orderId"), pedido.get("referencia")):
        if key is not None and str(key) in config.order_scenarios:
            return config.order_scenarios[str(key)]
    if pedido.get("ciudad") in config.unknown_cities:
        return OrderScenario.invalid_city
    if config.scenario in (Scenario.invalid_city, Scenario.login_failure, Scenario.silent):
        return OrderScenario(config.scenario.value)
    return OrderScenario.success


def order_result(scenario: OrderScenario, item_id: str) -> dict | None:
    """The callback body for one processed order, or None when the robot stays silent about it."""
    if scenario in (OrderScenario.success, OrderScenario.duplicate):
        return result(item_id, "success", trackingNumber=new_tracking_number())
    if scenario == OrderScenario.invalid_city:
        return result(item_id, "error", errorType="portal", errorMessage=UNKNOWN_CITY)
    if scenario == OrderScenario.login_failure:
        return result(item_id, "error", errorType="portal", errorMessage=LOGIN_FAILED)
    if scenario == OrderScenario.in_process:
        return result(item_id, "error", errorType="validation", errorMessage=IN_PROCESS)
    return None
