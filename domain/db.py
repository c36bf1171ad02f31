"""Database engines and the unit of work: the one transaction boundary of every use case."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON, ColumnElement, Engine, Table, bindparam, create_engine, event, exc
from sqlalchemy.engine import URL, Connection, Dialect, make_url
from sqlmodel import Session


def json_text(value: Any) -> str:
    """The JSON text a JSON column stores: orjson's, or json's for what orjson refuses (an int beyond 64 bits, a
    key that is not a string), so both accept and refuse the same values; only NaN and infinities, which json wrote
    as `NaN` (text PostgreSQL's JSON refuses), are written `null`. A 10,000-result batch report writes
    30,000 outbox payloads: json.dumps took ~0.2 s of it, orjson ~0.02 s (BENCHMARKS.md round 13)."""
    try:
        return orjson.dumps(value, option=_AS_JSON_DOES).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value)


# What json.dumps refuses, orjson must too (it would write datetimes and dataclasses): handed to its `default`,
# which there is none of, so they raise and json.dumps refuses them as before.
_AS_JSON_DOES = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    """An engine for SQLite (WAL, `BEGIN IMMEDIATE` writers) or PostgreSQL (psycopg 3)."""
    url = make_url(database_url)
    kwargs.setdefault("json_serializer", json_text)
    if url.get_backend_name() != "sqlite":
        # No ping per checkout (a round trip on every callback). A busy connection is known alive; one idle for
        # longer than IDLE_PING_S is pinged on checkout (a restarted server or a dropped link is then found before
        # the request uses it); a disconnect seen on any statement invalidates the whole pool (SQLAlchemy's default),
        # and connections older than `pool_recycle` are replaced.
        kwargs.setdefault("pool_recycle", 1800)
        # A server that does not answer (a dropped link, not a refused port) must fail fast, not hang a webhook worker
        # past gunicorn's timeout: the callback is then spooled (webhook/callbacks.py) instead of lost with a reset.
        # connect_timeout bounds connecting; TCP keepalives (~11 s) and tcp_user_timeout (10 s of unacknowledged
        # data) end a statement whose server vanished. A busy server still answers keepalive probes.
        connect_args: dict[str, Any] = {
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        }
        if url.get_driver_name() == "psycopg":
            connect_args["options"] = _session_options(url)
            kwargs["connect_args"] = {**connect_args, **kwargs.get("connect_args", {})}
            _cache_long_statements()
        engine = create_engine(url, **kwargs)
        _ping_when_idle(engine)
        return engine

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:  # pragma: no cover - exercised by every SQLite test
        # Let SQLAlchemy, not pysqlite, issue BEGIN, so that we can make it IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:  # pragma: no cover - exercised by every SQLite test
        # SQLite has no SELECT ... FOR UPDATE. Taking the write lock at BEGIN serialises writers, so a
        # guarded UPDATE ... RETURNING sees every committed change and read-then-write never races.
        if conn.get_execution_options().get("readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# PostgreSQL's JIT off for this application's sessions. Its statements are short transactions over indexed rows, but a
# batch report's few set-based statements (10,000 rows unnested) are costed past `jit_above_cost`, and compiling them
# cost more than running them: the items' write of a 10,000-result report spent 515 ms of its 933 ms in JIT
# (EXPLAIN ANALYZE, PostgreSQL 15 with LLVM); the whole report 2.89-3.09 s with JIT, 2.01-2.46 s without
# (benchmarks/batch_record_bench.py, BENCHMARKS.md round 16). A server without LLVM never compiles; the setting then
# changes nothing. Sent as a startup option (no round trip), before the URL's own `options`: a `-c jit=...` there wins.
SESSION_OPTIONS = "-c jit=off"


def _session_options(url: URL) -> str:
    given = url.query.get("options")
    if isinstance(given, tuple):
        given = " ".join(given)
    return f"{SESSION_OPTIONS} {given}" if given else SESSION_OPTIONS


# psycopg caches its conversion of a query (`%(name)s` -> `$n`, a regex pass over the text) only for texts up to
# 4,096 bytes. The per-order callback's one statement (domain/batches/results.py `_RECORD_ONE_PG`, ~5,100) was
# converted again on every execution: ~0.2 ms of a webhook worker's CPU per callback (py-spy, BENCHMARKS.md round 5).
# Our statements have fixed texts (arrays, not VALUES lists, for many rows), so a larger limit caches only them.
PSYCOPG_CACHED_STATEMENT_BYTES = 8192


def _cache_long_statements() -> None:
    from psycopg import _queries

    if getattr(_queries, "MAX_CACHED_STATEMENT_LENGTH", None) is not None:
        _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, PSYCOPG_CACHED_STATEMENT_BYTES)


IDLE_PING_S = 10.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except Exception as error:
            # The pool discards this connection and checks out a fresh one (up to three attempts).
            raise exc.DisconnectionError(str(error)) from error


def configure_orm() -> None:
    """Configure the ORM's mappers now. Otherwise the first ORM query of a process does it: a flow run's first step,
    or in a webhook worker a finished job's resume or a batch report in the middle of traffic (~20 ms of CPU under
    the GIL on a quiet machine; ~3 % of the workers' GIL samples in a 2,000-callback window with Prefect up, py-spy).
    Idempotent, and nearly free once done."""
    from sqlalchemy.orm import configure_mappers

    import domain.models  # noqa: F401 - every mapped class is registered before configuring

    configure_mappers()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def bulk_update(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    key: str = "id",
    guard: ColumnElement[bool] | None = None,
) -> int:
    """Set each row's columns on the row whose `key` it names (and which `guard` admits); the number of rows changed.

    PostgreSQL: one `UPDATE ... FROM unnest(<one array per column>)`, whatever the number of rows (a fixed
    statement text: compiled and prepared once, not one VALUES tuple per row to render and parse). SQLite (in
    process, no round trips): one executemany. Every row must name the same columns.
    """
    if not rows:
        return 0
    names = [name for name in rows[0] if name != key]
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        statement = table.update().where(table.c[key] == bindparam(f"k_{key}"))
        if guard is not None:
            statement = statement.where(guard)
        statement = statement.values({name: bindparam(f"v_{name}") for name in names})
        batch = [{f"k_{key}": row[key], **{f"v_{name}": row[name] for name in names}} for row in rows]
        return session.connection().execute(statement, batch).rowcount
    columns = [key, *names]
    arrays, params = unnest(dialect, table, columns, rows)
    assignments = ", ".join(f"{name} = {_from_array(dialect, table, name, f'v.{name}')}" for name in names)
    where = f"{table.name}.{key} = v.{key}"
    if guard is not None:
        where += f" AND ({guard.compile(dialect=dialect, compile_kwargs={'literal_binds': True})})"
    sql = f"UPDATE {table.name} SET {assignments} FROM {arrays} AS v({', '.join(columns)}) WHERE {where}"
    return session.connection().exec_driver_sql(sql, params).rowcount


def bulk_insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows (every row naming the same columns): PostgreSQL `INSERT ... SELECT FROM unnest(...)`, one
    statement of fixed text; elsewhere SQLAlchemy's executemany (multi-row VALUES)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        session.execute(table.insert(), rows)
        return
    columns = list(rows[0])
    arrays, params = unnest(dialect, table, columns, rows)
    selected = ", ".join(_from_array(dialect, table, name, f"v.{name}") for name in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {selected} FROM {arrays} AS v({', '.join(columns)})"
    session.connection().exec_driver_sql(sql, params)


def _is_json(table: Table, name: str) -> bool:
    return isinstance(table.c[name].type, JSON)


def unnest(
    dialect: Dialect, table: Table, columns: list[str], rows: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """`unnest(CAST(%(a0)s AS type[]), ...)` and its parameters: one array per column (JSON travels as text)."""
    params: dict[str, Any] = {}
    for n, name in enumerate(columns):
        values_ = [row[name] for row in rows]
        params[f"a{n}"] = [None if v is None else json_text(v) for v in values_] if _is_json(table, name) else values_
    return _unnest_sql(dialect, table, tuple(columns)), params


@functools.cache
def _unnest_sql(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    # Compiled once per table and columns: type compilation per call was measurable CPU on the per-callback path.
    # `%(a)b`: psycopg sends the arrays in binary. In text form every element is quoted and its `"` and `\` escaped
    # by a regex in Python: for a batch report's outbox payloads (JSON text, ~60 quotes each, 30,000 of them) that
    # escaping was the largest CPU cost of the report.
    casts = []
    for n, name in enumerate(columns):
        kind = "TEXT" if _is_json(table, name) else table.c[name].type.compile(dialect=dialect)
        casts.append(f"CAST(%(a{n})b AS {kind}[])")
    return f"unnest({', '.join(casts)})"


def _from_array(dialect: Dialect, table: Table, name: str, ref: str) -> str:
    return f"CAST({ref} AS JSON)" if _is_json(table, name) else ref


class UnitOfWork:
    """One transaction: `with UnitOfWork(engine) as uow: ...; uow.commit()`. Leaving without commit rolls back."""

    def __init__(self, engine: Engine, *, readonly: bool = False):
        self._engine = engine.execution_options(readonly=True) if readonly else engine
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The transaction's session, inside the `with` block only."""
        if self._session is None:
            raise RuntimeError("UnitOfWork.session outside its `with` block")
        return self._session

    def __enter__(self) -> UnitOfWork:
        self._session = Session(self._engine, expire_on_commit=False)
        return self

    def __exit__(self, *exc_info: object) -> None:
        # close() rolls back whatever was not committed; unlike rollback() it does not expire the loaded
        # objects, so callers may read what a use case returned after the block.
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()
