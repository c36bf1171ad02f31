"""What the relay publishes while a batch reports: the job's run and counters, and which of the results just recorded
are errors (with their orders' names and reasons).

Read after committed callbacks, about once a second per job and webhook worker (the progress artifact, the run-log
lines), so in Core with statements built once: loading the job as an ORM entity and building the errors query per
call were ~6 % of a webhook worker's samples with Prefect up (py-spy, BENCHMARKS.md round 8).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, String, any_, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

from domain.errors import UnknownJob
from domain.models import ItemStatus, Order, RobotJob, RobotJobItem, table_of

_JOBS = table_of(RobotJob)
_ITEMS = table_of(RobotJobItem)
_ORDERS = table_of(Order)

_COUNTS = select(_JOBS.c.flow_run_id, _JOBS.c.total_items, _JOBS.c.success_count, _JOBS.c.error_count).where(
    _JOBS.c.id == bindparam("job_id")
)


def _errors(named_items: ColumnElement[bool]) -> Select[tuple[str, str | None, str | None]]:
    return (
        select(_ORDERS.c.name, _ITEMS.c.error_type, _ITEMS.c.error_message)
        .join(_ORDERS, _ORDERS.c.id == _ITEMS.c.order_id)
        .where(_ITEMS.c.job_id == bindparam("job_id"), named_items, _ITEMS.c.status == ItemStatus.ERROR.value)
        .order_by(_ORDERS.c.name)
    )


# The item ids as one array parameter on PostgreSQL: an expanding IN rendered one literal-cast placeholder per id
# into the text on every call (a new text each time, so psycopg converted it again too). A flush's reads (counts +
# errors among 50 items), client CPU, alternating trees: 1,648-1,951 -> 1,020-1,323 us
# (benchmarks/results_flush_bench.py, BENCHMARKS.md round 15); a flush runs about every 5 s per job and webhook worker
# while a batch reports. SQLite has no arrays: IN there.
_ERRORS_BY = {
    "postgresql": _errors(_ITEMS.c.id == any_(bindparam("item_ids", type_=postgresql.ARRAY(String)))),
    "sqlite": _errors(_ITEMS.c.id.in_(bindparam("item_ids", expanding=True))),
}
# Items read per errors query (the webhook's after-commit pool remembers as many per waiting task).
MAX_ITEMS = 1000


@dataclass(frozen=True)
class JobCounts:
    flow_run_id: str | None
    total: int
    success: int
    error: int

    @property
    def done(self) -> int:
        return min(self.success + self.error, self.total)


def job_counts(session: Session, job_id: str) -> JobCounts:
    """The job's flow run and counters (raises UnknownJob)."""
    row = session.connection().execute(_COUNTS, {"job_id": job_id}).first()
    if row is None:
        raise UnknownJob(f"Trabajo de robot desconocido: {job_id}", job_id=job_id)
    return JobCounts(flow_run_id=row[0], total=row[1], success=row[2], error=row[3])


def errors_among(session: Session, job_id: str, item_ids: list[str]) -> list[tuple[str, str | None, str | None]]:
    """(order name, error type, reason) of the items among `item_ids` (the first MAX_ITEMS) that are errors of this
    job, by order name."""
    if not item_ids:
        return []
    connection = session.connection()
    rows = connection.execute(_ERRORS_BY[connection.dialect.name], {"job_id": job_id, "item_ids": item_ids[:MAX_ITEMS]})
    return [(name, error_type, message) for name, error_type, message in rows]
