"""The flows' composition root: settings and one database engine per flow-run process, built on first use."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

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
