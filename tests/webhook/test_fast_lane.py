"""The plain callback's lane in front of Flask (webhook/fast_lane.py): on PostgreSQL it answers the robot's plain
per-order result as the route would, without Flask's request machinery; everything else reaches the route once,
with its body, and is not tried in one round trip again."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select
from werkzeug.test import Client

from domain import dead_letters
from domain.db import UnitOfWork
from domain.events import ROBOT_COORD_COMPLETED
from domain.models import OutboxEvent, RobotJobItem
from tests.webhook.helpers import CALLBACK, robot_body, robot_headers, sign
from tests.webhook.test_dead_letters import letters
from webhook import callbacks


@pytest.fixture
def routed(app):
    """How many requests reached Flask's request machinery (its before_request hooks)."""
    count = [0]
    app.before_request(lambda: count.__setitem__(0, count[0] + 1))
    return count


@pytest.fixture
def one_round_trips(monkeypatch):
    """The calls of the one-round-trip record, whoever makes them."""
    calls = []
    real = callbacks.report_item_result

    def counted(*args, **kwargs):
        calls.append(args[1].item_id)
        return real(*args, **kwargs)

    monkeypatch.setattr(callbacks, "report_item_result", counted)
    return calls


@pytest.fixture
def postgres(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("the lane records on PostgreSQL only (SQLite: every callback goes to the route)")


def _http_lines(caplog):
    return [r.fields for r in caplog.records if getattr(r, "event", "") == "http_request"]


def _success(item_id: str, tracking: str = "10107") -> bytes:
    return robot_body({"itemId": item_id, "status": "success", "trackingNumber": tracking})


@pytest.mark.usefixtures("postgres")
def test_a_plain_result_is_recorded_and_answered_by_the_lane_with_the_route_s_answer_and_line(
    client, job, routed, uow, caplog, progress
):
    caplog.set_level("INFO", logger="robotjobs.webhook")
    headers = {**robot_headers(job.secret), "X-Request-Id": "req-lane-1"}
    response = client.post(CALLBACK, data=_success(job.items[0]), headers=headers)

    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["X-Request-Id"] == "req-lane-1"
    assert response.json["changed"] == [job.items[0]] and response.json["jobStatus"] == "processing"
    assert routed[0] == 0  # Flask's request machinery never ran
    with uow() as tx:
        assert tx.session.get(RobotJobItem, job.items[0]).tracking_number == "10107"
    [line] = _http_lines(caplog)
    assert line["request_id"] == "req-lane-1" and line["job_id"] == job.id and line["item_id"] == job.items[0]
    assert (line["method"], line["path"], line["status"], line["user_agent"]) == ("POST", CALLBACK, 200, "node")
    assert (line["auth"], line["changed"], line["results"]) == ("secret", 1, 1)
    assert progress.calls == [job.id]  # the after-commit work, as the route queues it

    # The route's own answer to the same request for another item (the app without the lane): the same bytes and
    # headers but the ids.
    route = Client(client.application.wsgi_app.flask_wsgi)
    other = route.post(CALLBACK, data=_success(job.items[1]), headers={**headers, "X-Request-Id": "req-route-1"})
    client.application.extensions["robotjobs"].after_commit.join()
    assert routed[0] == 1 and other.status_code == 200
    assert other.data == response.data.replace(job.items[0].encode(), job.items[1].encode())
    assert dict(other.headers) == {**dict(response.headers), "X-Request-Id": "req-route-1"}
    assert [line["status"] for line in _http_lines(caplog)] == [200, 200]


@pytest.mark.usefixtures("postgres")
def test_what_the_lane_cannot_record_reaches_the_route_once_with_its_body(client, job, routed, one_round_trips):
    # A status the protocol does not know, under the job's secret: the route refuses it and keeps it, body intact.
    unknown_status = robot_body({"itemId": job.items[0], "status": "partial"})
    assert client.post(CALLBACK, data=unknown_status, headers=robot_headers(job.secret)).status_code == 422
    # An item nobody dispatched: the one round trip finds nothing; the route answers 401, not trying it again.
    stranger = _success("no-such-item")
    assert client.post(CALLBACK, data=stranger, headers=robot_headers(job.secret)).status_code == 401
    assert routed[0] == 2 and one_round_trips == ["no-such-item"]
    [letter] = letters(client)
    with UnitOfWork(client.application.extensions["robotjobs"].engine, readonly=True) as tx:
        assert dead_letters.raw_body(dead_letters.get(tx.session, letter["id"])) == unknown_status


@pytest.mark.usefixtures("postgres")
def test_a_database_error_in_the_lane_leaves_the_result_to_the_route_which_records_it_once(
    client, job, routed, monkeypatch, uow
):
    def dropped(*args, **kwargs):
        raise OperationalError("SELECT robotjobs_report_one(...)", {}, Exception("server closed the connection"))

    monkeypatch.setattr(callbacks, "report_item_result", dropped)
    response = client.post(CALLBACK, data=_success(job.items[0]), headers=robot_headers(job.secret))
    assert response.status_code == 200 and response.json["changed"] == [job.items[0]]
    assert routed[0] == 1
    with uow() as tx:
        assert tx.session.get(RobotJobItem, job.items[0]).status == "success"
        completed = tx.session.exec(select(OutboxEvent).where(OutboxEvent.event_type == ROBOT_COORD_COMPLETED))
        assert len(completed.all()) == 1


def test_signed_callbacks_and_other_routes_pass_the_lane_untouched(
    client, job, routed, signing_secrets, one_round_trips
):
    body = robot_body({"jobId": job.id, "results": [{"itemId": job.items[0], "status": "success",
                                                       "trackingNumber": "1"}]})  # fmt: skip
    assert client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body)).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert routed[0] == 2 and one_round_trips == []


def test_the_lane_records_on_postgresql_only_and_sqlite_s_callbacks_go_to_the_route(client, job, routed, engine):
    assert client.post(CALLBACK, data=_success(job.items[0]), headers=robot_headers(job.secret)).status_code == 200
    assert routed[0] == (1 if engine.dialect.name == "sqlite" else 0)


@pytest.mark.usefixtures("postgres")
def test_a_fault_of_ours_in_the_lane_leaves_the_result_to_the_route_and_is_logged(client, job, routed, monkeypatch,
                                                                                   uow, caplog):  # fmt: skip
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the lane")

    monkeypatch.setattr(callbacks, "report_item_result", broken)
    response = client.post(CALLBACK, data=_success(job.items[0]), headers=robot_headers(job.secret))
    assert response.status_code == 200 and response.json["changed"] == [job.items[0]] and routed[0] == 1
    with uow() as tx:
        assert tx.session.get(RobotJobItem, job.items[0]).status == "success"
    [failed] = [r for r in caplog.records if getattr(r, "event", "") == "fast_lane_failed"]
    assert failed.levelname == "ERROR" and failed.fields["error"] == "RuntimeError"
