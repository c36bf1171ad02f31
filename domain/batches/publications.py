"""Publication claims: at most one publication of a job's artifact of one kind per interval, across every process.

The webhook's gunicorn workers each hold their own after-commit pool; a claim in the database (`robot_job_publications`)
is what keeps them, together, to one progress publication per job per interval.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import Session

from domain.models import JobPublication, table_of


@functools.cache
def _claim_statements(dialect_name: str) -> tuple[ReturningInsert[Any], Select[Any]]:
    """The claim's upsert and the loser's read, built once per dialect with bound parameters.

    Measured (benchmarks/claim_bench.py, PostgreSQL): built per call and run through the ORM's execution path, a
    lost claim cost 1.05–1.12 ms of CPU, now 0.62–0.64 (won 0.70–0.77 → 0.49–0.54); every gunicorn worker tries each
    job's progress about once a second and 3 of 4 lose (BENCHMARKS.md round 6).
    """
    table = table_of(JobPublication)
    # Only the dialect in use: importing both costs every process that imports this module (see RobotJob's comment).
    dialect = importlib.import_module(f"sqlalchemy.dialects.{dialect_name}")
    upsert = dialect.insert(table).values(
        job_id=bindparam("job_id"), kind=bindparam("kind"), claimed_at=bindparam("now")
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=[table.c.job_id, table.c.kind],
        set_={"claimed_at": upsert.excluded.claimed_at},
        where=table.c.claimed_at <= bindparam("expired_before"),
    ).returning(table.c.claimed_at)
    last = select(table.c.claimed_at).where(table.c.job_id == bindparam("job_id"), table.c.kind == bindparam("kind"))
    return upsert, last


def claim_publication(session: Session, job_id: str, kind: str, *, every_s: float, now: float) -> float:
    """Claim the right to publish `kind` of the job now (epoch seconds): 0.0 when this caller holds it, else the
    seconds until the last claim is `every_s` old (within [0.01, every_s]). Does not commit.

    One guarded upsert, so two processes can never both win the same interval (on PostgreSQL the second waits for
    the first's row and then sees its claim; SQLite writers are serialised by `BEGIN IMMEDIATE`).
    """
    connection = session.connection()
    upsert, last = _claim_statements(connection.dialect.name)
    key = {"job_id": job_id, "kind": kind}
    if connection.execute(upsert, {**key, "now": now, "expired_before": now - every_s}).first() is not None:
        return 0.0
    claimed_at: float | None = connection.execute(last, key).scalar_one_or_none()
    if claimed_at is None:  # cleared since the upsert saw it: try again at once
        return 0.01
    return min(max(claimed_at + every_s - now, 0.01), every_s)
