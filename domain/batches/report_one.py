"""A per-order robot result on PostgreSQL in one round trip: `report_item_result`, the webhook's hot path.

The per-job secret's check, the job's row lock, the guarded item update, counters, completion, the order's
tracking number + carrier and the outbox rows are one call of the function `robotjobs_report_one` (created by
migration 0006 from `report_one_function_sql`), run as its own transaction (autocommit). It replaces BEGIN, the
locking auth lookup, the record statement and COMMIT: four round trips, the job's row lock held across the worker's
Python between them. Measured (BENCHMARKS.md round 9): the webhook's CPU per callback 2.12 -> 1.54 ms and req/s
+28 % (`benchmarks/webhook_ab.py`, 6 alternating pairs, 32 senders on 20 jobs).

Why a PL/pgSQL function and not one statement: the record statement's CTEs must read a snapshot taken after the
job's row lock was granted (results.py `_RECORD_ONE_PG`), i.e. a second statement. In a VOLATILE function each
statement takes a fresh snapshot, so the lock and the record stay two statements in one round trip; PL/pgSQL also
keeps the statements' plans for the connection's life (a LANGUAGE sql function planned the 5 KB statement on every
call and was slower than the four round trips).

Everything that is not the plain case answers None and changes nothing, and the caller takes the full path in a
UnitOfWork (webhook/callbacks.py): an unknown item, a secret that is not the job's (it may be the legacy one), a
finished job (portal truth corrections), an order another job still holds pending (withdrawn in Python first: the
function raises RJ001, which rolls its transaction back). SQLite, and a database whose function is missing or
differs from this code's (migrations not run), always take the full path.
"""

from __future__ import annotations

import functools
import logging
import re
import weakref
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from domain.batches.results import ItemResult, RecordOutcome, one_result_outcome, record_one_params, record_one_pg_sql
from domain.models import utcnow

log = logging.getLogger("domain.report_one")

FUNCTION = "robotjobs_report_one"
HELD_ELSEWHERE = "RJ001"  # SQLSTATE the function raises to undo a result whose order other jobs still hold

# The secret is compared in SQL, as hashes: the caller's secret is hashed (SHA-256) before it is sent, so a timing
# difference could only tell how much of the stored hash a guess's hash shares, which does not help to find a secret.
# `#variable_conflict use_column`: the statement's column names (job_id, status, ...) are also this function's
# output columns.
_FUNCTION_BODY = """
#variable_conflict use_column
DECLARE
  a record; p_job_id text; v_before text; v_applied boolean; v_job_status text; v_shipped boolean;
  v_holders text[]; v_order_id text;
BEGIN
  SELECT i.job_id, j.callback_secret_hash, j.status, j.flow_run_id INTO a
    FROM robot_job_items i JOIN robot_jobs j ON j.id = i.job_id WHERE i.id = p_item_id FOR UPDATE OF j;
  IF NOT FOUND OR a.callback_secret_hash IS DISTINCT FROM p_secret_hash OR a.status NOT IN ('pending', 'processing')
  THEN
    RETURN;
  END IF;
  p_job_id := a.job_id;
  {record} INTO v_before, v_applied, v_job_status, v_shipped, v_holders, v_order_id;
  IF v_applied AND cardinality(v_holders) > 0 THEN
    RAISE EXCEPTION USING ERRCODE = '{held}', MESSAGE = 'the order is held by other jobs';
  END IF;
  RETURN QUERY SELECT a.job_id::text, a.status::text, a.flow_run_id::text, v_before, v_applied, v_job_status;
END
"""

_SIGNATURE = (
    "p_item_id text, p_secret_hash text, p_status text, p_tracking text, p_error_type text, p_error_message text, "
    "p_by text, p_now timestamptz, p_carrier text, p_all_failed text"
)
_RETURNS = (
    "TABLE(job_id text, job_status_before text, flow_run_id text, item_before text, applied boolean, job_status text)"
)


@functools.cache
def function_body(dialect: Any) -> str:
    """The PL/pgSQL body: results.py's record statement, its `%(name)s` parameters as the function's `p_name`."""
    record = re.sub(r"%\((\w+)\)s", r"p_\1", record_one_pg_sql(dialect))
    return _FUNCTION_BODY.format(record=record, held=HELD_ELSEWHERE)


def report_one_function_sql(dialect: Any) -> str:
    """CREATE OR REPLACE of the function (migration 0006, and any later migration that changes the statement)."""
    return (
        f"CREATE OR REPLACE FUNCTION {FUNCTION}({_SIGNATURE}) RETURNS {_RETURNS} LANGUAGE plpgsql VOLATILE "
        f"AS $robotjobs${function_body(dialect)}$robotjobs$"
    )


_CALL = (
    f"SELECT * FROM {FUNCTION}(%(item_id)s, %(secret_hash)s, %(status)s, %(tracking)s, %(error_type)s, "
    "%(error_message)s, %(by)s, %(now)s, %(carrier)s, %(all_failed)s)"
)

# Per engine: whether the database can take this path (the function is there, and is this code's).
_usable: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def usable_by(engine: Engine) -> bool:
    """Whether `report_item_result` can record on `engine` (PostgreSQL with this code's function installed); read
    once per engine. False: every result takes the full path."""
    if engine in _usable:
        return _usable[engine]
    usable = False
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            found = connection.exec_driver_sql(
                "SELECT prosrc FROM pg_proc WHERE proname = %(name)s", {"name": FUNCTION}
            ).scalar()
        usable = found == function_body(engine.dialect)
        if not usable:
            log.warning("%s %s: per-order results take the full path (run the migrations)", FUNCTION,
                        "is missing" if found is None else "differs from this code's")  # fmt: skip
    _usable[engine] = usable
    return usable


def _call(engine: Engine, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """One call of the function on a connection of `engine`'s pool, its driver in autocommit for the call only.

    The pool's own connection, without SQLAlchemy's `Connection` around it: its execution machinery cost more client
    CPU than the call's own (BENCHMARKS.md round 14). What it would do here is done here: a driver error comes out as
    SQLAlchemy's exception for it (`DBAPIError.instance`, the `OperationalError` the webhook spools on), and a
    disconnect invalidates the pool's connections of that generation, as SQLAlchemy does.
    Not `execution_options(isolation_level="AUTOCOMMIT")`: SQLAlchemy then set the isolation level's characteristics
    on checkout and reset them on checkin (200-232 us of client CPU per call against 138-178 without, round 13).
    Not an autocommit engine of its own either: its pool doubled a webhook worker's server connections (4 workers:
    16 -> 31 under load, in pg_stat_activity). psycopg switches autocommit without a round trip, on an idle
    connection, which the pool's reset on return guarantees."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        pooled = engine.raw_connection()
    except dbapi_error as exc:
        # The pool hands a failed connect over as the driver's error (`Engine.connect` translates it; this is not
        # `Engine.connect`): a server down must still come out as SQLAlchemy's OperationalError, which is spooled.
        raise DBAPIError.instance(None, None, exc, dbapi_error, dialect=engine.dialect) from exc
    driver: Any = pooled.dbapi_connection
    try:
        try:
            driver.autocommit = True
            row: tuple[Any, ...] | None = driver.execute(_CALL, params).fetchone()
            return row
        except dbapi_error as exc:
            disconnected = engine.dialect.is_disconnect(exc, driver, None)
            if disconnected:
                # As SQLAlchemy's Connection does on a disconnect: every connection of this one's generation is
                # stale (a restarted server dropped them all), so each is replaced on checkout instead of failing
                # one more callback; this one is invalidated now.
                engine.pool._invalidate(pooled, exc)
            raise DBAPIError.instance(
                _CALL, params, exc, dbapi_error, connection_invalidated=disconnected, dialect=engine.dialect
            ) from exc
        finally:
            if pooled.is_valid:
                try:
                    driver.autocommit = False
                except dbapi_error:
                    # A connection the server dropped after the call: discard it rather than mask the caller's error.
                    pooled.invalidate()
    finally:
        pooled.close()  # back to the pool (its reset on return), or away if invalidated


def report_item_result(
    engine: Engine, result: ItemResult, secret_hash: str, *, now: datetime | None = None
) -> RecordOutcome | None:
    """Record `result` if `secret_hash` is its job's and the case is plain (see the module): its own transaction.
    None when it changed nothing and the caller must take the full path."""
    if not usable_by(engine):
        return None
    params = {**record_one_params(result, now or utcnow()), "secret_hash": secret_hash}
    try:
        row = _call(engine, params)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == HELD_ELSEWHERE:
            return None
        raise
    if row is None:
        return None
    job_id, status_before, flow_run_id, item_before, applied, job_status = row
    return one_result_outcome(
        result,
        job_id=job_id,
        job_status_before=status_before,
        flow_run_id=flow_run_id,
        item_before=item_before,
        applied=bool(applied),
        job_status=job_status,
    )
