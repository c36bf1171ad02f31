"""The flows' composition root: settings and one database engine per flow-run process, built on first use."""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import httpx
from sqlalchemy import Engine

from domain.credentials import CredentialsKeyMissing, load_credentials_key
from domain.db import configure_orm, make_engine
from domain.settings import Settings, get_settings

log = logging.getLogger(__name__)
# The warm-up thread and the run's first step may both ask for the engine first: one engine, one pool.
_engine_lock = threading.Lock()


def settings() -> Settings:
    """Settings are read per call, so a flag flipped in the environment applies to the next run without a deploy."""
    return get_settings()


@lru_cache(maxsize=4)
def engine_for(database_url: str) -> Engine:
    return make_engine(database_url)


def engine() -> Engine:
    with _engine_lock:
        return engine_for(settings().database_url)


def warm_up() -> None:
    """The first step's own start-up, done while Prefect's engine starts the run (flows/startup.py): Prefect's task
    engine imported (the first task run imports it), the ORM's mappers configured (the first query does it), the
    pool's first connection opened. Best effort: a failure here is the first step's to report."""
    try:
        import prefect.task_engine  # noqa: F401

        configure_orm()
        with engine().connect():
            pass
    except Exception as exc:  # noqa: BLE001
        log.debug("warm-up skipped: %s: %s", type(exc).__name__, exc)


def credentials_key(current: Settings | None = None) -> str:
    """The Fernet key of portal passwords: CREDENTIALS_KEY, else the Prefect Secret block named in
    CREDENTIALS_KEY_SECRET_BLOCK (the production path), else the local stack's generated key, else a clear error."""
    current = current or settings()
    if current.credentials_key is None and current.credentials_key_secret_block:
        return _key_from_secret_block(current.credentials_key_secret_block)
    return load_credentials_key(current)


def _key_from_secret_block(name: str) -> str:
    """The key held by the Prefect Secret block `name`; a block that is missing or cannot be read is the domain's
    CredentialsKeyMissing (a Spanish reason that fails the job before its dispatch is claimed), not a crash."""
    from prefect.blocks.system import Secret

    try:
        return str(Secret.load(name).get())
    except ValueError as exc:  # Block.load: no block of that name (or of another type)
        why, cause = "no existe en Prefect (o no es de tipo Secret): créelo con la clave Fernet de los demás hosts", exc
    except httpx.HTTPError as exc:  # the API unreachable, or refusing us: its message may hold a URL, not shown
        why, cause = f"no se pudo leer: la API de Prefect no respondió ({type(exc).__name__})", exc
    raise CredentialsKeyMissing(
        f"El bloque Secret «{name}» (CREDENTIALS_KEY_SECRET_BLOCK), que guarda la clave de las contraseñas del "
        f"portal, {why}. También puede configurar CREDENTIALS_KEY en el worker."
    ) from cause
