"""The relay's reads while a batch reports: the job's run and counters, the errors among just-recorded results."""

from __future__ import annotations

import pytest

from domain.batches.progress import JobCounts, errors_among, job_counts
from domain.batches.results import record_item_result
from domain.errors import UnknownJob
from domain.models import Order, RobotJob, RobotJobItem
from tests.domain.results_helpers import err, ok


def test_counts_follow_the_recorded_results(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow(readonly=True) as tx:
        before = job_counts(tx.session, job_id)
        job = tx.session.get(RobotJob, job_id)
    assert before == JobCounts("flow-run-1", job.total_items, job.success_count, job.error_count)
    with uow() as tx:
        record_item_result(tx.session, ok(items[0], "10107"))
        record_item_result(tx.session, err(items[1]))
        tx.commit()
    with uow(readonly=True) as tx:
        after = job_counts(tx.session, job_id)
    assert (after.total, after.success, after.error) == (before.total, before.success + 1, before.error + 1)
    assert after.done == before.done + 2


def test_an_unknown_job_is_refused(uow):
    with uow(readonly=True) as tx, pytest.raises(UnknownJob):
        job_counts(tx.session, "no-such-job")


def test_only_this_jobs_errors_among_the_named_items_by_order_name(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        record_item_result(tx.session, ok(items[0], "10107"))
        for item in (items[1], items[2]):
            record_item_result(tx.session, err(item, message=f"motivo {item}"))
        tx.commit()
    with uow(readonly=True) as tx:
        found = errors_among(tx.session, job_id, [items[0], items[2], items[1], items[3], "no-such-item"])
        named = {tx.session.get(Order, tx.session.get(RobotJobItem, i).order_id).name: i for i in (items[1], items[2])}
        assert found == [(name, "unknown", f"motivo {named[name]}") for name in sorted(named)]
        assert errors_among(tx.session, job_id, []) == []
        assert errors_among(tx.session, "another-job", [items[1], items[2]]) == []
