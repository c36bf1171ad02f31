"""One read model of a batch (domain.batches.view): loaded in three queries, rendered without another."""

from __future__ import annotations

from sqlalchemy import event

from domain.batches.results import ItemResult, record_batch_results
from domain.batches.summary import render_summary_text
from domain.batches.view import load_batch


def test_the_batch_is_loaded_once_and_everything_renders_from_it(uow, engine, demo, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        record_batch_results(tx.session, job_id, [ItemResult(item_id=items[0], status="success")])
        tx.commit()
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    with uow(readonly=True) as tx:
        event.listen(engine, "before_cursor_execute", record)
        try:
            batch = load_batch(tx.session, job_id)
            loaded = len(statements)
            text = render_summary_text(batch.summary)
            cells = [(line.city, line.pedido, line.possible_duplicate) for line in batch.summary.lines]
        finally:
            event.remove(engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3, selects  # the job, its items with orders and contacts, the possible duplicates
    assert len(statements) == loaded  # rendering read nothing more
    assert "#número de pedido desconocido - " in text
    assert len(cells) == len(batch.items)
    assert [v.item.id for v in batch.items] == [line.item_id for line in batch.summary.lines]
