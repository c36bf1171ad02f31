"""Shared fixtures: one database per test session (SQLite file, or a fresh PostgreSQL database), emptied per test.

Choose the database with ROBOTJOBS_TEST_DATABASE: `sqlite` (default) or a PostgreSQL server URL such as
`postgresql+psycopg://postgres@127.0.0.1:5432/test` (`make test` starts a private server and passes its URL). For
PostgreSQL the session creates its own database on that server (so parallel runs never share rows) and drops it at
the end. An unreachable server fails the run: a PostgreSQL run that silently skips would prove nothing.

A test that must stop and restart PostgreSQL takes the `private_postgres` fixture: a server of its own, whatever
ROBOTJOBS_TEST_DATABASE says.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url

from domain.db import UnitOfWork, make_engine
from domain.migrate import upgrade
from stack.private_postgres import PrivatePostgres, temporary_postgres

TEST_DATABASE = os.environ.get("ROBOTJOBS_TEST_DATABASE", "sqlite")


@contextmanager
def scratch_database(directory: Path, prefix: str) -> Iterator[str]:
    """A new empty database for the chosen engine: a SQLite file, or a private database on the PostgreSQL server."""
    if TEST_DATABASE == "sqlite":
        yield f"sqlite:///{directory / (prefix + '.db')}"
        return
    import psycopg

    url = make_url(TEST_DATABASE)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conninfo = dict(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres")
    if url.password:
        conninfo["password"] = url.password
    try:
        with psycopg.connect(**conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:  # fail, never skip: see the module docstring
        pytest.exit(f"PostgreSQL at {url.host}:{url.port} is unreachable: {exc}", returncode=3)
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started PostgreSQL server of this test's own (about half a second): `.url(database)`,
    `.create_database(name)`, `.stop()` (fast shutdown; `mode="immediate"` for a crash) and `.start()` again on the
    same data and port. Stopped and its folder removed after the test."""
    with temporary_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    with scratch_database(tmp_path_factory.mktemp("db"), "rj_test") as url:
        yield url


@pytest.fixture(scope="session")
def migrated_engine(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def empty_all_tables(engine) -> None:
    metadata = MetaData()
    metadata.reflect(engine)
    tables = [t for t in metadata.sorted_tables if t.name != "alembic_version"]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t.name}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                conn.execute(table.delete())


@pytest.fixture
def engine(migrated_engine):
    """The session's migrated engine, with every table emptied before the test."""
    empty_all_tables(migrated_engine)
    return migrated_engine


@pytest.fixture
def uow(engine):
    """A factory of units of work: `with uow() as tx: ...; tx.commit()`."""
    return lambda **kwargs: UnitOfWork(engine, **kwargs)
