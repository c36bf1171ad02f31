"""One summary publication loads the batch once: one read of the job, one of its items with orders and contacts,
one of the possible duplicates; the markdown and the items table render from that one read model."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import event

from domain.batches.jobs import get_job_view
from domain.batches.results import ItemResult, record_batch_results
from domain.db import UnitOfWork
from relay import artifacts


class FakePrefect:
    """The two artifact calls a publication makes, kept instead of sent."""

    def __init__(self) -> None:
        self.created: list = []

    def __enter__(self) -> FakePrefect:
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def create_artifact(self, artifact) -> None:
        self.created.append(artifact)


def _statements(engine, action) -> list[str]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_one_summary_publication_loads_the_batch_once(engine, started_job, monkeypatch):
    with UnitOfWork(engine) as uow:
        items = [v.item.id for v in get_job_view(uow.session, started_job).items]
        results = [ItemResult(item_id=items[0], status="success", tracking_number="76001")]
        results += [ItemResult(item_id=i, status="error", error_type="portal", error_message="x") for i in items[1:]]
        record_batch_results(uow.session, started_job, results)
        uow.commit()
    prefect = FakePrefect()
    monkeypatch.setattr(artifacts, "get_client", lambda **_: prefect)
    monkeypatch.setattr(artifacts, "get_flow_run_id", uuid.uuid4)

    statements = _statements(engine, lambda: artifacts.publish_summary(engine, started_job))

    reads = [s for s in statements if s.startswith("SELECT")]
    view_reads = [s for s in reads if "FROM robot_job_items JOIN orders" in s]
    job_reads = [s for s in reads if s.startswith("SELECT robot_jobs.id AS robot_jobs_id")]
    # Before the read model: 5 SELECTs, the job row read twice (the publisher's and the summary's own).
    assert len(view_reads) == 1, view_reads  # items, orders and contacts: once
    assert len(job_reads) == 1, job_reads  # the job row: once
    # + the possible duplicates, + the published mark's check of the job's latest change (in its write).
    assert len(reads) == 4, reads
    # Both artifacts are created at once (two threads): in either order.
    markdown, table = sorted(prefect.created, key=lambda artifact: artifact.type != "markdown")
    assert "76001" in markdown.data
    assert [row["item_id"] for row in json.loads(table.data)] == items
