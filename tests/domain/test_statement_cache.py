"""psycopg converts a query's `%(name)s` placeholders once per distinct text only when the text is short enough for
its cache; the per-order callback's one statement must be, or every callback pays the conversion again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

psycopg = pytest.importorskip("psycopg")
from psycopg import _queries  # noqa: E402
from psycopg.adapt import Transformer  # noqa: E402

from domain.batches.results import record_one_pg_sql  # noqa: E402
from domain.db import make_engine  # noqa: E402

PARAMS = {
    "item_id": "i",
    "job_id": "j",
    "status": "success",
    "tracking": "123",
    "error_type": None,
    "error_message": None,
    "by": "robot",
    "now": datetime(2026, 1, 1, tzinfo=UTC),
    "carrier": "coordinadora",
    "all_failed": "x",
}


def test_the_per_order_statement_is_converted_once_per_process_not_per_callback():
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # no connection is made
    sql = record_one_pg_sql(engine.dialect).encode()
    assert len(sql) > 4096  # the case this is about: over psycopg's own default
    before = _queries._query2pg.cache_info()
    for _ in range(3):
        _queries.PostgresQuery(Transformer()).convert(sql, PARAMS)
    after = _queries._query2pg.cache_info()
    assert after.hits - before.hits >= 2
