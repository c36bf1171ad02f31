"""The database down: callbacks and reads answer 503 with Retry-After, logged loudly; liveness stays up."""

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


def test_callback_with_database_down_is_503_with_retry_after(make_app, dead_engine, signing_secrets, caplog):
    client = make_app(engine=dead_engine).test_client()
    body = robot_body({"itemId": "itm_x", "status": "success", "trackingNumber": "1"})
    for headers in (robot_headers("some-secret"), sign(signing_secrets[0], body)):
        response = client.post(CALLBACK, data=body, headers=headers)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json["error"] == "database_unavailable"
    loud = [r for r in caplog.records if getattr(r, "event", "") == "database_unavailable"]
    assert loud and all(r.levelname == "CRITICAL" for r in loud)


def test_read_api_and_readiness_with_database_down(make_app, dead_engine):
    client = make_app(engine=dead_engine).test_client()
    response = client.get("/api/jobs/some-job", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json == {"status": "unavailable", "database": "unavailable"}
    assert client.get("/healthz").status_code == 200


def test_database_back_after_outage(make_app, engine, dead_engine, job):
    """The 503 is not sticky: the same process records results once the database answers again."""
    down = make_app(engine=dead_engine).test_client()
    body = robot_body({"itemId": job.items[0], "status": "success", "trackingNumber": "1"})
    assert down.post(CALLBACK, data=body, headers=robot_headers(job.secret)).status_code == 503
    up = make_app(engine=engine).test_client()
    assert up.post(CALLBACK, data=body, headers=robot_headers(job.secret)).status_code == 200
    assert up.get("/readyz").json == {"status": "ok", "database": "ok"}
