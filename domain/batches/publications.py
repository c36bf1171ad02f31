"""Publication claims: at most one publication of a job's artifact of one kind per interval, across every process.

The webhook's gunicorn workers each hold their own after-commit pool; a claim in the database (`robot_job_publications`)
is what keeps them, together, to one progress publication per job per interval.
"""

from __future__ import annotations

import importlib

from sqlmodel import Session, select

from domain.models import JobPublication, table_of


def claim_publication(session: Session, job_id: str, kind: str, *, every_s: float, now: float) -> float:
    """Claim the right to publish `kind` of the job now (epoch seconds): 0.0 when this caller holds it, else the
    seconds until the last claim is `every_s` old (within [0.01, every_s]). Does not commit.

    One guarded upsert, so two processes can never both win the same interval (on PostgreSQL the second waits for
    the first's row and then sees its claim; SQLite writers are serialised by `BEGIN IMMEDIATE`).
    """
    table = table_of(JobPublication)
    # Only the dialect in use: importing both costs every process that imports this module (see RobotJob's comment).
    dialect = importlib.import_module(f"sqlalchemy.dialects.{session.get_bind().dialect.name}")
    upsert = dialect.insert(table).values(job_id=job_id, kind=kind, claimed_at=now)
    upsert = upsert.on_conflict_do_update(
        index_elements=[table.c.job_id, table.c.kind],
        set_={"claimed_at": upsert.excluded.claimed_at},
        where=table.c.claimed_at <= now - every_s,
    ).returning(table.c.claimed_at)
    if session.execute(upsert).first() is not None:
        return 0.0
    claimed_at = session.exec(
        select(JobPublication.claimed_at).where(JobPublication.job_id == job_id, JobPublication.kind == kind)
    ).one_or_none()
    if claimed_at is None:  # cleared since the upsert saw it: try again at once
        return 0.01
    return min(max(claimed_at + every_s - now, 0.01), every_s)
