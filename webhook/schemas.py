"""Pydantic models of every request and response of the webhook app; the OpenAPI document is generated from them.

Callback bodies keep the robot's camelCase keys (robot-protocol.md §2); unknown keys are ignored because robots
evolve. The read API answers in the domain's snake_case.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# PostgreSQL text cannot hold NUL; refusing it here turns a would-be 500 into a 422 naming the field.
NO_NUL = r"^[^\x00]*$"

ItemId = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL, description="Our robot_job_item id.")]
JobId = Annotated[str, Field(min_length=1, max_length=36, pattern=NO_NUL, description="Our robot_job id.")]


class _Callback(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=False)


class CallbackResult(_Callback):
    """One order's result as the robot reports it (the per-order body, or one entry of a batch body).

    Strict only on what makes a result attributable and understandable (`itemId`, `status`). Every other field is
    taken as the robot sends it and normalised by the domain (domain.batches.results.normalise_result): the robot never
    retries, so a refusal here would lose an order that exists on the portal.
    """

    model_config = ConfigDict(title="CallbackResult", coerce_numbers_to_str=True)

    item_id: ItemId = Field(alias="itemId")
    status: Literal["success", "error"] = Field(description="Terminal status of the order on the courier portal.")
    tracking_number: str | None = Field(
        default=None,
        alias="trackingNumber",
        description="The courier's pedido number. A success without it is still a created order (its number is "
        "then shown as unknown); trimmed, at most 100 characters kept.",
    )
    error_type: str | None = Field(
        default=None,
        alias="errorType",
        description="validation, portal, timeout or unknown; any other value is recorded as 'unknown' with the "
        "original kept in the message.",
    )
    error_message: str | None = Field(
        default=None,
        alias="errorMessage",
        description="Spanish, for operators; longer than 1,000 characters is truncated.",
    )

    @field_validator("tracking_number", mode="before")
    @classmethod
    def _tracking_as_text(cls, value: object) -> object:
        # A pedido number is a scalar; anything else is not a number we can use, but the success still stands.
        if isinstance(value, bool) or not isinstance(value, (str, int, float, type(None))):
            return None
        return value

    @field_validator("error_type", "error_message", mode="before")
    @classmethod
    def _any_json_as_text(cls, value: object) -> object:
        # Kept for operators as the robot sent it (the domain folds an unknown type into the message).
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False)

    @field_validator("status", mode="before")
    @classmethod
    def _status_spelling(cls, value: object) -> object:
        # "Success", " error " are understood; anything else is not a result we can record.
        return value.strip().lower() if isinstance(value, str) else value

    def to_domain(self):
        """The domain's ItemResult, normalised (imported late: the domain owns the normalisation rules)."""
        from domain.batches.results import normalise_result

        return normalise_result(
            item_id=self.item_id,
            status=self.status,
            tracking_number=self.tracking_number,
            error_type=self.error_type,
            error_message=self.error_message,
        )


class BatchCallback(_Callback):
    """Every result of one job at once (signed robots, robot-protocol.md §3)."""

    model_config = ConfigDict(title="BatchCallback")

    job_id: JobId = Field(alias="jobId")
    results: list[CallbackResult] = Field(min_length=1, max_length=5000)


class ResultAck(BaseModel):
    """What one result did: `changed` is false for duplicates and results for already-terminal items."""

    item_id: str = Field(alias="itemId")
    changed: bool
    item_status: str = Field(alias="itemStatus", description="The item's status after this request.")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class CallbackAck(BaseModel):
    """200: every result of the request is committed (or was already recorded)."""

    ok: Literal[True] = True
    job_id: str | None = Field(alias="jobId", description="None only for a replayed webhook-id.")
    job_finished: bool = Field(alias="jobFinished")
    job_status: str | None = Field(alias="jobStatus")
    changed: list[str] = Field(description="Item ids this request changed.")
    unchanged: list[str] = Field(description="Item ids acknowledged without change (duplicates, already terminal).")
    results: list[ResultAck]
    duplicate_delivery: bool = Field(
        default=False, alias="duplicateDelivery", description="This webhook-id was processed before; nothing done."
    )

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ErrorDetail(BaseModel):
    field: str = Field(description="Dotted path of the offending field in the request body ('' for the body).")
    reason: str


class ErrorBody(BaseModel):
    """Every refusal: a stable `error` code, a message for people and, for validation errors, the fields."""

    error: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"] | None = None


# --- Read API ---------------------------------------------------------------------------------------------------


class ContactOut(BaseModel):
    id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None


class OrderOut(BaseModel):
    id: str
    name: str
    total_value: str
    tracking_number: str | None = None
    carrier: str | None = None
    shipping_address: str | None = None
    shipping_city: str | None = None
    shipping_department: str | None = None


class ItemOut(BaseModel):
    id: str
    order_id: str
    status: str
    tracking_number: str | None = None
    pedido: str | None = Field(
        default=None,
        description="On success: the pedido number, or 'número de pedido desconocido' when the robot "
        "created the order without reading it (look it up on the portal).",
    )
    resolved_by: str | None = Field(default=None, description="robot, or robotjobs for our own closures.")
    possible_duplicate: str | None = Field(
        default=None, description="Set when the same order was also created on the portal by another batch."
    )
    error_type: str | None = None
    error_message: str | None = None
    completed_at: datetime | None = None
    order: OrderOut | None = None
    contact: ContactOut | None = None


class JobOut(BaseModel):
    """A robot job and its items, for the chat/commands screen and operators. Never carries secrets."""

    id: str
    workspace_id: str
    carrier: str
    status: str
    total_items: int
    success_count: int
    error_count: int
    dispatch_state: str
    flow_run_id: str | None = None
    retry_of_job_id: str | None = None
    failure_reason: str | None = None
    created_at: datetime
    dispatched_at: datetime | None = None
    deadline_at: datetime | None = None
    finished_at: datetime | None = None
    items: list[ItemOut]


class SummaryLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: str
    order_id: str
    order_name: str
    status: str
    tracking_number: str | None = None
    pedido: str = Field(description="The pedido number, or 'número de pedido desconocido'.")
    possible_duplicate: str | None = None
    recipient: str
    address: str
    city: str
    phone: str
    total: str = Field(description="Colombian pesos, e.g. '$139.900'.")
    error_type: str | None = None
    error_message: str | None = None


class SummaryOut(BaseModel):
    """A job's batch summary: counts, lines, and the reference text operators know (Spanish)."""

    model_config = ConfigDict(from_attributes=True)

    job_id: str
    job_status: str
    success_count: int
    error_count: int
    total_items: int
    pending_count: int
    failure_reason: str | None = None
    successes: list[SummaryLineOut]
    rejected: list[SummaryLineOut]
    pending: list[SummaryLineOut] = Field(default_factory=list)
    text: str = Field(description="The previous Slack robot's format, as operators know it.")
