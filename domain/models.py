"""SQLModel tables of the domain. Table and column names follow today's CRM so operators' SQL keeps working.

Alembic owns the schema (domain/migrations); these classes describe it for the ORM and must stay in step.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

COORDINADORA = "COORDINADORA"
SHIPMENT = "shipment"


def utcnow() -> datetime:
    return datetime.now(UTC)


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model, for set-based statements; SQLModel does not declare `__table__` to mypy."""
    table: Table = model.__dict__["__table__"]
    return table


def new_id() -> str:
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """`count` ids (random version-4 UUIDs, as canonical lower-case text) from one read of the OS's random
    source, not one read and one UUID object each: the 30,000 outbox rows of a 10,000-result batch report spent
    ~13 % of its CPU in `uuid4` (py-spy); 30,000 ids take ~27 ms this way against ~150 ms."""
    digits = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        x = digits[start : start + 32]
        # The version nibble is 4; the variant's two high bits are 10 (8, 9, a or b), the other two stay random.
        ids.append(f"{x[0:8]}-{x[8:12]}-4{x[13:16]}-{'89ab'[int(x[16], 16) & 3]}{x[17:20]}-{x[20:32]}")
    return ids


def new_item_id() -> str:
    """Item ids travel to the robot and come back alone in callbacks: unguessable and globally unique."""
    return f"itm_{secrets.token_urlsafe(18)}"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _ts(nullable: bool = False, **kwargs: Any) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True, **kwargs)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, **kwargs)


def _money(default: Decimal | None = Decimal("0")) -> Any:
    return Field(default=default, sa_type=Numeric(14, 2), nullable=default is None)


def _json(default_factory: Any) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSON, nullable=False))


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


ACTIVE_JOB_STATUSES = (JobStatus.PENDING, JobStatus.PROCESSING)
FINISHED_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED)


class ItemStatus(StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    ERROR = "error"


TERMINAL_ITEM_STATUSES = (ItemStatus.SUCCESS, ItemStatus.ERROR)


class ErrorType(StrEnum):
    VALIDATION = "validation"
    PORTAL = "portal"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    DISPATCH = "dispatch"  # ours: the robot never took the batch (unreachable, refused)
    WITHDRAWN = "withdrawn"  # ours: a retry item not sent because its order was created on the portal meanwhile


class ResolvedBy(StrEnum):
    """Who decided an item's terminal status. Only the robot speaks for the portal, so only a closure of ours
    (`robotjobs`: dispatch refused or unknown, deadline, cancel, coverage) may still be overturned by a robot
    result; a robot result is final among the robot's own reports."""

    ROBOT = "robot"
    ROBOTJOBS = "robotjobs"


class DispatchState(StrEnum):
    NOT_DISPATCHED = "not_dispatched"
    CLAIMED = "claimed"  # a flow run took the right to send; it may or may not have reached the robot
    ACCEPTED = "accepted"
    REFUSED = "refused"
    UNKNOWN = "unknown"  # sent, but no answer reached us (read timeout, reset): the robot may well be working


# --- CRM --------------------------------------------------------------------------------------------------------


class Workspace(SQLModel, table=True):
    __tablename__ = "workspaces"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=200)
    created_at: datetime = _ts()


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True, max_length=36)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=200)
    id_document: str | None = Field(default=None, max_length=40)
    created_at: datetime = _ts()


class Pipeline(SQLModel, table=True):
    __tablename__ = "pipelines"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True, max_length=36)
    name: str = Field(max_length=200)


class Stage(SQLModel, table=True):
    __tablename__ = "stages"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    pipeline_id: str = Field(foreign_key="pipelines.id", index=True, max_length=36)
    name: str = Field(max_length=200)
    position: int = 0


class Order(SQLModel, table=True):
    __tablename__ = "orders"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True, max_length=36)
    contact_id: str | None = Field(default=None, foreign_key="contacts.id", max_length=36)
    pipeline_id: str = Field(foreign_key="pipelines.id", max_length=36)
    stage_id: str = Field(foreign_key="stages.id", index=True, max_length=36)
    name: str = Field(max_length=200, description="Order reference shown to operators, e.g. 'Pedido 1042'")
    total_value: Decimal = _money()
    units: int = 1
    shipping_address: str | None = Field(default=None, max_length=500)
    shipping_city: str | None = Field(default=None, max_length=200)
    shipping_department: str | None = Field(default=None, max_length=200)
    tracking_number: str | None = Field(default=None, max_length=100)
    carrier: str | None = Field(default=None, max_length=50)
    tags: list[str] = _json(list)
    custom_fields: dict[str, Any] = _json(dict)
    archived: bool = False
    closed: bool = False
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


# --- Carrier ----------------------------------------------------------------------------------------------------


class CarrierConfig(SQLModel, table=True):
    """A workspace's account on a courier portal and its shipping defaults (today's hard-coded constants)."""

    __tablename__ = "carrier_configs"
    __table_args__ = (UniqueConstraint("workspace_id", "carrier", name="uq_carrier_configs_workspace_carrier"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=36)
    carrier: str = Field(default=COORDINADORA, max_length=50)
    portal_username: str = Field(max_length=200)
    # Fernet token (domain/credentials.py). Never logged, never in a flow parameter, event or artifact.
    portal_password_encrypted: str = Field(sa_type=String(1000))
    dispatch_stage_id: str | None = Field(default=None, foreign_key="stages.id", max_length=36)
    declared_value: Decimal = _money(Decimal("55000"))
    package_weight_kg: float = 0.08
    package_height_cm: float = 5
    package_width_cm: float = 5
    package_length_cm: float = 10


class CarrierCoverage(SQLModel, table=True):
    """One city the courier serves, e.g. label `MANIZALES (CDAS)`, normalised city `MANIZALES`, department `CDAS`."""

    __tablename__ = "carrier_coverage"
    __table_args__ = (
        UniqueConstraint("carrier", "city_normalized", "department_abbr", name="uq_carrier_coverage_city"),
    )

    id: int | None = Field(default=None, primary_key=True)
    carrier: str = Field(default=COORDINADORA, max_length=50)
    city_label: str = Field(max_length=200)
    city_normalized: str = Field(max_length=200)
    department_abbr: str = Field(max_length=20)
    supports_cod: bool = True
    active: bool = True


# --- Robot jobs -------------------------------------------------------------------------------------------------


class RobotJob(SQLModel, table=True):
    __tablename__ = "robot_jobs"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key", name="uq_robot_jobs_idempotency_key"),
        # At most one active shipment job per workspace and carrier is enforced by the database so it cannot race:
        # the partial unique index `uq_robot_jobs_one_active` (workspace_id, carrier, job_type WHERE status IN
        # ('pending', 'processing')), created by migration 0001, its one home. Not declared here: its
        # `postgresql_where`/`sqlite_where` made SQLAlchemy import both dialects in every process that imports the
        # models, ~30 ms of each flow run's start (BENCHMARKS.md, #11); the schema comes from the migrations only.
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True, max_length=36)
    carrier: str = Field(default=COORDINADORA, max_length=50)
    job_type: str = Field(default=SHIPMENT, max_length=30)
    status: str = Field(default=JobStatus.PENDING, max_length=20, index=True)
    total_items: int = 0
    success_count: int = 0
    error_count: int = 0
    idempotency_key: str | None = Field(default=None, max_length=200)
    retry_of_job_id: str | None = Field(default=None, foreign_key="robot_jobs.id", max_length=36)
    # The flow run that created (or now runs) the job: "the batch of run X" is looked up by it (CLI, resumed runs).
    flow_run_id: str | None = Field(default=None, max_length=64, index=True)
    dispatch_state: str = Field(default=DispatchState.NOT_DISPATCHED, max_length=20)
    callback_secret_hash: str | None = Field(default=None, max_length=128)
    failure_reason: str | None = Field(default=None, max_length=1000)
    deadline_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    dispatched_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)
    # When the summary artifacts last showed this job; older than `updated_at` → a late result corrected it.
    summary_published_at: datetime | None = _ts(nullable=True)


class RobotJobItem(SQLModel, table=True):
    __tablename__ = "robot_job_items"
    __table_args__ = (
        UniqueConstraint("job_id", "order_id", name="uq_robot_job_items_job_order"),
        Index("ix_robot_job_items_job_status", "job_id", "status"),
    )

    id: str = Field(default_factory=new_item_id, primary_key=True, max_length=64)
    job_id: str = Field(foreign_key="robot_jobs.id", max_length=36)
    order_id: str = Field(foreign_key="orders.id", index=True, max_length=36)
    status: str = Field(default=ItemStatus.PENDING, max_length=20)
    tracking_number: str | None = Field(default=None, max_length=100)
    error_type: str | None = Field(default=None, max_length=20)
    error_message: str | None = Field(default=None, max_length=1000)
    resolved_by: str | None = Field(default=None, max_length=20, description="ResolvedBy, once terminal")
    # The pedidoInput sent to the robot (None for orders rejected before dispatch). Never holds credentials.
    robot_input: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    completed_at: datetime | None = _ts(nullable=True)


class JobPublication(SQLModel, table=True):
    """When a job's artifact of one kind (`progress`) was last claimed for publication, by any process: the webhook's
    gunicorn workers coalesce their Prefect API calls per job through this row, not only each in its own memory
    (domain/batches/publications.py). A throttle, not data: no foreign key, so deleting a job is never blocked by it."""

    __tablename__ = "robot_job_publications"

    job_id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(primary_key=True, max_length=32, description="What is published, e.g. 'progress'")
    claimed_at: float = Field(description="Epoch seconds of the last claim that won")


# --- Events -----------------------------------------------------------------------------------------------------


class OutboxEvent(SQLModel, table=True):
    """A domain event, written in the same transaction as the change that caused it; delivered by its consumer."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_pending", "consumer", "delivered_at", "available_at"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(default_factory=new_id, unique=True, max_length=36)
    event_type: str = Field(max_length=100)
    consumer: str = Field(max_length=50, description="'automations' for triggers, 'resume' for batch completion")
    workspace_id: str = Field(max_length=36, index=True)
    aggregate_id: str = Field(max_length=64, description="The order or job the event is about")
    payload: dict[str, Any] = _json(dict)
    depth: int = Field(default=0, description="Automation cascade depth of the change that caused the event")
    created_at: datetime = _ts()
    available_at: datetime = _ts()
    delivered_at: datetime | None = _ts(nullable=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=2000)
    locked_by: str | None = Field(default=None, max_length=100)
    locked_until: datetime | None = _ts(nullable=True)


class CallbackDeadLetter(SQLModel, table=True):
    """An authenticated callback we could not apply (not understood, or failing at replay): kept for operators,
    who list it and replay it once the cause is fixed. The robot never retries, so this is its only copy."""

    __tablename__ = "callback_dead_letters"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = _ts()
    reason: str = Field(max_length=2000)
    headers: dict[str, Any] = _json(dict)
    body: str = Field(sa_type=Text)
    job_id: str | None = Field(default=None, max_length=36, index=True)
    replayed_at: datetime | None = _ts(nullable=True)
    replay_result: str | None = Field(default=None, max_length=2000)


class WebhookReceipt(SQLModel, table=True):
    """A `webhook-id` already processed (Standard Webhooks deduplication)."""

    __tablename__ = "webhook_receipts"

    webhook_id: str = Field(primary_key=True, max_length=255)
    job_id: str | None = Field(default=None, max_length=36)
    received_at: datetime = _ts()
