"""Recording the robot's results: the portal's truth wins.

An item's terminal status has an author (`resolved_by`). The robot speaks for the portal; robotjobs only closes
items by its own judgement (coverage rejection, dispatch refused or unknown, deadline, withdrawal). So:

| item now                      | robot `success`            | robot `error`                 |
| ---                           | ---                        | ---                           |
| pending                       | success  (+1 success)      | error  (+1 error)             |
| error, resolved by robotjobs  | success  (-1 error +1 succ)| error, robot's reason (±0)    |
| success or error by the robot | unchanged (first wins)     | unchanged (first wins)        |

That table is the WHERE clause of one guarded UPDATE (`_ADMISSIBLE`), not Python branching: two writers can
never both win an item. Counter deltas come from the item's state read under the job's row lock.

One code path serves the per-order callback and the batch report. Lock order is always job row, then items, then
other jobs' rows (withdrawals), then orders (as in `fail_job`), so writers never deadlock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import and_, bindparam, or_, select, update
from sqlmodel import Session, col

from domain import outbox
from domain.batches.jobs import ALL_FAILED_REASON, correct_finished_job, finish_or_count, withdraw_unsent_items
from domain.db import bulk_update, unnest
from domain.errors import ItemNotInJob, UnknownItem, UnknownJob
from domain.events import OrderFields, RobotCoordCompleted
from domain.models import (
    COORDINADORA,
    FINISHED_JOB_STATUSES,
    ErrorType,
    ItemStatus,
    ResolvedBy,
    RobotJob,
    RobotJobItem,
    table_of,
    utcnow,
)
from domain.orders.changes import ship_orders

ROBOT_ERROR_TYPES = (ErrorType.VALIDATION, ErrorType.PORTAL, ErrorType.TIMEOUT, ErrorType.UNKNOWN)
MAX_ERROR_MESSAGE = 1000
MAX_TRACKING_NUMBER = 100
TRUNCATED = "… [mensaje truncado]"


class ItemResult(BaseModel):
    """One order's result as recorded: already normalised (see `normalise_result`)."""

    item_id: str = Field(min_length=1, max_length=64, description="The robot_job_items id we sent as itemId")
    status: Literal["success", "error"] = Field(description="success or error")
    tracking_number: str | None = Field(
        default=None,
        max_length=MAX_TRACKING_NUMBER,
        description="Courier pedido number; None when the robot created the order but could not read its number",
    )
    error_type: Literal["validation", "portal", "timeout", "unknown"] | None = Field(
        default=None, description="Kind of error: validation, portal, timeout or unknown"
    )
    error_message: str | None = Field(default=None, max_length=MAX_ERROR_MESSAGE, description="Spanish, for operators")

    @model_validator(mode="after")
    def _one_shape_per_status(self) -> ItemResult:
        # However built (normalise_result, demo data, tests): a success carries no error, an error no pedido number
        # and always a kind. A success without a number stays a success (see `pedido_label`), never refused.
        if self.status == "success":
            self.error_type = self.error_message = None
        else:
            self.tracking_number = None
            self.error_type = self.error_type or "unknown"
        return self


# What operators read for a success whose pedido number the robot could not read (the order exists on the portal).
UNKNOWN_PEDIDO = "número de pedido desconocido"


def pedido_label(tracking_number: str | None) -> str:
    """A success's pedido number as operators read it: the number, or `UNKNOWN_PEDIDO` when it is unknown."""
    return tracking_number or UNKNOWN_PEDIDO


def _clean(text: Any) -> str:
    # PostgreSQL text cannot hold NUL; nothing else in a robot's text is ours to refuse.
    return str(text).replace("\x00", "").strip()


def normalise_result(
    *, item_id: str, status: str, tracking_number: Any = None, error_type: Any = None, error_message: Any = None
) -> ItemResult:
    """An authenticated robot result as we record it: lenient on what can be understood.

    The robot never retries, so refusing an honest but unusual field loses a real outcome. Unknown `errorType` →
    `unknown`, its original value kept in the message; over-long message → truncated; tracking number trimmed;
    `success` without a tracking number → a success whose pedido number is unknown (the order exists on the portal).
    """
    if status == ItemStatus.SUCCESS:
        tracking = _clean(tracking_number) if tracking_number is not None else ""
        return ItemResult(item_id=item_id, status="success", tracking_number=tracking[:MAX_TRACKING_NUMBER] or None)
    message = _clean(error_message) if error_message is not None else ""
    kind = _clean(error_type).lower() if error_type is not None else ""
    if kind not in ROBOT_ERROR_TYPES:
        if kind:
            message = f"[errorType del robot: {_clean(error_type)[:100]}] {message}".strip()
        kind = ErrorType.UNKNOWN.value
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - len(TRUNCATED)] + TRUNCATED
    return ItemResult(item_id=item_id, status="error", error_type=kind, error_message=message or None)


_ITEMS = table_of(RobotJobItem)
_JOBS = table_of(RobotJob)
# Built once: on the per-callback path, building and hashing a statement per call is CPU spent under the job's lock.
_ITEM_AUTH = (
    select(
        _ITEMS.c.id, _JOBS.c.id, _JOBS.c.workspace_id, _JOBS.c.callback_secret_hash, _JOBS.c.status, _JOBS.c.flow_run_id
    )  # fmt: skip
    .join(_JOBS, _JOBS.c.id == _ITEMS.c.job_id)
    .where(_ITEMS.c.id == bindparam("item_id"))
)
_ITEM_AUTH_LOCKING = _ITEM_AUTH.with_for_update(of=_JOBS)


@functools.cache
def _item_auth_sql(dialect: Any, lock: bool) -> str:
    """`_ITEM_AUTH(_LOCKING)` rendered once per dialect, its one parameter `item_id` in the driver's style."""
    return str((_ITEM_AUTH_LOCKING if lock else _ITEM_AUTH).compile(dialect=dialect))


@dataclass(frozen=True)
class ItemAuth:
    """What the webhook needs to authenticate a per-order callback, which names only the item."""

    item_id: str
    job_id: str
    workspace_id: str
    callback_secret_hash: str | None
    # With `lock=True`: the job's row is locked by this transaction and these are its status and run.
    job_status: str | None = None
    flow_run_id: str | None = None


@dataclass(frozen=True)
class RecordOutcome:
    item_id: str
    job_id: str
    changed: bool
    item_status: str
    job_finished: bool
    job_status: str
    job_corrected: bool = False
    flow_run_id: str | None = None


@dataclass(frozen=True)
class BatchOutcome:
    job_id: str
    outcomes: list[RecordOutcome]
    job_finished: bool
    job_status: str
    job_corrected: bool = False  # a finished job changed: its summary must be republished
    flow_run_id: str | None = None

    @property
    def changed_count(self) -> int:
        return sum(1 for o in self.outcomes if o.changed)


def get_item_auth(session: Session, item_id: str, *, lock: bool = False) -> ItemAuth:
    """Who may report on an item. `lock=True` (a writer about to record it) also locks the item's job row and
    reads its state in the same statement, so `record_item_result(..., locked=auth)` needs no second round trip;
    a refused caller's transaction rolls back and releases the lock at once."""
    # As driver SQL on the session's connection: neither the ORM's execution path (its context, events and result
    # wrapping) nor Core's (statement cache lookup, parameter processing) for a statement that loads no entity:
    # ~0.1 ms of CPU per callback each (py-spy, BENCHMARKS.md rounds 5 and 8).
    connection = session.connection()
    sql = _item_auth_sql(connection.dialect, lock)
    params = (item_id,) if connection.dialect.positional else {"item_id": item_id}
    row = connection.exec_driver_sql(sql, params).first()
    if row is None:
        raise UnknownItem("Ítem desconocido", item_id=item_id)
    return ItemAuth(item_id=row[0], job_id=row[1], workspace_id=row[2], callback_secret_hash=row[3],
                    job_status=row[4] if lock else None, flow_run_id=row[5] if lock else None)  # fmt: skip


def record_item_result(
    session: Session,
    result: ItemResult,
    *,
    job_id: str | None = None,
    now: datetime | None = None,
    locked: ItemAuth | None = None,
) -> RecordOutcome:
    """Record one callback. With `job_id` (the job the caller authenticated for) the item must belong to it.
    `locked`: this item's `get_item_auth(..., lock=True)` in this transaction (the job row is locked already)."""
    if locked is not None and locked.item_id == result.item_id and locked.job_status is not None:
        owner, status, flow_run_id = locked.job_id, locked.job_status, locked.flow_run_id
    else:
        # The item's job and that job's row lock in one statement (the item's job_id never changes).
        auth = get_item_auth(session, result.item_id, lock=True)
        assert auth.job_status is not None  # lock=True reads the job's status with its row lock
        owner, status, flow_run_id = auth.job_id, auth.job_status, auth.flow_run_id
    if job_id is not None and owner != job_id:
        raise ItemNotInJob("El ítem no pertenece a este trabajo", item_id=result.item_id, job_id=job_id)
    if status not in FINISHED_JOB_STATUSES and session.get_bind().dialect.name == "postgresql":
        return _record_one_pg(session, owner, status, flow_run_id, result, now or utcnow())
    return _record(session, owner, status, flow_run_id, [result], now or utcnow()).outcomes[0]


# PostgreSQL, one result of an active job whose row this transaction has locked: the whole callback in one statement
# (one round trip while the job's row lock is held, then the commit), with the meaning of `_record` for one item:
# - `b`/`u`: the item's state before and the guarded transition (`_ADMISSIBLE`);
# - `j`: counters and the completion check of `finish_or_count` (the same rule as `_outcome`: completed once the
#   robot created an order, else failed with ALL_FAILED_REASON), only when the item changed;
# - `ship` → `old` → `ou`: a first robot success of an order no other job shipped or still holds pending locks the
#   order, sets carrier and tracking number where they change (`ship_orders`' `_SHIP_PG`);
# - `ev`: the events with the payloads `domain.events` defines, built from the rows above: robot.batch.completed
#   when the job finished now, field.changed per changed field (carrier, then tracking_number; the order after the
#   change), robot.coord.completed (the order as shipped: the robot's tracking number, "" when it sent none).
# An order another job still holds pending is left to Python (`_ship_orders` withdraws those items first, keeping the
# lock order job → items → other jobs → orders): the final SELECT returns what it needs. Every CTE reads the
# statement's snapshot, taken after the job's row lock was granted (get_item_auth's statement).
# tests/domain/test_events.py compares these payloads with the pre-typed ones; tests/domain/test_results.py and
# test_portal_truth.py run the transitions through this statement on PostgreSQL.
_RECORD_ONE_PG = """
WITH b AS (
  SELECT id, order_id, status, resolved_by FROM robot_job_items WHERE id = %(item_id)s AND job_id = %(job_id)s
),
u AS (
  UPDATE robot_job_items SET status = %(status)s, tracking_number = %(tracking)s, error_type = %(error_type)s,
    error_message = %(error_message)s, resolved_by = %(by)s, completed_at = %(now)s, updated_at = %(now)s
  FROM b WHERE robot_job_items.id = b.id AND ({guard})
  RETURNING b.order_id, b.status AS before
),
d AS (
  SELECT jb.id, s, e, jb.status IN ('pending', 'processing')
      AND jb.success_count + s + jb.error_count + e >= jb.total_items AS done, jb.success_count + s > 0 AS created
  FROM (SELECT CASE WHEN %(status)s = 'success' THEN 1 ELSE 0 END AS s,
    CASE WHEN %(status)s = 'error' AND u.before = 'pending' THEN 1
         WHEN %(status)s = 'success' AND u.before = 'error' THEN -1 ELSE 0 END AS e FROM u) k,
    robot_jobs jb WHERE jb.id = %(job_id)s
),
j AS (
  UPDATE robot_jobs SET status = CASE WHEN NOT done THEN status WHEN created THEN 'completed' ELSE 'failed' END,
    failure_reason = CASE WHEN NOT done THEN failure_reason WHEN created THEN NULL ELSE %(all_failed)s END,
    finished_at = CASE WHEN done THEN %(now)s ELSE finished_at END,
    updated_at = CASE WHEN done OR s <> 0 OR e <> 0 THEN %(now)s ELSE updated_at END,
    success_count = success_count + s, error_count = error_count + e
  FROM d WHERE robot_jobs.id = d.id
  RETURNING status, workspace_id, flow_run_id, success_count, error_count, total_items
),
x AS (
  SELECT u.order_id,
    EXISTS (SELECT 1 FROM robot_job_items s WHERE s.order_id = u.order_id AND s.job_id <> %(job_id)s
      AND s.status = 'success') AS shipped,
    ARRAY(SELECT DISTINCT s.job_id FROM robot_job_items s WHERE s.order_id = u.order_id AND s.job_id <> %(job_id)s
      AND s.status = 'pending' ORDER BY s.job_id) AS holders
  FROM u WHERE %(status)s = 'success'
),
old AS (
  SELECT o.* FROM orders o JOIN x ON x.order_id = o.id WHERE NOT x.shipped AND cardinality(x.holders) = 0
  FOR UPDATE OF o
),
ou AS (
  UPDATE orders SET carrier = %(carrier)s, tracking_number = COALESCE(%(tracking)s, old.tracking_number),
    updated_at = %(now)s
  FROM old WHERE orders.id = old.id AND (old.carrier IS DISTINCT FROM %(carrier)s
    OR (%(tracking)s IS NOT NULL AND old.tracking_number IS DISTINCT FROM %(tracking)s))
),
ctx AS (
  SELECT old.id, old.workspace_id, old.tracking_number AS old_tracking, old.carrier AS old_carrier,
    json_build_object('id', c.id, 'name', c.name, 'phone', c.phone, 'email', c.email) AS contact,
    old.name, old.total_value::text AS total_value, old.shipping_address, old.shipping_city,
    old.shipping_department, old.pipeline_id, old.stage_id,
    CASE WHEN json_typeof(old.tags) = 'null' THEN '[]'::json ELSE old.tags END AS tags,
    CASE WHEN json_typeof(old.custom_fields) = 'null' THEN '{{}}'::json ELSE old.custom_fields END AS custom_fields
  FROM old LEFT JOIN contacts c ON c.id = old.contact_id
),
o AS (
  SELECT ctx.*, {order_after} AS after, {order_shipped} AS shipped FROM ctx
),
ev AS (
  INSERT INTO outbox_events (event_id, event_type, consumer, workspace_id, aggregate_id, payload, depth, created_at,
    available_at, attempts)
  SELECT gen_random_uuid()::text, e.event_type, e.consumer, e.workspace_id, e.aggregate_id, e.payload, 0, %(now)s,
    %(now)s, 0
  FROM (
    SELECT 1 AS n, 'robot.batch.completed' AS event_type, 'resume' AS consumer, j.workspace_id,
      %(job_id)s AS aggregate_id, json_build_object('job_id', %(job_id)s, 'flow_run_id', j.flow_run_id,
      'status', j.status, 'success_count', j.success_count, 'error_count', j.error_count,
      'total_items', j.total_items) AS payload
    FROM j WHERE j.status IN ('completed', 'failed')
    UNION ALL
    SELECT 2, 'field.changed', 'automations', o.workspace_id, o.id, json_build_object('field', 'carrier',
      'old_value', o.old_carrier, 'new_value', %(carrier)s, 'order', o.after, 'contact', o.contact)
    FROM o WHERE o.old_carrier IS DISTINCT FROM %(carrier)s
    UNION ALL
    SELECT 3, 'field.changed', 'automations', o.workspace_id, o.id, json_build_object('field', 'tracking_number',
      'old_value', o.old_tracking, 'new_value', %(tracking)s, 'order', o.after, 'contact', o.contact)
    FROM o WHERE %(tracking)s IS NOT NULL AND o.old_tracking IS DISTINCT FROM %(tracking)s
    UNION ALL
    SELECT 4, 'robot.coord.completed', 'automations', o.workspace_id, o.id, json_build_object('job_id', %(job_id)s,
      'item_id', %(item_id)s, 'order', o.shipped, 'contact', o.contact)
    FROM o
  ) e ORDER BY e.n
)
SELECT b.status, u.order_id IS NOT NULL, j.status, x.shipped, x.holders, b.order_id
FROM (SELECT 1) one LEFT JOIN b ON true LEFT JOIN u ON true LEFT JOIN j ON true LEFT JOIN x ON true
"""


def _order_json(tracking: str) -> str:
    # The keys and order of domain.events.OrderFields (domain.orders.changes.event_context), from `ctx`'s columns.
    return (
        f"(SELECT row_to_json(r) FROM (SELECT id, name, total_value, {tracking} AS tracking_number, "
        "CAST(%(carrier)s AS TEXT) AS carrier, shipping_address, shipping_city, shipping_department, pipeline_id, "
        "stage_id, tags, custom_fields) r)"
    )


@functools.cache
def record_one_pg_sql(dialect: Any) -> str:
    """The record statement (`_RECORD_ONE_PG`) for `dialect`, as the text sent: also report_one.py's function body."""
    sql = _RECORD_ONE_PG.format(
        guard=_literal_sql(_ADMISSIBLE, dialect),
        order_after=_order_json("COALESCE(%(tracking)s, ctx.old_tracking)"),
        order_shipped=_order_json("COALESCE(%(tracking)s, '')"),
    )
    # One line, single spaces (no literal in it holds two): less text to convert, send and parse per callback.
    # ~5,100 characters: over psycopg's default conversion cache limit (4,096), which domain/db.py raises.
    return " ".join(sql.split())


def _record_one_pg(
    session: Session, job_id: str, job_status_before: str, flow_run_id: str | None, result: ItemResult, now: datetime
) -> RecordOutcome:
    """`_record` of one result of an active job, on PostgreSQL, in one statement (`_RECORD_ONE_PG`)."""
    params = {**record_one_params(result, now), "job_id": job_id}
    connection = session.connection()
    row = connection.exec_driver_sql(record_one_pg_sql(connection.dialect), params).one()
    before, applied, job_status, shipped, holders, order_id = row
    if before is None:  # not this job's item (the caller locked the item's own job: only a broken invariant)
        raise ItemNotInJob("Hay ítems que no pertenecen a este trabajo", item_ids=[result.item_id], job_id=job_id)
    if applied and holders:
        # Other jobs still hold this order unsent: withdraw them, then ship, in the usual lock order.
        elsewhere = {order_id: _Elsewhere(shipped=bool(shipped), holders=list(holders))}
        _ship_orders(session, job_id, [(result.item_id, order_id, result.tracking_number)], now, elsewhere)
    return one_result_outcome(
        result,
        job_id=job_id,
        job_status_before=job_status_before,
        flow_run_id=flow_run_id,
        item_before=before,
        applied=bool(applied),
        job_status=job_status,
    )


def record_one_params(result: ItemResult, now: datetime) -> dict[str, Any]:
    """The record statement's parameters for `result`, all but its key: the caller adds `job_id` (the statement
    above) or `secret_hash` (report_one.py's function, which finds the job itself)."""
    return {
        "item_id": result.item_id,
        "status": result.status,
        "tracking": result.tracking_number,
        "error_type": result.error_type,
        "error_message": result.error_message,
        "by": ResolvedBy.ROBOT.value,
        "now": now,
        "carrier": COORDINADORA,
        "all_failed": ALL_FAILED_REASON,
    }


def one_result_outcome(
    result: ItemResult,
    *,
    job_id: str,
    job_status_before: str,
    flow_run_id: str | None,
    item_before: str,
    applied: bool,
    job_status: str,
) -> RecordOutcome:
    """The outcome of the record statement's row: what changed, or what stood when nothing did."""
    return RecordOutcome(
        item_id=result.item_id,
        job_id=job_id,
        changed=applied,
        item_status=result.status if applied else item_before,
        job_finished=applied and job_status in FINISHED_JOB_STATUSES,
        job_status=job_status if applied else job_status_before,
        flow_run_id=flow_run_id,
    )


# The transition table of the module docstring, as SQL: a robot result may land on a pending item or on an
# error that robotjobs decided; never on anything the robot itself already reported.
_ADMISSIBLE = or_(
    _ITEMS.c.status == ItemStatus.PENDING.value,
    and_(_ITEMS.c.status == ItemStatus.ERROR.value, _ITEMS.c.resolved_by == ResolvedBy.ROBOTJOBS.value),
)


@dataclass(frozen=True)
class _Before:
    order_id: str
    status: str
    resolved_by: str | None


def record_batch_results(
    session: Session, job_id: str, results: list[ItemResult], *, now: datetime | None = None
) -> BatchOutcome:
    """Record many results of one job in one transaction; a result for another job's item refuses the whole batch."""
    status, flow_run_id = _lock_job(session, job_id)
    return _record(session, job_id, status, flow_run_id, results, now or utcnow())


def _record(
    session: Session,
    job_id: str,
    job_status_before: str,
    flow_run_id: str | None,
    results: list[ItemResult],
    now: datetime,
) -> BatchOutcome:
    """The results of one job whose row this transaction has locked."""
    # Within a request, as across requests, the robot's first result for an item is the one that counts.
    first: dict[str, ItemResult] = {}
    for result in results:
        first.setdefault(result.item_id, result)
    elsewhere: dict[str, _Elsewhere] | None = None
    if session.get_bind().dialect.name == "postgresql":
        before, applied, elsewhere = _write_items_returning(session, job_id, list(first.values()), now)
    else:
        before = _read_before(session, job_id, list(first))
    strangers = [item_id for item_id in first if item_id not in before]
    if strangers:  # on PostgreSQL the update already happened: raising rolls the transaction back
        raise ItemNotInJob("Hay ítems que no pertenecen a este trabajo", item_ids=strangers, job_id=job_id)
    if elsewhere is None:
        applied = _write_items(session, list(first.values()), before, now)
    successes = [first[i] for i in applied if first[i].status == ItemStatus.SUCCESS.value]
    success_delta = len(successes)
    error_delta = sum(
        1 for i in applied if first[i].status == ItemStatus.ERROR.value and before[i].status == ItemStatus.PENDING
    )
    # A success over our own closure takes that error back.
    error_delta -= sum(1 for r in successes if before[r.item_id].status == ItemStatus.ERROR)

    finished = corrected = False
    job_status = job_status_before
    if applied and job_status_before not in FINISHED_JOB_STATUSES:
        # Counters and the completion check in one guarded UPDATE; the event payload from what it returns.
        job = finish_or_count(session, job_id, success_delta=success_delta, error_delta=error_delta, now=now)
        job_status, finished = job.status, job.finished_now
    elif success_delta or error_delta:
        session.execute(
            update(RobotJob)
            .where(col(RobotJob.id) == job_id)
            .values(
                success_count=RobotJob.success_count + success_delta,
                error_count=RobotJob.error_count + error_delta,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    if successes:
        shipped = [(r.item_id, before[r.item_id].order_id, r.tracking_number) for r in successes]
        _ship_orders(session, job_id, shipped, now, elsewhere)
    if applied and job_status_before in FINISHED_JOB_STATUSES:
        corrected = correct_finished_job(session, job_id, now=now)
        job_status = session.execute(select(_JOBS.c.status).where(_JOBS.c.id == job_id)).scalar_one()
    final_status = {item_id: b.status for item_id, b in before.items()}
    final_status.update({item_id: first[item_id].status for item_id in applied})
    outcomes, seen, applied_ids = [], set(), set(applied)  # a set: `in` over the list was quadratic in the report
    for result in results:
        changed = result.item_id in applied_ids and result.item_id not in seen
        seen.add(result.item_id)
        outcomes.append(
            RecordOutcome(
                item_id=result.item_id,
                job_id=job_id,
                changed=changed,
                item_status=final_status[result.item_id],
                job_finished=finished,
                job_status=job_status,
                job_corrected=corrected,
                flow_run_id=flow_run_id,
            )
        )
    return BatchOutcome(
        job_id=job_id,
        outcomes=outcomes,
        job_finished=finished,
        job_status=job_status,
        job_corrected=corrected,
        flow_run_id=flow_run_id,
    )


def _lock_job(session: Session, job_id: str) -> tuple[str, str | None]:
    # FOR UPDATE on PostgreSQL; on SQLite BEGIN IMMEDIATE already holds the write lock.
    row = session.execute(
        select(_JOBS.c.status, _JOBS.c.flow_run_id).where(_JOBS.c.id == job_id).with_for_update()
    ).first()
    if row is None:
        raise UnknownJob(f"Trabajo de robot desconocido: {job_id}", job_id=job_id)
    return row[0], row[1]


def _read_before(session: Session, job_id: str, ids: list[str]) -> dict[str, _Before]:
    """The named items of this job as they are before the update (SQLite: in process, a read costs no round trip)."""
    return {
        item_id: _Before(order_id, status, resolved_by)
        for item_id, owner, order_id, status, resolved_by in session.execute(
            select(_ITEMS.c.id, _ITEMS.c.job_id, _ITEMS.c.order_id, _ITEMS.c.status, _ITEMS.c.resolved_by).where(
                _ITEMS.c.id.in_(ids)
            )
        )
        if owner == job_id
    }


@dataclass(frozen=True)
class _Elsewhere:
    """An order's items in other jobs, for an item this transaction just made a success."""

    shipped: bool  # another job's item of the order is a success already
    holders: list[str]  # the other jobs holding a pending item of the order


# PostgreSQL: the state before, the guarded transition and the order's items elsewhere in one round trip. The CTE
# `b` and the final SELECT see the snapshot before the UPDATE; the UPDATE's guard (`_ADMISSIBLE`) judges each row as
# it is, which under the job's row lock is the same state. Only the job's own items are updated; a stranger is
# found from `b` and raises (rolling everything back).
_WRITE_ITEMS_PG = """
WITH v AS (SELECT * FROM {arrays} AS v(id, status, tracking_number, error_type, error_message)),
b AS (SELECT i.id, i.job_id, i.order_id, i.status, i.resolved_by FROM robot_job_items i JOIN v ON v.id = i.id),
u AS (
  UPDATE robot_job_items SET status = v.status, tracking_number = v.tracking_number, error_type = v.error_type,
    error_message = v.error_message, resolved_by = %(by)s, completed_at = %(now)s, updated_at = %(now)s
  FROM v WHERE robot_job_items.id = v.id AND robot_job_items.job_id = %(job_id)s AND ({guard})
  RETURNING robot_job_items.id
)
SELECT b.id, b.job_id, b.order_id, b.status, b.resolved_by, u.id IS NOT NULL,
  CASE WHEN u.id IS NOT NULL AND v.status = %(success)s THEN EXISTS (SELECT 1 FROM robot_job_items s
    WHERE s.order_id = b.order_id AND s.job_id <> %(job_id)s AND s.status = %(success)s) END,
  CASE WHEN u.id IS NOT NULL AND v.status = %(success)s THEN ARRAY(SELECT DISTINCT s.job_id FROM robot_job_items s
    WHERE s.order_id = b.order_id AND s.job_id <> %(job_id)s AND s.status = %(pending)s) END
FROM b JOIN v ON v.id = b.id LEFT JOIN u ON u.id = b.id
"""


def _write_items_returning(
    session: Session, job_id: str, results: list[ItemResult], now: datetime
) -> tuple[dict[str, _Before], list[str], dict[str, _Elsewhere]]:
    """PostgreSQL: (this job's named items before, the ids changed in request order, other jobs' items of the
    orders shipped now) from one statement."""
    dialect = session.get_bind().dialect
    arrays, params = unnest(dialect, _ITEMS, ["id", "status", "tracking_number", "error_type", "error_message"],
                            [_item_values(r) for r in results])  # fmt: skip
    guard = _literal_sql(_ADMISSIBLE, dialect)
    params.update(by=ResolvedBy.ROBOT.value, now=now, job_id=job_id, success=ItemStatus.SUCCESS.value,
                  pending=ItemStatus.PENDING.value)  # fmt: skip
    rows = session.connection().exec_driver_sql(_WRITE_ITEMS_PG.format(arrays=arrays, guard=guard), params).all()
    before, changed, elsewhere = {}, set(), {}
    for item_id, owner, order_id, status, resolved_by, applied, shipped, holders in rows:
        if owner != job_id:
            continue
        before[item_id] = _Before(order_id, status, resolved_by)
        if applied:
            changed.add(item_id)
        if shipped is not None:
            elsewhere[order_id] = _Elsewhere(shipped=shipped, holders=list(holders))
    return before, [r.item_id for r in results if r.item_id in changed], elsewhere


@functools.cache
def _literal_sql(clause: Any, dialect: Any) -> str:
    return str(clause.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _item_values(r: ItemResult) -> dict[str, Any]:
    """The columns a robot result sets on its item (besides who resolved it and when); `ItemResult` holds the shape."""
    return {
        "id": r.item_id,
        "status": r.status,
        "tracking_number": r.tracking_number,
        "error_type": r.error_type,
        "error_message": r.error_message,
    }


def _admissible(before: _Before) -> bool:
    """Python's reading of `_ADMISSIBLE`, under the job's row lock, to know which items the UPDATE will change."""
    return before.status == ItemStatus.PENDING or (
        before.status == ItemStatus.ERROR and before.resolved_by == ResolvedBy.ROBOTJOBS
    )


def _write_items(session: Session, results: list[ItemResult], before: dict[str, _Before], now: datetime) -> list[str]:
    """The guarded transition for each result; returns the ids it changed, in request order."""
    expected = [r for r in results if _admissible(before[r.item_id])]
    if not expected:
        return []
    rows = [{**_item_values(r), "resolved_by": ResolvedBy.ROBOT.value, "completed_at": now, "updated_at": now}
            for r in expected]  # fmt: skip
    changed = bulk_update(session, _ITEMS, rows, guard=_ADMISSIBLE)
    if changed != len(rows):
        # The job's row lock makes the read above the truth; a mismatch is a broken invariant: roll back.
        raise RuntimeError(f"guarded item update changed {changed} rows, expected {len(rows)}")
    return [r.item_id for r in expected]


SHIP_PART = 1000  # orders shipped (and their outbox rows written) per step of one batch report


def _ship_orders(
    session: Session,
    job_id: str,
    shipped: list[tuple[str, str, str | None]],
    now: datetime,
    elsewhere: dict[str, _Elsewhere] | None = None,
) -> None:
    """Tracking number and carrier through the order-update path, then one robot.coord.completed per order; the
    orders' unsent items in other jobs are withdrawn first.

    An order another item already shipped (a duplicate on the portal) keeps its first tracking number and fires
    no second trigger; the duplicate is shown to operators from the items themselves (domain.batches.summary).
    """
    order_ids = [order_id for _, order_id, _ in shipped]
    if elsewhere is None:
        # Other jobs' items of these orders, read once: pending ones are withdrawn, successes mean "already shipped".
        others = session.execute(
            select(_ITEMS.c.job_id, _ITEMS.c.order_id, _ITEMS.c.status).where(
                _ITEMS.c.order_id.in_(order_ids),
                _ITEMS.c.job_id != job_id,
                _ITEMS.c.status.in_([ItemStatus.PENDING.value, ItemStatus.SUCCESS.value]),
            )
        ).all()
        holders = sorted({holder for holder, _, status in others if status == ItemStatus.PENDING})
        already = {order_id for _, order_id, status in others if status == ItemStatus.SUCCESS}
    else:
        holders = sorted({holder for other in elsewhere.values() for holder in other.holders})
        already = {order_id for order_id, other in elsewhere.items() if other.shipped}
    if holders:
        withdraw_unsent_items(session, order_ids, job_id=job_id, now=now, holders=holders)
    first_time = [(item_id, order_id, tracking) for item_id, order_id, tracking in shipped if order_id not in already]
    # In parts: the order rows, contexts and outbox payloads of a whole report (3 rows per order) held at once grew
    # the webhook worker's heap for good (glibc keeps the arenas); a part's are freed before the next is built.
    # By order id, as one statement locks them: the parts take the orders' row locks in the same global order.
    first_time.sort(key=lambda shipped_item: shipped_item[1])
    for start in range(0, len(first_time), SHIP_PART):
        part = first_time[start : start + SHIP_PART]
        _, contexts, events = ship_orders(
            session, {order_id: tracking for _, order_id, tracking in part}, carrier=COORDINADORA, now=now
        )
        for item_id, order_id, tracking in part:
            workspace_id, context = contexts[order_id]
            order: OrderFields = {**context["order"], "tracking_number": tracking or ""}  # empty, not stale: unknown
            event = RobotCoordCompleted(job_id=job_id, item_id=item_id, order=order, contact=context["contact"])
            events.append(outbox.NewEvent(workspace_id, event))
        outbox.add_events(session, events)
        del contexts, events
