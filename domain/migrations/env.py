"""Alembic environment: runs the same migrations on SQLite and PostgreSQL."""

from alembic import context
from sqlmodel import SQLModel

# Imported for their side effect: they register the tables on SQLModel.metadata.
import domain.automations.models  # noqa: F401
import domain.models  # noqa: F401
from domain.db import make_engine
from domain.settings import get_settings

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    url = config.attributes.get("database_url") or get_settings().database_url
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
