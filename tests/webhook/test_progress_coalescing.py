"""Across gunicorn workers, each with its own after-commit pool, a job's progress is published at most about once
every 0.9 s (a claim in `robot_job_publications`), and the last state is always published."""

from __future__ import annotations

import threading
import time

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import text

from domain.batches.jobs import get_job
from domain.batches.results import ItemResult, record_item_result
from domain.db import UnitOfWork
from relay.progress import PUBLISH_EVERY_S, coalesced_progress, publish_progress_coalesced
from simulator.server import unused_loopback_url
from webhook.after_commit import AfterCommit
from webhook.app import progress_notifier

REPORTING_S = 2.5  # how long results keep arriving in the contention test
SLACK_S = 0.05  # between a claim's time and its publication: a commit and a thread switch


def done_count(engine, job_id: str) -> int:
    with UnitOfWork(engine, readonly=True) as tx:
        job = get_job(tx.session, job_id)
        return job.success_count + job.error_count  # the orders rejected at creation count as errors


class Publications:
    """A fake Prefect publication: when it happened and the done count it read, as `publish_progress` would."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def __call__(self, engine, job_id: str) -> None:
        done = done_count(engine, job_id)
        with self._lock:
            self.seen.append((time.monotonic(), done))

    def gaps(self) -> list[float]:
        times = [at for at, _ in self.seen]
        return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


@pytest.fixture
def workers(engine):
    """Two workers as gunicorn has them: separate pools, each coalescing per second on its own, one database; both
    run the relay's progress task with a fake publication."""
    publications = Publications()
    pools = [AfterCommit({"progress": progress_notifier(coalesced_progress(engine, publications))}) for _ in range(2)]
    return pools, publications


@pytest.fixture
def report(uow):
    def record(item_id: str, n: int) -> None:
        with uow() as tx:
            record_item_result(tx.session, ItemResult(item_id=item_id, status="success", tracking_number=f"9{n:04d}"))
            tx.commit()

    return record


def test_two_workers_publish_a_jobs_progress_once_per_interval_and_the_last_state(engine, make_job, workers, report):
    pools, publications = workers
    job = make_job(orders=32)
    reported = job.items[:-1]  # one item stays pending: the job never finishes, so only progress tasks run
    for n, item_id in enumerate(reported):
        report(item_id, n)
        pools[n % 2].submit("progress", job.id)  # the worker that took the callback
        time.sleep(REPORTING_S / len(reported))
    final = done_count(engine, job.id)
    assert final == len(reported) + len(job.rejected)
    for pool in pools:
        pool.join()

    assert len(publications.seen) >= 3, publications.seen
    assert min(publications.gaps()) >= PUBLISH_EVERY_S - SLACK_S, publications.gaps()
    assert publications.seen[-1][1] == final, publications.seen  # the last publication shows the final state


def test_the_last_result_on_a_worker_that_lost_the_claim_is_still_published(engine, make_job, workers, report):
    """Worker 0 has just published; the last result lands on worker 1, whose claim fails: it tries again once worker
    0's publication is old enough, and publishes the final state (nothing else would: no more results come)."""
    pools, publications = workers
    job = make_job(orders=3)
    report(job.items[0], 0)
    pools[0].submit("progress", job.id)
    pools[0].join()
    report(job.items[1], 1)
    pools[1].submit("progress", job.id)
    pools[1].join()  # waits for its retry too

    final = done_count(engine, job.id)
    assert [done for _, done in publications.seen] == [final - 1, final]
    assert publications.gaps()[0] >= PUBLISH_EVERY_S - SLACK_S


def claims(engine) -> list[tuple[str, str, float]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT job_id, kind, claimed_at FROM robot_job_publications"))]


def test_a_publication_within_the_interval_is_put_off_for_the_time_left(engine, job):
    """The relay's own publication (Prefect unreachable here: it fails quietly) takes the claim; a second one 0.3 s
    later is told to wait the remaining 0.6 s."""
    with temporary_settings(updates={PREFECT_API_URL: unused_loopback_url() + "/api"}):
        assert publish_progress_coalesced(engine, job.id, clock=lambda: 1_800_000_000.0) is None
        wait = publish_progress_coalesced(engine, job.id, clock=lambda: 1_800_000_000.3)
    assert wait == pytest.approx(PUBLISH_EVERY_S - 0.3)
    assert claims(engine) == [(job.id, "progress", 1_800_000_000.0)]


def test_without_prefect_nothing_is_claimed(engine, job):
    with temporary_settings(set_defaults={PREFECT_API_URL: None}, restore_defaults={PREFECT_API_URL}):
        assert publish_progress_coalesced(engine, job.id) is None
    assert claims(engine) == []


def test_a_claim_the_database_refuses_still_publishes(down_engine):
    """Progress is decoration: a database in trouble costs the coalescing, never the publication nor an exception."""
    published: list[str] = []
    publish = coalesced_progress(down_engine, lambda _engine, job_id: published.append(job_id))
    assert publish("job-a") is None
    assert published == ["job-a"]
