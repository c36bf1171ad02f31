"""SQLModel tables of automations: the rules, their execution log (one row per event and automation), the runs of
their actions, and the tasks the `create_task` action writes.

Alembic owns the schema (domain/migrations/versions/0002_automations.py); these classes must stay in step with it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from domain.models import _json, _ts, new_id


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CONDITIONS_NOT_MET = "conditions_not_met"
    SUPPRESSED = "suppressed"  # cascade depth reached: the chain stops here


FINISHED_EXECUTION_STATUSES = (
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CONDITIONS_NOT_MET,
    ExecutionStatus.SUPPRESSED,
)


class ActionStatus(StrEnum):
    PENDING = "pending"
    STARTED = "started"  # claimed and committed before an external call; the call may or may not have happened
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Automation(SQLModel, table=True):
    __tablename__ = "automations"
    __table_args__ = (Index("ix_automations_workspace_trigger", "workspace_id", "trigger_type", "enabled"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=36)
    name: str = Field(max_length=200)
    trigger_type: str = Field(max_length=100)
    trigger_config: dict[str, Any] = _json(dict)
    conditions: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    actions: list[dict[str, Any]] = _json(list)
    enabled: bool = True
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class AutomationExecution(SQLModel, table=True):
    """One automation's handling of one outbox event; the unique key makes it exactly once per (event, automation)."""

    __tablename__ = "automation_executions"
    __table_args__ = (
        UniqueConstraint("event_id", "automation_id", name="uq_automation_executions_event_automation"),
        Index("ix_automation_executions_automation", "automation_id", "started_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(max_length=36, index=True)
    automation_id: str = Field(foreign_key="automations.id", max_length=36)
    event_id: str = Field(max_length=36, description="outbox_events.event_id of the trigger event")
    event_type: str = Field(max_length=100)
    order_id: str | None = Field(default=None, max_length=64)
    depth: int = 0
    status: str = Field(default=ExecutionStatus.RUNNING, max_length=30)
    error: str | None = Field(default=None, max_length=2000)
    # The actions as they were when the execution started: a redelivery resumes the same plan even if the
    # automation was edited in between.
    actions: list[dict[str, Any]] = _json(list)
    worker_id: str | None = Field(default=None, max_length=100)
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)


class AutomationActionRun(SQLModel, table=True):
    __tablename__ = "automation_action_runs"
    __table_args__ = (UniqueConstraint("execution_id", "action_index", name="uq_automation_action_runs_index"),)

    id: int | None = Field(default=None, primary_key=True)
    execution_id: str = Field(foreign_key="automation_executions.id", max_length=36)
    action_index: int
    action_type: str = Field(max_length=50)
    status: str = Field(default=ActionStatus.PENDING, max_length=20)
    idempotency_key: str = Field(max_length=120, unique=True, description="Sent as Idempotency-Key")
    attempts: int = 0
    error: str | None = Field(default=None, max_length=2000)
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)
    duration_ms: int | None = None


class Task(SQLModel, table=True):
    """A to-do for a person, e.g. 'Llamar al cliente'; written by the `create_task` action."""

    __tablename__ = "tasks"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True, max_length=36)
    order_id: str | None = Field(default=None, foreign_key="orders.id", index=True, max_length=36)
    title: str = Field(max_length=300)
    description: str | None = Field(default=None, max_length=2000)
    status: str = Field(default="open", max_length=20)
    due_at: datetime | None = _ts(nullable=True)
    automation_id: str | None = Field(default=None, max_length=36)
    source_key: str | None = Field(default=None, max_length=120, unique=True, description="Action idempotency key")
    created_at: datetime = _ts()
