"""Publication claims: one winner per job, kind and interval; the others learn how long to wait."""

from __future__ import annotations

import pytest

from domain.batches.publications import claim_publication
from domain.models import JobPublication

T0 = 1_800_000_000.0  # epoch seconds: the claims store wall-clock times


def claim(uow, job_id="job-a", kind="progress", *, now, every_s=0.9):
    with uow() as tx:
        wait = claim_publication(tx.session, job_id, kind, every_s=every_s, now=now)
        tx.commit()
    return wait


def test_the_first_claim_wins(uow):
    assert claim(uow, now=T0) == 0.0
    with uow(readonly=True) as tx:
        row = tx.session.get(JobPublication, ("job-a", "progress"))
    assert row is not None and row.claimed_at == T0


def test_a_claim_within_the_interval_gets_the_remaining_wait_and_changes_nothing(uow):
    claim(uow, now=T0)
    assert claim(uow, now=T0 + 0.3) == pytest.approx(0.6)
    assert claim(uow, now=T0 + 0.899) == pytest.approx(0.01)  # clamped: never a zero wait that would spin
    with uow(readonly=True) as tx:
        assert tx.session.get(JobPublication, ("job-a", "progress")).claimed_at == T0  # the winner's claim stays


def test_a_claim_once_the_interval_passed_wins_again_and_starts_a_new_interval(uow):
    claim(uow, now=T0)
    assert claim(uow, now=T0 + 0.9) == 0.0
    assert claim(uow, now=T0 + 1.0) == pytest.approx(0.8)
    assert claim(uow, now=T0 + 2.0) == 0.0


def test_a_wait_is_never_longer_than_the_interval(uow):
    """A claim from a clock ahead of ours (another host) does not stall this one for longer than one interval."""
    claim(uow, now=T0 + 60)
    assert claim(uow, now=T0) == pytest.approx(0.9)


def test_jobs_and_kinds_do_not_interfere(uow):
    assert claim(uow, "job-a", "progress", now=T0) == 0.0
    assert claim(uow, "job-b", "progress", now=T0 + 0.1) == 0.0
    assert claim(uow, "job-a", "summary", now=T0 + 0.2) == 0.0
    assert claim(uow, "job-a", "progress", now=T0 + 0.3) == pytest.approx(0.6)
    assert claim(uow, "job-b", "progress", now=T0 + 0.3) == pytest.approx(0.7)


def test_a_claim_rolled_back_is_not_held(uow):
    with uow() as tx:
        assert claim_publication(tx.session, "job-a", "progress", every_s=0.9, now=T0) == 0.0
        tx.rollback()
    assert claim(uow, now=T0 + 0.1) == 0.0


@pytest.mark.parametrize("existing", [False, True], ids=["first-claim", "expired-claim"])
def test_concurrent_claims_have_one_winner(uow, existing):
    """Eight transactions claim at once (each its own connection), on a new row and on an expired one."""
    import threading

    if existing:
        claim(uow, now=T0 - 10)
    barrier = threading.Barrier(8)
    waits: list[float] = []

    def contend() -> None:
        with uow() as tx:
            barrier.wait()
            wait = claim_publication(tx.session, "job-a", "progress", every_s=0.9, now=T0)
            tx.commit()
        waits.append(wait)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(waits) == [0.0] + [pytest.approx(0.9)] * 7
