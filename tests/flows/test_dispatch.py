"""The dispatch step against the simulator on loopback: claimed once, sent once, fail fast, no secret returned."""

from __future__ import annotations

import logging
import socket

import pytest

from domain.db import UnitOfWork
from domain.jobs import get_job, get_job_view
from flows.dispatch import dispatch_once
from flows.robot_client import DispatchRefused, dispatch_batch
from simulator.server import unused_loopback_url


def test_dispatch_sends_once_and_marks_accepted(engine, settings, simulator, started_job, caplog):
    caplog.set_level(logging.DEBUG)
    result = dispatch_once(engine, settings, started_job)

    assert (result.sent, result.accepted, result.status_code) == (True, True, 200)
    with UnitOfWork(engine, readonly=True) as uow:
        job = get_job(uow.session, started_job)
        assert job.dispatch_state == "accepted" and len(job.callback_secret_hash) == 64
    assert simulator.state()["posts"] == {started_job: 1}
    # The result and the logs carry neither the portal password nor the callback secret.
    assert "demo-portal-password" not in result.model_dump_json() + caplog.text

    again = dispatch_once(engine, settings, started_job)  # a resumed or rerun flow
    assert (again.sent, again.accepted) == (False, False)
    assert simulator.state()["posts"] == {started_job: 1}


@pytest.mark.parametrize(
    ("status", "reason_part"),
    [(409, "HTTP 409"), (500, "HTTP 500"), (400, "HTTP 400"), ("unreachable", "No se pudo conectar")],
)
def test_refusal_fails_the_job_with_a_reason_on_every_item(engine, settings, simulator, started_job, status, reason_part):
    if status == "unreachable":
        settings = settings.model_copy(update={"robot_url": unused_loopback_url()})
    else:
        simulator.configure(dispatch_status=status)

    result = dispatch_once(engine, settings, started_job)

    assert result.accepted is False and reason_part in result.reason
    with UnitOfWork(engine, readonly=True) as uow:
        view = get_job_view(uow.session, started_job)
    assert view.job.status == "failed" and view.job.dispatch_state == "refused"
    assert {(e.item.status, e.item.error_type) for e in view.items} == {("error", "dispatch")}
    assert all(reason_part in e.item.error_message for e in view.items)
    assert simulator.state()["posts"].get(started_job, 0) == (0 if status == "unreachable" else 1)


def test_robot_client_timeout_is_a_refusal():
    # A robot that takes the connection and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(DispatchRefused) as refused:
            dispatch_batch(url, {"jobId": "j"}, timeout_s=0.5)
    assert "no respondió en 0.5 s" in refused.value.reason
