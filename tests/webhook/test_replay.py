"""The durable inbox end to end in one process: what is spooled and what is refused, arrival order, replay through
the live path exactly once (also across a kill), dead letters and drops at replay, the background replayer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from domain import outbox
from domain.batches.jobs import get_job
from domain.events import ROBOT_COORD_COMPLETED
from domain.models import CallbackDeadLetter, RobotJobItem
from tests.webhook.helpers import CALLBACK, robot_body, robot_headers, sign

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def ok(item_id, tracking="7600123"):
    return robot_body({"itemId": item_id, "status": "success", "trackingNumber": tracking})


def fatal(item_id):
    return robot_body(
        {
            "itemId": item_id,
            "status": "error",
            "errorType": "unknown",
            "errorMessage": "Error fatal en el procesamiento del batch",
        }
    )


def entries(spool_dir) -> list[str]:
    return sorted(p.name for p in spool_dir.glob("*.req"))


def dead_letters(engine) -> list[CallbackDeadLetter]:
    from sqlmodel import Session, select

    with Session(engine) as session:
        return list(session.exec(select(CallbackDeadLetter).order_by(CallbackDeadLetter.id)).all())


@pytest.fixture
def down(make_app, down_engine):
    """The webhook while the database does not answer."""
    return make_app(engine=down_engine)


@pytest.fixture
def up(make_app, engine):
    """The same host's webhook once the database is back."""
    return make_app(engine=engine)


def test_cheap_refusals_are_answered_and_never_spooled(down, job, signing_secrets, spool_dir):
    client = down.test_client()
    body = ok(job.items[0])
    assert client.post(CALLBACK, data=body, headers=robot_headers(None)).status_code == 401
    assert client.post(CALLBACK, data=body, headers={"X-Callback-Secret": "sécret"}).status_code == 401
    forged = sign(signing_secrets[0], body)
    forged["webhook-signature"] = "v1,AAAA"
    assert client.post(CALLBACK, data=body, headers=forged).status_code == 401
    stale = sign(signing_secrets[0], body, timestamp=time.time() - 3600)
    assert client.post(CALLBACK, data=body, headers=stale).status_code == 401
    assert client.post(CALLBACK, data=b"x" * (64 * 1024 + 1), headers=robot_headers(job.secret)).status_code == 413
    assert entries(spool_dir) == []
    # Accepted ones are spooled; then, queued behind them, a body that is not JSON under a per-job secret is still
    # refused at once (it could never be attributed, so never kept).
    assert client.post(CALLBACK, data=body, headers=robot_headers(job.secret)).status_code == 202
    assert client.post(CALLBACK, data=b"\xff{", headers=robot_headers(job.secret)).status_code == 400
    assert len(entries(spool_dir)) == 1


def test_a_spooled_success_is_not_overtaken_by_the_fatal_re_report(down, up, uow, job, spool_dir):
    assert (
        down.test_client().post(CALLBACK, data=ok(job.items[0], "10107"), headers=robot_headers(job.secret)).status_code
        == 202
    )
    client = up.test_client()
    # The database is back, but the spool still holds the success: the error re-report queues behind it.
    response = client.post(CALLBACK, data=fatal(job.items[0]), headers=robot_headers(job.secret))
    assert response.status_code == 202, response.json
    assert len(entries(spool_dir)) == 2
    report = up.extensions["robotjobs"].inbox.replay()
    assert dict(report.outcomes) == {"recorded": 2} and report.remaining == 0 and entries(spool_dir) == []
    with uow() as tx:
        item = tx.session.get(RobotJobItem, job.items[0])
        assert (item.status, item.tracking_number) == ("success", "10107")
        found = get_job(tx.session, job.id)
        assert (found.success_count, found.error_count) == (1, 0)


def test_replay_stops_at_a_database_error_and_keeps_the_order(down, job, spool_dir):
    client = down.test_client()
    for item_id in job.items:
        assert client.post(CALLBACK, data=ok(item_id), headers=robot_headers(job.secret)).status_code == 202
    before = entries(spool_dir)
    report = down.extensions["robotjobs"].inbox.replay()
    assert report.stopped_by == "database_unavailable" and report.applied == 0 and entries(spool_dir) == before


def test_a_signed_request_is_checked_as_of_its_arrival(make_app, down_engine, engine, uow, job, signing_secrets):
    """Replayed an hour later, the signature's timestamp is judged against the arrival time kept in the spool."""
    body = robot_body(
        {"jobId": job.id, "results": [{"itemId": i, "status": "success", "trackingNumber": "1"} for i in job.items]}
    )
    assert (
        make_app(engine=down_engine)
        .test_client()
        .post(CALLBACK, data=body, headers=sign(signing_secrets[0], body))
        .status_code
        == 202
    )
    later = make_app(engine=engine, clock=lambda: time.time() + 3600)
    assert dict(later.extensions["robotjobs"].inbox.replay().outcomes) == {"recorded": 1}
    with uow() as tx:
        assert get_job(tx.session, job.id).status == "completed"


def test_unauthenticated_spooled_request_is_dropped_not_dead_lettered(down, up, engine, job, spool_dir, caplog):
    client = down.test_client()
    assert client.post(CALLBACK, data=ok(job.items[0]), headers=robot_headers("a-wrong-secret")).status_code == 202
    assert client.post(CALLBACK, data=ok("itm_nobody"), headers=robot_headers(job.secret)).status_code == 202
    assert dict(up.extensions["robotjobs"].inbox.replay().outcomes) == {"dropped": 2}
    assert entries(spool_dir) == [] and dead_letters(engine) == []
    dropped = [r for r in caplog.records if getattr(r, "event", "") == "spool_entry_dropped"]
    assert len(dropped) == 2 and all(r.fields["status"] == 401 and r.fields["spool_entry"] for r in dropped)
    assert "a-wrong-secret" not in caplog.text


def test_an_authenticated_request_that_fails_at_replay_is_dead_lettered(
    down, up, engine, uow, make_job, signing_secrets, spool_dir
):
    job, other = make_job(), make_job(name="Otra tienda")
    stranger = robot_body(
        {"jobId": job.id, "results": [{"itemId": other.items[0], "status": "success", "trackingNumber": "9"}]}
    )
    not_understood = robot_body({"itemId": job.items[0], "status": "partial"})
    client = down.test_client()
    assert (
        client.post(CALLBACK, data=stranger, headers=sign(signing_secrets[0], stranger, msg_id="msg_x")).status_code
        == 202
    )
    assert client.post(CALLBACK, data=not_understood, headers=robot_headers(job.secret)).status_code == 202
    report = up.extensions["robotjobs"].inbox.replay()
    assert dict(report.outcomes) == {"dead_lettered": 2} and entries(spool_dir) == []
    first, second = dead_letters(engine)
    assert first.reason.startswith("403 item_not_in_job") and first.headers["x-robotjobs-auth"] == "signature"
    assert first.headers["webhook-id"] == "msg_x" and first.body.encode() == stranger and first.job_id == job.id
    assert second.reason.startswith("422 validation_error") and "status" in second.reason
    assert second.headers["x-robotjobs-auth"] == "job" and second.job_id == job.id
    assert "X-Callback-Secret" not in second.headers and job.secret not in json.dumps(second.headers)
    assert second.headers["x-robotjobs-spool-entry"]
    with uow() as tx:
        assert tx.session.get(RobotJobItem, other.items[0]).status == "pending"


KILLER = textwrap.dedent("""
    import os, signal, sys
    from domain.settings import get_settings
    from webhook import create_app
    from webhook.spool import Spool

    def killed_before_delete(self, name):
        os.kill(os.getpid(), signal.SIGKILL)  # committed, file still there: the worst moment to die

    Spool.delete = killed_before_delete
    settings = get_settings(database_url=sys.argv[1], webhook_spool_dir=sys.argv[2])
    app = create_app(settings, resume_notifier=lambda job_id: None, progress_notifier=lambda job_id: None,
                     replay_in_background=False)
    app.extensions["robotjobs"].inbox.replay()
""")


def test_replay_is_exactly_once_across_a_kill_between_commit_and_delete(
    down, up, engine, uow, job, database_url, spool_dir
):
    client = down.test_client()
    for n, item_id in enumerate(job.items):
        assert client.post(CALLBACK, data=ok(item_id, f"20{n}"), headers=robot_headers(job.secret)).status_code == 202
    spooled = entries(spool_dir)
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, database_url, str(spool_dir)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert entries(spool_dir) == spooled  # the first entry was applied and committed, but its file is still there
    with uow() as tx:
        assert get_job(tx.session, job.id).success_count == 1
    report = up.extensions["robotjobs"].inbox.replay()
    assert dict(report.outcomes) == {"duplicate": 1, "recorded": len(job.items) - 1} and entries(spool_dir) == []
    with uow() as tx:
        found = get_job(tx.session, job.id)
        assert (found.success_count, found.error_count, found.status) == (len(job.items), 0, "completed")
        completed = outbox.events_of(tx.session, event_type=ROBOT_COORD_COMPLETED)
        assert len(completed) == len(job.items) == len({e.aggregate_id for e in completed})
    with engine.connect() as conn:
        receipts = conn.execute(
            text("SELECT count(*) FROM webhook_receipts WHERE webhook_id LIKE 'spool:%'")
        ).scalar_one()
    assert receipts == len(job.items)


def test_an_entry_failing_for_an_unknown_reason_is_retried_then_held(up, job, spool_dir, monkeypatch, caplog):
    inbox = up.extensions["robotjobs"].inbox
    name = inbox.spool.write(robot_headers(job.secret), ok(job.items[0]))
    calls = []

    def broken(entry):
        calls.append(entry.name)
        raise RuntimeError("a bug")

    monkeypatch.setattr(inbox, "_apply", broken)
    for _ in range(4):
        assert inbox.replay().stopped_by == "error" and entries(spool_dir) == [name]
    assert dict(inbox.replay().outcomes) == {"held": 1}
    assert calls == [name] * 5 and entries(spool_dir) == [] and (spool_dir / "held" / name).exists()
    assert any(getattr(r, "event", "") == "spool_entry_held" and r.levelname == "CRITICAL" for r in caplog.records)


def test_readiness_shows_the_spool(down, make_app, settings, down_engine, job):
    client = down.test_client()
    assert client.post(CALLBACK, data=ok(job.items[0]), headers=robot_headers(job.secret)).status_code == 202
    spool = client.get("/readyz").json["spool"]
    assert spool["entries"] == 1 and spool["bytes"] > 0 and spool["oldest_age_s"] >= 0
    assert spool["replaying"] is False and spool["full"] is False and spool["held"] == 0
    with down.extensions["robotjobs"].inbox.spool.replay_lock():
        assert client.get("/readyz").json["spool"]["replaying"] is True
    tight = make_app(engine=down_engine, settings=settings.model_copy(update={"webhook_spool_max_bytes": 64 * 1024}))
    ready = tight.test_client().get("/readyz")
    assert ready.status_code == 503 and ready.json["status"] == "unavailable" and ready.json["spool"]["full"] is True


def test_the_background_replayer_drains_the_spool_once_the_database_answers(
    make_app, down_engine, engine, uow, job, spool_dir
):
    """In-process outage (both databases): the database "comes back" by handing the app a working engine."""
    app = make_app(engine=down_engine, replay_in_background=True)
    client = app.test_client()
    for item_id in job.items:
        assert client.post(CALLBACK, data=ok(item_id), headers=robot_headers(job.secret)).status_code == 202
    time.sleep(1.5)  # the replayer tries, finds the database down, keeps every entry
    assert len(entries(spool_dir)) == len(job.items)
    app.extensions["robotjobs"].engine = engine
    deadline = time.monotonic() + 10
    while entries(spool_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert entries(spool_dir) == []
    with uow() as tx:
        assert get_job(tx.session, job.id).success_count == len(job.items)


def test_a_database_that_hangs_instead_of_refusing_is_spooled_in_seconds(make_app, job, spool_dir):
    """A server that takes the connection and never answers (a dead link, not a refused port): connect_timeout
    (domain/db.py) turns it into a spooled callback well within gunicorn's 60 s worker timeout."""
    import socket

    from domain.db import make_engine

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/robotjobs")
        try:
            started = time.monotonic()
            response = (
                make_app(engine=engine)
                .test_client()
                .post(CALLBACK, data=ok(job.items[0]), headers=robot_headers(job.secret))
            )
            elapsed = time.monotonic() - started
        finally:
            engine.dispose()
    assert response.status_code == 202 and 4 <= elapsed < 15, elapsed
    assert len(entries(spool_dir)) == 1
