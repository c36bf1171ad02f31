"""Database engines and the unit of work: the one transaction boundary of every use case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    """An engine for SQLite (WAL, `BEGIN IMMEDIATE` writers) or PostgreSQL (psycopg 3)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every SQLite test
        # Let SQLAlchemy, not pysqlite, issue BEGIN, so that we can make it IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised by every SQLite test
        # SQLite has no SELECT ... FOR UPDATE. Taking the write lock at BEGIN serialises writers, so a
        # guarded UPDATE ... RETURNING sees every committed change and read-then-write never races.
        if conn.get_execution_options().get("readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class UnitOfWork:
    """One transaction: `with UnitOfWork(engine) as uow: ...; uow.commit()`. Leaving without commit rolls back."""

    def __init__(self, engine: Engine, *, readonly: bool = False):
        self._engine = engine.execution_options(readonly=True) if readonly else engine
        self.session: Session | None = None

    def __enter__(self) -> "UnitOfWork":
        self.session = Session(self._engine, expire_on_commit=False)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.session is not None
        # close() rolls back whatever was not committed; unlike rollback() it does not expire the loaded
        # objects, so callers may read what a use case returned after the block.
        self.session.close()

    def commit(self) -> None:
        assert self.session is not None
        self.session.commit()

    def rollback(self) -> None:
        assert self.session is not None
        self.session.rollback()
