"""Pydantic models of every request and response of the webhook app; the OpenAPI document is generated from them.

Callback bodies keep the robot's camelCase keys (robot-protocol.md §2); unknown keys are ignored because robots
evolve. The read API answers in the domain's snake_case.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# PostgreSQL text cannot hold NUL; refusing it here turns a would-be 500 into a 422 naming the field.
NO_NUL = r"^[^\x00]*$"

ItemId = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL, description="Our robot_job_item id.")]
JobId = Annotated[str, Field(min_length=1, max_length=36, pattern=NO_NUL, description="Our robot_job id.")]


class _Callback(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=False)


class CallbackResult(_Callback):
    """One order's result as the robot reports it (the per-order body, or one entry of a batch body)."""

    model_config = ConfigDict(
        title="CallbackResult",
        # The cross-field rule, in the document too, so generated clients and fuzzers know it.
        json_schema_extra={
            "if": {"properties": {"status": {"const": "success"}}, "required": ["status"]},
            "then": {
                "required": ["trackingNumber"],
                "properties": {"trackingNumber": {"type": "string", "pattern": r"\S"}},
            },
        },
    )

    item_id: ItemId = Field(alias="itemId")
    status: Literal["success", "error"] = Field(description="Terminal status of the order on the courier portal.")
    tracking_number: str | None = Field(
        default=None,
        alias="trackingNumber",
        max_length=100,
        pattern=NO_NUL,
        validate_default=True,
        description="The courier's pedido number; required when status is success.",
    )
    error_type: Literal["validation", "portal", "timeout", "unknown"] | None = Field(
        default=None, alias="errorType", description="Why the order failed; 'unknown' when an error omits it."
    )
    error_message: str | None = Field(
        default=None, alias="errorMessage", max_length=1000, pattern=NO_NUL, description="Spanish, for operators."
    )

    @field_validator("tracking_number")
    @classmethod
    def _tracking_number_on_success(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("status") == "success" and not (value and value.strip()):
            raise ValueError("trackingNumber is required when status is success")
        return value

    def to_domain(self):
        """The domain's ItemResult (imported late: the domain module owns its own validation)."""
        from domain.results import ItemResult

        error_type = self.error_type
        if self.status == "error" and error_type is None:
            error_type = "unknown"  # the robot leaves empty keys out; an error without a type is still an error
        return ItemResult(
            item_id=self.item_id,
            status=self.status,
            tracking_number=self.tracking_number if self.status == "success" else None,
            error_type=error_type if self.status == "error" else None,
            error_message=self.error_message if self.status == "error" else None,
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
    text: str = Field(description="The previous Slack robot's format, as operators know it.")
