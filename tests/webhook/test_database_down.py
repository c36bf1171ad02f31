"""The database down: callbacks are kept in the host's spool (202) and recorded once it answers; a full spool is
503 with Retry-After, logged loudly; reads answer 503; readiness says degraded; liveness stays up."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import create_engine

from domain.db import make_engine
from tests.webhook.helpers import API_TOKEN, CALLBACK, robot_body, robot_headers, sign


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.fixture(params=["postgresql", "sqlite"])
def dead_engine(request, tmp_path):
    if request.param == "postgresql":
        engine = make_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/robotjobs", connect_args={"connect_timeout": 2}
        )
    else:
        engine = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'robotjobs.db'}")
    yield engine
    engine.dispose()


def test_callback_with_database_down_is_spooled_with_202(make_app, dead_engine, signing_secrets, spool_dir, caplog):
    client = make_app(engine=dead_engine).test_client()
    body = robot_body({"itemId": "itm_x", "status": "success", "trackingNumber": "1"})
    for headers in (robot_headers("some-secret"), sign(signing_secrets[0], body)):
        response = client.post(CALLBACK, data=body, headers=headers)
        assert response.status_code == 202, response.json
        assert response.json["accepted"] is True and response.json["recorded"] is False
        assert (spool_dir / response.json["spoolEntry"]).exists()
    spooled = [r for r in caplog.records if getattr(r, "event", "") == "callback_spooled"]
    assert [r.fields["cause"] for r in spooled] == ["database_unavailable", "queued_behind_spool"]


def test_full_spool_with_database_down_is_503_with_retry_after(make_app, settings, dead_engine, caplog):
    client = make_app(
        engine=dead_engine, settings=settings.model_copy(update={"webhook_spool_max_bytes": 0})
    ).test_client()
    body = robot_body({"itemId": "itm_x", "status": "success", "trackingNumber": "1"})
    response = client.post(CALLBACK, data=body, headers=robot_headers("some-secret"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["error"] == "spool_full"
    loud = [r for r in caplog.records if getattr(r, "event", "") == "spool_full"]
    assert loud and all(r.levelname == "CRITICAL" for r in loud)


def test_read_api_and_readiness_with_database_down(make_app, dead_engine):
    client = make_app(engine=dead_engine).test_client()
    response = client.get("/api/jobs/some-job", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    ready = client.get("/readyz")
    # Still ready: callbacks go to the spool, and the robot never retries.
    assert ready.status_code == 200
    assert (ready.json["status"], ready.json["database"], ready.json["spool"]["full"]) == (
        "degraded",
        "unavailable",
        False,
    )
    assert client.get("/healthz").status_code == 200


def test_database_back_after_outage(make_app, engine, dead_engine, job, spool_dir):
    """The outage is not sticky: once the database answers, the spooled result is recorded and the next is direct."""
    down = make_app(engine=dead_engine).test_client()
    body = robot_body({"itemId": job.items[0], "status": "success", "trackingNumber": "1"})
    assert down.post(CALLBACK, data=body, headers=robot_headers(job.secret)).status_code == 202
    up = make_app(engine=engine)
    client = up.test_client()
    # Spool not empty: the next callback queues behind it.
    second = robot_body({"itemId": job.items[1], "status": "success", "trackingNumber": "2"})
    assert client.post(CALLBACK, data=second, headers=robot_headers(job.secret)).status_code == 202
    report = up.extensions["robotjobs"].inbox.replay()
    assert dict(report.outcomes) == {"recorded": 2} and report.remaining == 0
    assert list(spool_dir.glob("*.req")) == []
    third = robot_body({"itemId": job.items[2], "status": "success", "trackingNumber": "3"})
    assert client.post(CALLBACK, data=third, headers=robot_headers(job.secret)).status_code == 200
    ready = client.get("/readyz").json
    assert (ready["status"], ready["database"], ready["spool"]["entries"]) == ("ok", "ok", 0)
