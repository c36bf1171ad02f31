"""Across gunicorn workers, each with its own after-commit pool, one worker at a time holds a job's progress (a claim
in `robot_job_publications`): it publishes at most about once every 0.9 s and the last state always, the others
leave their results to it; once its claim lapses another worker takes the job over."""

from __future__ import annotations

import threading
import time

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import text

from domain.batches.jobs import get_job
from domain.batches.results import ItemResult, record_item_result
from domain.db import UnitOfWork
from relay import progress
from relay.progress import PUBLISH_EVERY_S, ProgressPublisher, progress_publisher
from simulator.server import unused_loopback_url
from webhook.after_commit import AfterCommit
from webhook.app import progress_notifier

REPORTING_S = 2.5  # how long results keep arriving in the contention test
LEASE_S = 2.0  # shorter than production's (20 s), so the pools' last reads end soon after the results
SLACK_S = 0.05  # between a claim's time and its publication: a commit and a thread switch
T0 = 1_800_000_000.0


def at_once() -> float:
    """A publisher's stagger that puts no claim's first read off, however many jobs report."""
    return 0.0


def done_count(engine, job_id: str) -> int:
    with UnitOfWork(engine, readonly=True) as tx:
        job = get_job(tx.session, job_id)
        return job.success_count + job.error_count  # the orders rejected at creation count as errors


class Publications:
    """A fake Prefect publication per worker: who published, when, and the done count it read; like
    `publish_progress_changed` it answers whether the state differed from that worker's last publication."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float, int]] = []
        self._lock = threading.Lock()

    def of(self, worker: int):
        last: list[int] = []

        def publish(engine, job_id: str) -> bool:
            done = done_count(engine, job_id)
            if last and last[-1] == done:
                return False
            last.append(done)
            with self._lock:
                self.seen.append((worker, time.monotonic(), done))
            return True

        return publish

    def gaps(self) -> list[float]:
        times = [at for _, at, _ in self.seen]
        return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


@pytest.fixture
def workers(engine):
    """Two workers as gunicorn has them: separate pools and publishers, one database, a fake publication."""
    publications = Publications()
    pools = [
        AfterCommit({"progress": progress_notifier(ProgressPublisher(engine, publications.of(n), lease_s=LEASE_S))})
        for n in range(2)
    ]
    return pools, publications


@pytest.fixture
def report(uow):
    def record(item_id: str, n: int) -> None:
        with uow() as tx:
            record_item_result(tx.session, ItemResult(item_id=item_id, status="success", tracking_number=f"9{n:04d}"))
            tx.commit()

    return record


def test_one_worker_publishes_a_jobs_progress_once_per_interval_and_the_last_state(engine, make_job, workers, report):
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
        pool.join()  # the holder's reads, until its lease ends with nothing new

    assert len(publications.seen) >= 3, publications.seen
    assert len({worker for worker, _, _ in publications.seen}) == 1, publications.seen  # the holder only
    assert min(publications.gaps()) >= PUBLISH_EVERY_S - SLACK_S, publications.gaps()
    assert publications.seen[-1][2] == final, publications.seen  # the last publication shows the final state


def test_results_arriving_all_the_time_do_not_read_the_held_job_faster_than_its_interval(engine, make_job, report):
    """The pool runs a job's progress task about once a second while results arrive; the holder's own interval (2 s
    here: a budget of 0.5 publications a second) is what spaces its reads, and the last state is still published."""
    publications = Publications()
    publish = publications.of(0)

    def slow_publish(engine, job_id: str) -> bool:
        changed = publish(engine, job_id)
        time.sleep(0.3)  # a PATCH to a busy Prefect server: results keep arriving meanwhile
        return changed

    publisher = ProgressPublisher(engine, slow_publish, max_per_s=0.5, lease_s=4.0)
    pool = AfterCommit({"progress": progress_notifier(publisher)})
    job = make_job(orders=26)
    reported = job.items[:-1]
    for n, item_id in enumerate(reported):
        report(item_id, n)
        pool.submit("progress", job.id)
        time.sleep(REPORTING_S / len(reported))
    final = done_count(engine, job.id)
    pool.join()

    assert len(publications.seen) >= 2, publications.seen
    assert min(publications.gaps()) >= 2.0 - SLACK_S, publications.gaps()
    assert publications.seen[-1][2] == final, publications.seen


def test_the_last_result_on_the_other_worker_is_published_by_the_holder(engine, make_job, workers, report):
    """Worker 0 holds the job; the last result lands on worker 1, which leaves it to the holder: worker 0's next
    read publishes the final state (nothing else would: no more results come)."""
    pools, publications = workers
    job = make_job(orders=3)
    report(job.items[0], 0)
    pools[0].submit("progress", job.id)
    time.sleep(0.3)  # worker 0 has claimed and published
    report(job.items[1], 1)
    pools[1].submit("progress", job.id)
    for pool in pools:
        pool.join()

    final = done_count(engine, job.id)
    assert [(worker, done) for worker, _, done in publications.seen] == [(0, final - 1), (0, final)]
    assert publications.gaps()[0] >= PUBLISH_EVERY_S - SLACK_S


class Recorder:
    """A fake publication under a fake clock: the calls, and whether each found the state changed."""

    def __init__(self, changed: bool = True) -> None:
        self.calls = 0
        self.changed = changed

    def __call__(self, engine, job_id: str) -> bool:
        self.calls += 1
        return self.changed


def claims(engine) -> list[tuple[str, str, float]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT job_id, kind, claimed_at FROM robot_job_publications"))]


def publisher(engine, clock: list[float], publish: Recorder) -> ProgressPublisher:
    return ProgressPublisher(engine, publish, lease_s=5.0, trust_margin_s=0.5, clock=lambda: clock[0])


def test_another_worker_trusts_the_holder_until_its_lease_nears_its_end_then_takes_a_lapsed_claim_over(
    engine, job, monkeypatch
):
    attempts: list[float] = []
    real_claim = progress.claim_publication

    def counted_claim(session, job_id, kind, *, lease_s, now):
        attempts.append(now)
        return real_claim(session, job_id, kind, lease_s=lease_s, now=now)

    monkeypatch.setattr(progress, "claim_publication", counted_claim)
    clock = [T0]
    a_publish, b_publish = Recorder(), Recorder()
    a, b = publisher(engine, clock, a_publish), publisher(engine, clock, b_publish)
    assert a(job.id) == PUBLISH_EVERY_S and a_publish.calls == 1  # claimed and published: reads again in 0.9 s

    clock[0] = T0 + 1.0
    assert b(job.id) is None  # lost the claim: left to the holder
    clock[0] = T0 + 4.4
    assert b(job.id) is None and b_publish.calls == 0
    assert attempts == [T0, T0 + 1.0]  # trusted from memory until 5.0 - 0.5 s after the claim: no attempt

    clock[0] = T0 + 4.6
    assert b(job.id) is None and b_publish.calls == 0  # near the end: asked the database, the claim still holds
    assert attempts == [T0, T0 + 1.0, T0 + 4.6]
    clock[0] = T0 + 5.1  # a stopped reading (its process died): the lease lapsed
    assert b(job.id) == PUBLISH_EVERY_S and b_publish.calls == 1  # taken over
    assert claims(engine) == [(job.id, "progress", T0 + 5.1)]

    clock[0] = T0 + 5.2  # a comes back with a changed state: its renewal fails, it lets the job go
    assert a(job.id) is None
    assert claims(engine) == [(job.id, "progress", T0 + 5.1)]
    assert a(job.id) is None and a_publish.calls == 2  # now a worker like any other: b holds the job


def test_the_holder_renews_its_claim_when_the_state_changed(engine, job):
    clock = [T0]
    publish = Recorder()
    holder = publisher(engine, clock, publish)
    holder(job.id)
    clock[0] = T0 + 0.9
    assert holder(job.id) == PUBLISH_EVERY_S
    assert claims(engine) == [(job.id, "progress", T0 + 0.9)]


def test_the_holder_reads_until_its_lease_ends_and_then_lets_the_job_go(engine, job):
    clock = [T0]
    publish = Recorder(changed=False)  # nothing new after the first publication
    holder = publisher(engine, clock, publish)
    holder(job.id)
    clock[0] = T0 + 0.9
    assert holder(job.id) == PUBLISH_EVERY_S
    clock[0] = T0 + 4.6
    assert holder(job.id) == pytest.approx(0.41)  # the last read comes after the lease's end, not before
    clock[0] = T0 + 5.01
    assert holder(job.id) is None  # that read found nothing new: done
    assert publish.calls == 4
    assert claims(engine) == [(job.id, "progress", T0)]  # not renewed: it lapses, the next result claims anew


def test_a_holder_of_many_jobs_reads_each_less_often_within_its_budget_never_past_half_the_lease(engine):
    """4 jobs held, 2 publications a second: each job every 2 s; 6 held: every 2.5 s (half the 5 s lease), not 3."""
    clock = [T0]
    publish = Recorder()
    holder = ProgressPublisher(
        engine, publish, max_per_s=2.0, lease_s=5.0, trust_margin_s=0.5, clock=lambda: clock[0], stagger=at_once
    )
    assert holder("job-1") == PUBLISH_EVERY_S  # one job: as often as before
    assert holder("job-2") == pytest.approx(1.0)  # two: 2 jobs / 2 a second
    holder("job-3")
    assert holder("job-4") == pytest.approx(2.0)
    clock[0] = T0 + 2.0
    assert holder("job-1") == pytest.approx(2.0)  # the follow-up read of a held job, state changed: renewed
    assert claims_of(engine, "job-1") == T0 + 2.0
    holder("job-5"), holder("job-6")
    clock[0] = T0 + 4.0
    assert holder("job-1") == pytest.approx(2.5)
    publish.changed = False
    clock[0] = T0 + 6.5
    assert holder("job-1") == pytest.approx(2.5)  # nothing new, the lease (renewed at T0 + 4) runs to T0 + 9
    clock[0] = T0 + 8.0
    calls = publish.calls
    assert holder("job-1") == pytest.approx(1.0)  # a result before its read is due: no read, the due one covers it
    assert publish.calls == calls
    clock[0] = T0 + 9.0
    assert holder("job-1") is None  # the closing read still comes right at the lease's end, then lets the job go
    assert publish.calls == calls + 1


def test_the_budget_is_shared_with_the_jobs_other_processes_hold_until_their_claims_lapse(engine):
    """The Prefect server's budget is for every worker in all: a holder of one job that has seen 5 other jobs claimed
    by other processes reads its own every 3 s (6 jobs reporting, 2 publications a second); once those claims are
    past their lease it is alone again and reads every 0.9 s."""
    clock = [T0]
    others = ProgressPublisher(engine, Recorder(), max_per_s=2.0, lease_s=5.0, clock=lambda: clock[0])
    for n in range(5):
        others(f"job-{n}")  # another process holds these five
    holder = ProgressPublisher(engine, Recorder(), max_per_s=2.0, lease_s=8.0, clock=lambda: clock[0], stagger=at_once)
    for n in range(5):
        assert holder(f"job-{n}") is None  # lost: left to the other process, and remembered as reporting
    assert holder("job-mine") == pytest.approx(3.0)
    clock[0] = T0 + 3.0
    assert holder("job-mine") == pytest.approx(3.0)  # its follow-up read: the others' claims still hold
    clock[0] = T0 + 8.5  # past their claims' lease (this process's, 8 s): lapsed, whatever their holder does
    assert holder("job-mine") == pytest.approx(PUBLISH_EVERY_S)


def test_while_many_jobs_report_a_claims_first_read_waits_its_turn_within_the_interval(engine):
    """Results of 4 jobs starting together at 2 publications a second: a claim's first read comes within its
    interval (here at a quarter of it), not at once, and the job is held meanwhile; one job alone is still published
    at once. Without this, 20 batches starting together were 20 Prefect calls in the same instant."""
    clock = [T0]
    publish = Recorder()
    holder = ProgressPublisher(
        engine, publish, max_per_s=2.0, lease_s=5.0, clock=lambda: clock[0], stagger=lambda: 0.25
    )
    assert holder("job-1") == PUBLISH_EVERY_S and publish.calls == 1  # alone: published at once
    assert holder("job-2") == pytest.approx(0.25)  # 2 jobs: a 1 s interval, the first read in 0.25 s
    holder("job-3")
    assert holder("job-4") == pytest.approx(0.5)  # 4 jobs: a 2 s interval
    assert publish.calls == 1
    assert claims_of(engine, "job-4") == T0  # claimed meanwhile: other processes leave its results to this one
    clock[0] = T0 + 0.3
    assert holder("job-4") == pytest.approx(0.2)  # a result before that read: the due read covers it
    clock[0] = T0 + 0.5
    assert holder("job-4") == pytest.approx(2.0) and publish.calls == 2  # the first read: published, every 2 s on
    assert claims_of(engine, "job-4") == T0 + 0.5  # and its claim renewed


def test_a_first_read_put_off_follows_the_interval_known_when_it_comes_due(engine):
    """A worker claiming at the start of a burst has seen few of the other jobs: when its first read comes due, the
    same fraction of the interval as known then decides, and it waits on if that is later."""
    clock = [T0]
    publish = Recorder()
    others = ProgressPublisher(engine, Recorder(), lease_s=20.0, clock=lambda: clock[0], stagger=at_once)
    holder = ProgressPublisher(engine, publish, lease_s=20.0, clock=lambda: clock[0], stagger=lambda: 0.5)
    holder("job-1")  # alone: published at once
    assert holder("job-2") == pytest.approx(0.5)  # 2 jobs: a 1 s interval, half of it
    for n in range(3, 11):
        others(f"job-{n}")
        assert holder(f"job-{n}") is None  # 8 more jobs reporting, held by another process
    clock[0] = T0 + 0.5
    assert holder("job-2") == pytest.approx(2.0)  # 10 jobs: a 5 s interval, so half of it: 2.5 s after the claim
    assert publish.calls == 1
    clock[0] = T0 + 2.5
    assert holder("job-2") == pytest.approx(5.0) and publish.calls == 2  # the first read: published, every 5 s on
    assert claims_of(engine, "job-2") == T0 + 2.5


def claims_of(engine, job_id: str) -> float | None:
    return next((at for job, _, at in claims(engine) if job == job_id), None)


def test_the_relays_publication_claims_and_another_is_left_to_the_holder(engine, job):
    """The relay's own publication (Prefect unreachable here: it fails quietly) takes the claim and owes a read in
    0.9 s; another process 0.3 s later leaves it to that holder."""
    with temporary_settings(updates={PREFECT_API_URL: unused_loopback_url() + "/api"}):
        assert progress_publisher(engine, clock=lambda: T0)(job.id) == PUBLISH_EVERY_S
        assert progress_publisher(engine, clock=lambda: T0 + 0.3)(job.id) is None  # another process
    assert claims(engine) == [(job.id, "progress", T0)]


def test_without_prefect_nothing_is_claimed(engine, job):
    with temporary_settings(set_defaults={PREFECT_API_URL: None}, restore_defaults={PREFECT_API_URL}):
        assert progress_publisher(engine)(job.id) is None
    assert claims(engine) == []


def test_a_claim_the_database_refuses_still_publishes(down_engine):
    """Progress is decoration: a database in trouble costs the coalescing, never the publication nor an exception."""
    publish = Recorder()
    assert ProgressPublisher(down_engine, publish)("job-a") is None
    assert publish.calls == 1
