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
# Unusual but honest fields the production robot can send (robot-protocol.md §2).
CAPTCHA_ERROR_TYPE = "captcha"
CAPTCHA = "No se pudo resolver el captcha del portal"


def playwright_error(length: int = 5000) -> str:
    """A multi-line Playwright error with its call log, `length` characters long, as the robot's catch sends it."""
    head = "page.click: Timeout 30000ms exceeded.\nCall log:\n  - waiting for locator('#btnGuardarPedido')\n"
    line = '  -   locator resolved to <button disabled id="btnGuardarPedido">Guardar</button>\n'
    text = head
    while len(text) < length:
        text += line
    return text[:length]


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
    held = "held"  # success, sent only after `release()` (POST /_sim/release): e.g. past the job's deadline
    unknown_error_type = "unknown_error_type"  # error with an errorType outside the protocol ("captcha")
    long_error = "long_error"  # portal error with a 5,000-character multi-line Playwright message
    no_tracking = "no_tracking"  # success without trackingNumber (the robot could not read the pedido number)


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
    answer_delay: float = Field(
        default=0.0,
        ge=0,
        description="Seconds the robot holds its 200 while it already processes the batch (a cold start).",
    )
    drop_answer: bool = Field(
        default=False, description="Process the batch but reset the connection instead of answering the dispatch."
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
    def _batch_needs_secret(self) -> SimConfig:
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
    if scenario in (OrderScenario.success, OrderScenario.duplicate, OrderScenario.held):
        return result(item_id, "success", trackingNumber=new_tracking_number())
    if scenario == OrderScenario.no_tracking:
        return result(item_id, "success")
    if scenario == OrderScenario.unknown_error_type:
        return result(item_id, "error", errorType=CAPTCHA_ERROR_TYPE, errorMessage=CAPTCHA)
    if scenario == OrderScenario.long_error:
        return result(item_id, "error", errorType="portal", errorMessage=playwright_error())
    if scenario == OrderScenario.invalid_city:
        return result(item_id, "error", errorType="portal", errorMessage=UNKNOWN_CITY)
    if scenario == OrderScenario.login_failure:
        return result(item_id, "error", errorType="portal", errorMessage=LOGIN_FAILED)
    if scenario == OrderScenario.in_process:
        return result(item_id, "error", errorType="validation", errorMessage=IN_PROCESS)
    return None
