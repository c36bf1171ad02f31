"""Publication claims: one process at a time publishes a job's artifact of one kind, across every process.

The webhook's gunicorn workers each hold their own after-commit pool; a claim in the database (`robot_job_publications`)
makes one of them the job's publisher until its claim lapses (relay/progress.py says what the holder owes).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Select, TextClause, Update, bindparam, select, text, update
from sqlmodel import Session

from domain.models import JobPublication, table_of


@functools.cache
def _claim_statements() -> tuple[TextClause, Select[Any], Update]:
    """The claim's upsert, the loser's read and the holder's renewal, built once with bound parameters.

    The upsert is text, not `dialects.postgresql.insert(...).on_conflict_do_update(...)`: SQLAlchemy does not cache
    the dialects' INSERT ... ON CONFLICT constructs (no cache key), so each claim compiled it afresh, ~2 % of a
    webhook worker's GIL time with Prefect up (py-spy, 32 senders on 20 jobs). PostgreSQL and SQLite (3.35+) read the
    same text. Measured (benchmarks/claim_bench.py, CPU per claim): PostgreSQL won 0.64–0.73 → 0.40–0.44 ms, lost
    0.84–0.87 → 0.57–0.60; SQLite won 0.61 → 0.35–0.38, lost 0.43 → 0.22 (BENCHMARKS.md round 11).
    """
    table = table_of(JobPublication)
    name = table.name
    upsert = text(
        f"INSERT INTO {name} (job_id, kind, claimed_at) VALUES (:job_id, :kind, :now) "
        "ON CONFLICT (job_id, kind) DO UPDATE SET claimed_at = excluded.claimed_at "
        f"WHERE {name}.claimed_at <= :lapsed_before RETURNING claimed_at"
    )
    last = select(table.c.claimed_at).where(table.c.job_id == bindparam("job_id"), table.c.kind == bindparam("kind"))
    # An UPDATE's parameters may not be named after its table's columns.
    renew = (
        update(table)
        .where(
            table.c.job_id == bindparam("the_job"),
            table.c.kind == bindparam("the_kind"),
            table.c.claimed_at == bindparam("held_since"),
        )
        .values(claimed_at=bindparam("renewed_at"))
    )
    return upsert, last, renew


def claim_publication(session: Session, job_id: str, kind: str, *, lease_s: float, now: float) -> float | None:
    """Claim the publication of `kind` of the job at `now` (epoch seconds), unless another claim is younger than
    `lease_s`: None when this caller holds it now, else the time of the claim that holds it. Does not commit.

    One guarded upsert, so two processes can never both win (on PostgreSQL the second waits for the first's row and
    then sees its claim; SQLite writers are serialised by `BEGIN IMMEDIATE`).
    """
    connection = session.connection()
    upsert, last, _ = _claim_statements()
    key = {"job_id": job_id, "kind": kind}
    if connection.execute(upsert, {**key, "now": now, "lapsed_before": now - lease_s}).first() is not None:
        return None
    held_since: float | None = connection.execute(last, key).scalar_one_or_none()
    return 0.0 if held_since is None else held_since  # 0.0: cleared since the upsert saw it, long lapsed


def renew_publication(session: Session, job_id: str, kind: str, *, held_since: float, now: float) -> bool:
    """Move the holder's claim from `held_since` to `now`; False when it is no longer that claim (another process
    took the publication over once it lapsed). Does not commit."""
    connection = session.connection()
    _, _, renew = _claim_statements()
    params = {"the_job": job_id, "the_kind": kind, "held_since": held_since, "renewed_at": now}
    return connection.execute(renew, params).rowcount == 1
