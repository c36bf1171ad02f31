"""Every PostgreSQL session of the application runs without JIT (domain/db.py SESSION_OPTIONS): compiling a batch
report's set-based statements cost more than running them. The URL's own `options` are kept, and win."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from domain.db import make_engine
from tests.conftest import TEST_DATABASE

pytestmark = pytest.mark.skipif(TEST_DATABASE == "sqlite", reason="PostgreSQL sessions only")


def _show(url: str, *names: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [conn.exec_driver_sql(f"SHOW {name}").scalar_one() for name in names]
    finally:
        engine.dispose()


def test_sessions_run_without_jit(database_url):
    assert _show(database_url, "jit") == ["off"]


def test_the_urls_own_options_are_kept_beside_it(database_url):
    url = make_url(database_url).update_query_dict({"options": "-c statement_timeout=4321"})
    assert _show(url.render_as_string(hide_password=False), "jit", "statement_timeout") == ["off", "4321ms"]


def test_a_jit_setting_in_the_url_wins(database_url):
    url = make_url(database_url).update_query_dict({"options": "-c jit=on"})
    assert _show(url.render_as_string(hide_password=False), "jit") == ["on"]
