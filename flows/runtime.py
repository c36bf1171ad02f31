"""The flows' composition root: settings and one database engine per flow-run process, built on first use."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

from domain.credentials import load_credentials_key
from domain.db import make_engine
from domain.settings import Settings, get_settings


def settings() -> Settings:
    """Settings are read per call, so a flag flipped in the environment applies to the next run without a deploy."""
    return get_settings()


@lru_cache(maxsize=4)
def engine_for(database_url: str) -> Engine:
    return make_engine(database_url)


def engine() -> Engine:
    return engine_for(settings().database_url)


def credentials_key(current: Settings | None = None) -> str:
    """The Fernet key of portal passwords: CREDENTIALS_KEY, else the Prefect Secret block named in
    CREDENTIALS_KEY_SECRET_BLOCK (the production path), else the local stack's generated key, else a clear error."""
    current = current or settings()
    if current.credentials_key is None and current.credentials_key_secret_block:
        from prefect.blocks.system import Secret

        return str(Secret.load(current.credentials_key_secret_block).get())
    return load_credentials_key(current)
