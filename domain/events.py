"""Domain events: what happened, as tiny past-tense dataclasses, and the outbox payload each one is stored as.

One class per event type. Each names its `event_type` (the outbox row's type, what automations trigger on), its
`consumer` (who delivers it), its fields (exactly the stored payload's keys, in the same order), `to_payload()` (the
JSON written to `outbox_events.payload`) and `from_payload()` (the typed event a consumer reads back).

The payloads are a contract: users' automation conditions and variables read them (`domain.automations.variables`),
so a field is never renamed or retyped here; `tests/domain/test_events.py` pins each shape. Writers build events on
the hot path (thousands of results per second, then one INSERT): the classes are frozen slotted dataclasses whose
`to_payload()` is a plain dict build, with no validation on write. `order` and `contact` stay the dicts the writer
built (typed as `OrderFields`/`ContactFields`), never copied.

| event | type | written by | consumer |
| --- | --- | --- | --- |
| `RobotCoordCompleted` | robot.coord.completed | `domain.batches.results` (first success of an order) | automations |
| `FieldChanged` | field.changed | `domain.orders.changes` (every order update path) | automations |
| `OrderStageChanged` | order.stage_changed | `domain.orders.changes.move_order_to_stage` | automations |
| `OrderCreated` | order.created | `domain.orders.changes.create_order` | automations |
| `RobotBatchCompleted` | robot.batch.completed | `domain.batches.jobs` (a job finished) | resume |
| `RobotBatchCorrected` | robot.batch.corrected | `domain.batches.jobs.correct_finished_job` | resume |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self, TypedDict

# Consumers: who claims an event type's rows in the outbox.
AUTOMATIONS = "automations"
RESUME = "resume"

# Event types, as stored in outbox_events.event_type and chosen as automation triggers.
ROBOT_COORD_COMPLETED = "robot.coord.completed"
FIELD_CHANGED = "field.changed"
ORDER_STAGE_CHANGED = "order.stage_changed"
ORDER_CREATED = "order.created"
BATCH_COMPLETED = "robot.batch.completed"
BATCH_CORRECTED = "robot.batch.corrected"


class OrderFields(TypedDict):
    """An order as every order event carries it (`domain.orders.changes.event_context`)."""

    id: str
    name: str | None
    total_value: str | None  # a Decimal as text: "139900.00"
    tracking_number: str | None
    carrier: str | None
    shipping_address: str | None
    shipping_city: str | None
    shipping_department: str | None
    pipeline_id: str | None
    stage_id: str | None
    tags: list[str]
    custom_fields: dict[str, Any]


class ContactFields(TypedDict):
    """The order's contact (every value None when the order has none)."""

    id: str | None
    name: str | None
    phone: str | None
    email: str | None


class OrderContext(TypedDict):
    """The `order` and `contact` keys every order event's payload carries."""

    order: OrderFields
    contact: ContactFields


class _Event:
    """What every event class shares: `from_payload`, the inverse of its own `to_payload` (a payload's keys are the
    event's fields; KeyError on a missing one)."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Any]]  # every event is a dataclass

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        return cls(**{field.name: payload[field.name] for field in fields(cls)})


class _AboutAnOrder(_Event):
    """An automations event: about one order, whose id is the outbox row's aggregate."""

    __slots__ = ()
    order: OrderFields

    @property
    def aggregate_id(self) -> str:
        return self.order["id"]


@dataclass(frozen=True, slots=True)
class RobotCoordCompleted(_AboutAnOrder):
    """The robot created an order's shipment at the carrier (once per order: a duplicate success fires nothing)."""

    event_type: ClassVar[str] = ROBOT_COORD_COMPLETED
    consumer: ClassVar[str] = AUTOMATIONS

    job_id: str
    item_id: str
    order: OrderFields  # as shipped: tracking_number is the robot's ("" when it sent none), carrier the robot's
    contact: ContactFields

    def to_payload(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "item_id": self.item_id, "order": self.order, "contact": self.contact}


@dataclass(frozen=True, slots=True)
class FieldChanged(_AboutAnOrder):
    """A field of an order changed (`field`: a standard field, or `custom_fields.<key>`); `order` is after it."""

    event_type: ClassVar[str] = FIELD_CHANGED
    consumer: ClassVar[str] = AUTOMATIONS

    field: str
    old_value: Any  # JSON: a Decimal as text
    new_value: Any
    order: OrderFields
    contact: ContactFields

    def to_payload(self) -> dict[str, Any]:
        return {"field": self.field, "old_value": self.old_value, "new_value": self.new_value, "order": self.order,
                "contact": self.contact}  # fmt: skip


@dataclass(frozen=True, slots=True)
class OrderStageChanged(_AboutAnOrder):
    """An order moved to another stage of its pipeline; `order` is after the move."""

    event_type: ClassVar[str] = ORDER_STAGE_CHANGED
    consumer: ClassVar[str] = AUTOMATIONS

    pipeline_id: str
    from_stage_id: str | None
    to_stage_id: str
    order: OrderFields
    contact: ContactFields

    def to_payload(self) -> dict[str, Any]:
        return {"pipeline_id": self.pipeline_id, "from_stage_id": self.from_stage_id, "to_stage_id": self.to_stage_id,
                "order": self.order, "contact": self.contact}  # fmt: skip


@dataclass(frozen=True, slots=True)
class OrderCreated(_AboutAnOrder):
    """An order was created."""

    event_type: ClassVar[str] = ORDER_CREATED
    consumer: ClassVar[str] = AUTOMATIONS

    order: OrderFields
    contact: ContactFields

    def to_payload(self) -> dict[str, Any]:
        return {"order": self.order, "contact": self.contact}


@dataclass(frozen=True, slots=True)
class _BatchOutcome(_Event):
    """A job's outcome as both batch events carry it (the same payload)."""

    job_id: str
    flow_run_id: str | None
    status: str  # completed | failed
    success_count: int
    error_count: int
    total_items: int

    @property
    def aggregate_id(self) -> str:
        return self.job_id

    def to_payload(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "flow_run_id": self.flow_run_id, "status": self.status,
                "success_count": self.success_count, "error_count": self.error_count,
                "total_items": self.total_items}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RobotBatchCompleted(_BatchOutcome):
    """Every item of a job is terminal and the job finished (`completed`, or `failed`): its suspended run resumes.

    Not `relay.run_input.BatchCompleted`, the Prefect run input the resume consumer builds from this event."""

    event_type: ClassVar[str] = BATCH_COMPLETED
    consumer: ClassVar[str] = RESUME


@dataclass(frozen=True, slots=True)
class RobotBatchCorrected(_BatchOutcome):
    """A finished job changed afterwards (a robot success beat our own closure): its summary is republished and its
    run shows the corrected outcome. Same consumer and payload as `RobotBatchCompleted`."""

    event_type: ClassVar[str] = BATCH_CORRECTED
    consumer: ClassVar[str] = RESUME


AutomationEvent = RobotCoordCompleted | FieldChanged | OrderStageChanged | OrderCreated
BatchEvent = RobotBatchCompleted | RobotBatchCorrected
DomainEvent = AutomationEvent | BatchEvent

EVENTS: dict[str, type[DomainEvent]] = {
    cls.event_type: cls
    for cls in (
        RobotCoordCompleted,
        FieldChanged,
        OrderStageChanged,
        OrderCreated,
        RobotBatchCompleted,
        RobotBatchCorrected,
    )
}


def consumer_of(event_type: str) -> str:
    return EVENTS[event_type].consumer


def parse(event_type: str, payload: Mapping[str, Any]) -> DomainEvent:
    """The typed event of an outbox row's type and payload (KeyError: an unknown type or a missing key)."""
    return EVENTS[event_type].from_payload(payload)


def parse_automation_event(event_type: str, payload: Mapping[str, Any]) -> AutomationEvent:
    """An event of consumer `automations`, typed; ValueError for any other."""
    event = parse(event_type, payload)
    if isinstance(event, RobotBatchCompleted | RobotBatchCorrected):
        raise ValueError(f"{event_type} is not an automations event")
    return event


def parse_batch_event(event_type: str, payload: Mapping[str, Any]) -> BatchEvent:
    """An event of consumer `resume`, typed; ValueError for any other."""
    event = parse(event_type, payload)
    if not isinstance(event, RobotBatchCompleted | RobotBatchCorrected):
        raise ValueError(f"{event_type} is not a batch event")
    return event
