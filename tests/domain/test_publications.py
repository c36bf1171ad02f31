"""Publication claims: one holder per job and kind until its claim is `lease_s` old; the others learn whose claim
holds; the holder renews its own claim, never one that replaced it."""

from __future__ import annotations

import threading

import pytest

from domain.batches.publications import claim_publication, renew_publication
from domain.models import JobPublication

T0 = 1_800_000_000.0  # epoch seconds: the claims store wall-clock times
LEASE = 5.0


def claim(uow, job_id="job-a", kind="progress", *, now, lease_s=LEASE):
    with uow() as tx:
        holder = claim_publication(tx.session, job_id, kind, lease_s=lease_s, now=now)
        tx.commit()
    return holder


def renew(uow, job_id="job-a", kind="progress", *, held_since, now):
    with uow() as tx:
        renewed = renew_publication(tx.session, job_id, kind, held_since=held_since, now=now)
        tx.commit()
    return renewed


def claimed_at(uow, job_id="job-a", kind="progress") -> float:
    with uow(readonly=True) as tx:
        return tx.session.get(JobPublication, (job_id, kind)).claimed_at


def test_the_first_claim_wins(uow):
    assert claim(uow, now=T0) is None
    assert claimed_at(uow) == T0


def test_a_claim_within_the_lease_learns_the_holders_claim_and_changes_nothing(uow):
    claim(uow, now=T0)
    assert claim(uow, now=T0 + 0.3) == T0
    assert claim(uow, now=T0 + LEASE - 0.001) == T0
    assert claimed_at(uow) == T0


def test_a_claim_once_the_lease_lapsed_wins_and_starts_a_new_lease(uow):
    claim(uow, now=T0)
    assert claim(uow, now=T0 + LEASE) is None
    assert claim(uow, now=T0 + LEASE + 1.0) == T0 + LEASE
    assert claim(uow, now=T0 + 2 * LEASE) is None


def test_the_holder_renews_its_claim_and_the_lease_runs_from_the_renewal(uow):
    claim(uow, now=T0)
    assert renew(uow, held_since=T0, now=T0 + 4.0)
    assert claim(uow, now=T0 + LEASE + 1.0) == T0 + 4.0  # the first lease is over; the renewed one holds


def test_a_renewal_of_a_claim_another_took_over_changes_nothing(uow):
    claim(uow, now=T0)
    assert claim(uow, now=T0 + LEASE + 0.5) is None  # lapsed: taken over
    assert not renew(uow, held_since=T0, now=T0 + LEASE + 0.6)
    assert claimed_at(uow) == T0 + LEASE + 0.5


def test_jobs_and_kinds_do_not_interfere(uow):
    assert claim(uow, "job-a", "progress", now=T0) is None
    assert claim(uow, "job-b", "progress", now=T0 + 0.1) is None
    assert claim(uow, "job-a", "summary", now=T0 + 0.2) is None
    assert claim(uow, "job-a", "progress", now=T0 + 0.3) == T0
    assert claim(uow, "job-b", "progress", now=T0 + 0.3) == T0 + 0.1
    assert not renew(uow, "job-b", "progress", held_since=T0, now=T0 + 0.4)  # job-a's time is not job-b's claim


def test_a_claim_rolled_back_is_not_held(uow):
    with uow() as tx:
        assert claim_publication(tx.session, "job-a", "progress", lease_s=LEASE, now=T0) is None
        tx.rollback()
    assert claim(uow, now=T0 + 0.1) is None


@pytest.mark.parametrize("existing", [False, True], ids=["first-claim", "lapsed-claim"])
def test_concurrent_claims_have_one_winner(uow, existing):
    """Eight transactions claim at once (each its own connection), on a new row and on a lapsed one."""
    if existing:
        claim(uow, now=T0 - 10)
    barrier = threading.Barrier(8)
    holders: list[float | None] = []

    def contend() -> None:
        with uow() as tx:
            barrier.wait()
            holder = claim_publication(tx.session, "job-a", "progress", lease_s=LEASE, now=T0)
            tx.commit()
        holders.append(holder)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(holders, key=lambda h: h is not None) == [None] + [T0] * 7
