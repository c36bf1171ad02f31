"""The dispatch step against the simulator on loopback: claimed once, sent once, fail fast on a definite refusal,
wait on an unknown outcome, no secret returned."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from domain.batches.jobs import get_job, get_job_view
from domain.db import UnitOfWork
from flows.dispatch import dispatch_once
from flows.robot_client import DispatchOutcomeUnknown, DispatchRefused, dispatch_batch
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
def test_refusal_fails_the_job_with_a_reason_on_every_item(
    engine, settings, simulator, started_job, status, reason_part
):
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


def test_a_robot_that_takes_the_connection_and_never_answers_is_unknown_not_refused():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(DispatchOutcomeUnknown) as unknown:
            dispatch_batch(url, {"jobId": "j"}, timeout_s=0.5)
    assert "ReadTimeout" in unknown.value.reason and "No se reenvía" in unknown.value.reason


def _raising(error: type[httpx.TransportError]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("injected", request=request)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.RemoteProtocolError])
def test_no_answer_after_sending_is_an_unknown_outcome(error):
    with pytest.raises(DispatchOutcomeUnknown):
        dispatch_batch("http://robot.invalid", {"jobId": "j"}, timeout_s=1, transport=_raising(error))


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError])
def test_a_request_that_never_reached_the_robot_is_a_refusal(error):
    with pytest.raises(DispatchRefused) as refused:
        dispatch_batch("http://robot.invalid", {"jobId": "j"}, timeout_s=1, transport=_raising(error))
    assert "el lote no se envió" in refused.value.reason


def test_dns_failure_is_a_refusal():
    with pytest.raises(DispatchRefused):
        dispatch_batch("http://no-such-robot.invalid", {"jobId": "j"}, timeout_s=2)


def test_a_2xx_with_an_unreadable_body_is_still_accepted():
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, content=b"{not json", headers={"content-type": "application/json"})
    )
    answer = dispatch_batch("http://robot.invalid", {"jobId": "j"}, timeout_s=1, transport=transport)
    assert (answer.status_code, answer.message) == (200, None)


@pytest.mark.parametrize("how", ["late_answer", "reset"])
def test_unknown_outcome_keeps_the_job_waiting_and_never_resends(engine, settings, simulator, started_job, how):
    # The robot starts working before it answers: here its 200 comes after our timeout, or never (reset).
    if how == "late_answer":
        simulator.configure(answer_delay=settings.robot_dispatch_timeout_s + 1)
    else:
        simulator.configure(drop_answer=True)

    result = dispatch_once(engine, settings, started_job)

    assert (result.sent, result.accepted, result.outcome_unknown) == (True, False, True)
    assert "puede estar procesándolo" in result.reason
    with UnitOfWork(engine, readonly=True) as uow:
        view = get_job_view(uow.session, started_job)
    assert (view.job.status, view.job.dispatch_state) == ("processing", "unknown")
    assert view.job.failure_reason is None and {e.item.status for e in view.items} == {"pending"}
    assert dispatch_once(engine, settings, started_job).sent is False  # a rerun never sends it again
    assert simulator.state()["posts"] == {started_job: 1}
    assert simulator.state()["batches"][0]["jobId"] == started_job  # the robot did take it


@pytest.mark.parametrize("problem", ["no_key", "wrong_key"])
def test_an_unreadable_portal_login_fails_the_job_before_the_claim(engine, settings, simulator, started_job, problem):
    if problem == "no_key":
        settings = settings.model_copy(update={"credentials_key": None, "credentials_key_autogenerate": False})
        said = "CREDENTIALS_KEY no está configurada"
    else:
        settings = settings.model_copy(update={"credentials_key": SecretStr(Fernet.generate_key().decode())})
        said = "no se puede descifrar"

    result = dispatch_once(engine, settings, started_job)

    assert result.sent is False and said in result.reason
    with UnitOfWork(engine, readonly=True) as uow:
        view = get_job_view(uow.session, started_job)
    assert (view.job.status, view.job.dispatch_state) == ("failed", "refused")
    assert view.job.dispatched_at is None and view.job.callback_secret_hash is None  # never claimed
    assert all(said in e.item.error_message for e in view.items)
    assert simulator.state()["posts"] == {}


def test_a_claimed_job_is_never_failed_by_a_rerun_that_cannot_read_the_key(engine, settings, simulator, started_job):
    assert dispatch_once(engine, settings, started_job).accepted
    keyless = settings.model_copy(update={"credentials_key": None, "credentials_key_autogenerate": False})

    again = dispatch_once(engine, keyless, started_job)  # a recovery run on a host without the key

    assert (again.sent, again.reason) == (False, None)
    with UnitOfWork(engine, readonly=True) as uow:
        assert get_job(uow.session, started_job).status == "processing"


def test_an_http_robot_gets_no_ca_bundle_and_https_keeps_full_verification():
    """The bare context of an http:// robot would refuse any certificate; an https:// robot keeps httpx's default."""
    import ssl

    from flows.robot_client import _tls_for

    bare = _tls_for("http://127.0.0.1:8001/api/crear-pedidos-batch")
    assert isinstance(bare, ssl.SSLContext)
    assert bare.verify_mode == ssl.CERT_REQUIRED and bare.check_hostname
    assert bare.cert_store_stats()["x509_ca"] == 0  # no CA: were it ever used, nothing would verify
    assert _tls_for("HTTPS://robot.example/api/crear-pedidos-batch") is True
