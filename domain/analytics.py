"""Read-only analytics over past batches, for analysts' notebooks: plain dataclass rows, no pandas.

Every function takes a session and only reads. Rates are fractions in [0, 1] over *finished* items (pending items
have no outcome yet) and are None when nothing has finished. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import func, inspect
from sqlmodel import Session, col, select

from domain.batches.places import item_place
from domain.models import ErrorType, ItemStatus, Order, RobotJob, RobotJobItem

NO_CITY = "(sin ciudad)"
NO_DEPARTMENT = "(sin departamento)"
ERROR_CATEGORIES = tuple(e.value for e in ErrorType)  # validation, portal, timeout, unknown, dispatch


def _rate(success: int, error: int) -> float | None:
    finished = success + error
    return success / finished if finished else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def error_category(status: str, error_type: str | None) -> str | None:
    """The error's category for analysis: one of ERROR_CATEGORIES, None for items that did not fail."""
    if status != ItemStatus.ERROR:
        return None
    # Rows written before ErrorType existed, or odd robot values, count as unknown rather than vanish.
    return error_type if error_type in ERROR_CATEGORIES else ErrorType.UNKNOWN.value


# --- jobs -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """One batch: its counts and its life in time."""

    job_id: str
    workspace_id: str
    status: str
    total_items: int
    success_count: int
    error_count: int
    pending_count: int
    success_rate: float | None
    created_at: datetime
    dispatched_at: datetime | None
    finished_at: datetime | None
    seconds_to_finish: float | None  # dispatched_at → finished_at
    retry_of_job_id: str | None
    is_retry: bool
    failure_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_jobs(session: Session, *, workspace_id: str | None = None) -> int:
    """How many batches the database holds; 0 for a database without the schema (never migrated)."""
    if not inspect(session.connection()).has_table(RobotJob.__tablename__):
        return 0
    statement = select(func.count()).select_from(RobotJob)
    if workspace_id is not None:
        statement = statement.where(RobotJob.workspace_id == workspace_id)
    return session.exec(statement).one()


def jobs_overview(session: Session, *, workspace_id: str | None = None) -> list[JobRow]:
    """Every batch, oldest first, with its counts, success rate, timings and the job it retried."""
    statement = select(RobotJob).order_by(col(RobotJob.created_at), col(RobotJob.id))
    if workspace_id is not None:
        statement = statement.where(RobotJob.workspace_id == workspace_id)
    rows = []
    for job in session.exec(statement):
        rows.append(
            JobRow(
                job_id=job.id,
                workspace_id=job.workspace_id,
                status=job.status,
                total_items=job.total_items,
                success_count=job.success_count,
                error_count=job.error_count,
                pending_count=max(job.total_items - job.success_count - job.error_count, 0),
                success_rate=_rate(job.success_count, job.error_count),
                created_at=job.created_at,
                dispatched_at=job.dispatched_at,
                finished_at=job.finished_at,
                seconds_to_finish=_seconds(job.dispatched_at, job.finished_at),
                retry_of_job_id=job.retry_of_job_id,
                is_retry=job.retry_of_job_id is not None,
                failure_reason=job.failure_reason,
            )
        )
    return rows


# --- items ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemFact:
    """One order of one batch: where it went, how it ended and how long the robot took to say so."""

    item_id: str
    job_id: str
    order_id: str
    order_name: str
    status: str
    tracking_number: str | None
    error_type: str | None
    error_category: str | None  # validation / portal / timeout / unknown / dispatch; None unless status is error
    error_message: str | None
    rejected_before_dispatch: bool  # failed our coverage check: never sent to the robot
    city: str  # the courier's label, e.g. MANIZALES (CDAS)
    department: str  # abbreviation, e.g. CDAS
    job_created_at: datetime
    dispatched_at: datetime | None
    completed_at: datetime | None
    seconds_to_result: float | None  # job dispatched_at → this item's result; None if never sent or pending
    is_retry: bool  # the item belongs to a retry job
    retry_of_job_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _place(robot_input: dict[str, Any] | None, order: Order) -> tuple[str, str]:
    """City label and department abbreviation (domain.batches.places), named when unknown so they group."""
    place = item_place(robot_input, order)
    return (place.label if place.city else NO_CITY), place.department or NO_DEPARTMENT


def item_facts(
    session: Session, *, workspace_id: str | None = None, job_ids: Iterable[str] | None = None
) -> list[ItemFact]:
    """One row per item of every batch (or of the given jobs), in batch order."""
    statement = (
        select(RobotJobItem, RobotJob, Order)
        .join(RobotJob, col(RobotJob.id) == col(RobotJobItem.job_id))
        .join(Order, col(Order.id) == col(RobotJobItem.order_id))
        .order_by(col(RobotJob.created_at), col(RobotJob.id), col(RobotJobItem.created_at), col(Order.name))
    )
    if workspace_id is not None:
        statement = statement.where(RobotJob.workspace_id == workspace_id)
    if job_ids is not None:
        statement = statement.where(col(RobotJobItem.job_id).in_(list(job_ids)))
    facts = []
    for item, job, order in session.exec(statement):
        city, department = _place(item.robot_input, order)
        sent = item.robot_input is not None
        facts.append(
            ItemFact(
                item_id=item.id,
                job_id=job.id,
                order_id=order.id,
                order_name=order.name,
                status=item.status,
                tracking_number=item.tracking_number,
                error_type=item.error_type,
                error_category=error_category(item.status, item.error_type),
                error_message=item.error_message,
                rejected_before_dispatch=not sent,
                city=city,
                department=department,
                job_created_at=job.created_at,
                dispatched_at=job.dispatched_at if sent else None,
                completed_at=item.completed_at,
                seconds_to_result=_seconds(job.dispatched_at, item.completed_at) if sent else None,
                is_retry=job.retry_of_job_id is not None,
                retry_of_job_id=job.retry_of_job_id,
            )
        )
    return facts


# --- aggregates -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRate:
    """Items of one group (a department, a city, a day) and how many of them succeeded."""

    key: str
    total: int
    success: int
    error: int
    pending: int
    success_rate: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _group(facts: Iterable[ItemFact], key_of: Callable[[ItemFact], str]) -> list[GroupRate]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for fact in facts:
        counts[key_of(fact)][fact.status] += 1
    rows = [
        GroupRate(
            key=key,
            total=sum(c.values()),
            success=c[ItemStatus.SUCCESS],
            error=c[ItemStatus.ERROR],
            pending=c[ItemStatus.PENDING],
            success_rate=_rate(c[ItemStatus.SUCCESS], c[ItemStatus.ERROR]),
        )
        for key, c in counts.items()
    ]
    return sorted(rows, key=lambda r: (-r.total, r.key))


def success_by(
    session: Session, by: Literal["department", "city"] = "department", *, workspace_id: str | None = None
) -> list[GroupRate]:
    """Items and success rate per department abbreviation or per city label, most items first."""
    if by not in ("department", "city"):
        raise ValueError(f"success_by: by must be 'department' or 'city', not {by!r}")
    return _group(item_facts(session, workspace_id=workspace_id), lambda f: getattr(f, by))


def success_over_time(session: Session, *, workspace_id: str | None = None) -> list[GroupRate]:
    """Items and success rate per UTC day on which their batch was created, oldest day first (key: YYYY-MM-DD)."""
    rows = _group(item_facts(session, workspace_id=workspace_id), lambda f: f.job_created_at.date().isoformat())
    return sorted(rows, key=lambda r: date.fromisoformat(r.key))


@dataclass(frozen=True)
class ErrorReason:
    """How many failed items share one category and message."""

    category: str
    error_message: str
    count: int
    share: float  # of all failed items

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def error_reasons(session: Session, *, workspace_id: str | None = None) -> list[ErrorReason]:
    """Failed items grouped by category (validation / portal / timeout / unknown / dispatch) and message."""
    counts = Counter(
        (f.error_category, f.error_message or "")
        for f in item_facts(session, workspace_id=workspace_id)
        if f.error_category is not None
    )
    total = sum(counts.values())
    rows = [ErrorReason(category=c, error_message=m, count=n, share=n / total) for (c, m), n in counts.items()]
    return sorted(rows, key=lambda r: (-r.count, r.category, r.error_message))


@dataclass(frozen=True)
class RetryRow:
    """A retry job against the job it retried: how many of the failed orders the retry recovered."""

    job_id: str
    retry_of_job_id: str
    created_at: datetime
    status: str
    retried_items: int
    recovered: int  # succeeded in the retry
    still_failed: int
    pending: int
    recovery_rate: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def retry_outcomes(session: Session, *, workspace_id: str | None = None) -> list[RetryRow]:
    """Every retry job, oldest first, with what it recovered."""
    return [
        RetryRow(
            job_id=job.job_id,
            retry_of_job_id=job.retry_of_job_id or "",
            created_at=job.created_at,
            status=job.status,
            retried_items=job.total_items,
            recovered=job.success_count,
            still_failed=job.error_count,
            pending=job.pending_count,
            recovery_rate=job.success_rate,
        )
        for job in jobs_overview(session, workspace_id=workspace_id)
        if job.is_retry
    ]
