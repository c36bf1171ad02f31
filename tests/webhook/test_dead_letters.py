"""Dead letters on the live path (the database up): an authenticated callback we refuse is kept, an unauthenticated
one is only refused; the read API lists them; a replay applies one once."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from domain import dead_letters
from domain.batches.jobs import get_job
from domain.errors import DeadLetterAlreadyReplayed
from domain.models import RobotJobItem
from tests.webhook.helpers import API_TOKEN, CALLBACK, LEGACY_SECRET, robot_body, robot_headers, sign
from webhook.callbacks import replay_dead_letter

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def letters(client, query=""):
    response = client.get(f"/api/dead-letters{query}", headers=AUTH)
    assert response.status_code == 200, response.json
    return response.json["dead_letters"]


def test_signed_callback_not_understood_is_refused_and_kept(client, job, signing_secrets):
    body = robot_body({"jobId": job.id, "results": [{"itemId": job.items[0], "status": "creado"}]})
    response = client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body, msg_id="msg_dl"))
    assert response.status_code == 422
    [letter] = letters(client)
    assert letter["auth"] == "signature" and letter["job_id"] == job.id and letter["body"] == body.decode()
    assert letter["headers"]["webhook-id"] == "msg_dl" and letter["reason"].startswith("422 validation_error")
    assert letter["body_encoding"] == "utf-8" and letter["replayed_at"] is None


def test_per_job_secret_callback_not_understood_is_kept_when_its_item_vouches(client, job):
    body = robot_body({"itemId": job.items[0], "status": "partial"})
    assert client.post(CALLBACK, data=body, headers=robot_headers(job.secret)).status_code == 422
    [letter] = letters(client)
    assert (letter["auth"], letter["job_id"]) == ("job", job.id)
    assert "X-Callback-Secret" not in letter["headers"]


def test_unauthenticated_or_unattributable_refusals_are_not_kept(client, job):
    bad_status = robot_body({"itemId": job.items[0], "status": "partial"})
    assert client.post(CALLBACK, data=bad_status, headers=robot_headers("wrong")).status_code == 422
    assert client.post(CALLBACK, data=b"\xff{", headers=robot_headers(job.secret)).status_code == 400
    no_item = robot_body({"status": "success"})
    assert client.post(CALLBACK, data=no_item, headers=robot_headers(job.secret)).status_code == 422
    assert (
        client.post(
            CALLBACK, data=robot_body({"itemId": job.items[0], "status": "success"}), headers=robot_headers("wrong")
        ).status_code
        == 401
    )
    assert letters(client) == []


def test_legacy_secret_vouches_even_for_bytes_that_are_not_utf8(make_app, settings, job):
    client = make_app(
        settings=settings.model_copy(update={"webhook_legacy_secret": SecretStr(LEGACY_SECRET)})
    ).test_client()
    assert client.post(CALLBACK, data=b"\xff\x00{", headers=robot_headers(LEGACY_SECRET)).status_code == 400
    [letter] = letters(client)
    assert (letter["auth"], letter["body_encoding"], letter["body"]) == ("legacy", "base64", "/wB7")


def test_a_result_for_another_jobs_item_is_refused_and_kept(client, make_job, signing_secrets, uow):
    job, other = make_job(), make_job(name="Otra tienda")
    body = robot_body(
        {"jobId": job.id, "results": [{"itemId": other.items[0], "status": "success", "trackingNumber": "1"}]}
    )
    assert client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body)).status_code == 403
    [letter] = letters(client, f"?job_id={job.id}")
    assert letter["reason"].startswith("403 item_not_in_job")
    assert letters(client, "?job_id=otro") == []


def test_read_api_needs_the_token_and_checks_its_parameters(client):
    assert client.get("/api/dead-letters").status_code == 401
    for query in ("?limit=0", "?limit=x", "?pending=maybe", "?color=red", "?job_id=" + "x" * 40):
        assert client.get(f"/api/dead-letters{query}", headers=AUTH).status_code == 400, query


def test_replay_applies_a_dead_letter_once(client, engine, uow, job):
    body = robot_body({"itemId": job.items[0], "status": "success", "trackingNumber": "777"})
    with uow() as tx:
        letter_id = dead_letters.add(
            tx.session,
            reason="422 validation_error: (a rule since relaxed)",
            body=body,
            headers={"Content-Type": "application/json"},
            auth="job",
            job_id=job.id,
        ).id
        tx.commit()
    assert replay_dead_letter(engine, letter_id) == "registrado: 1 cambiado(s), 0 sin cambio"
    with uow() as tx:
        assert tx.session.get(RobotJobItem, job.items[0]).tracking_number == "777"
        assert get_job(tx.session, job.id).success_count == 1
    with pytest.raises(DeadLetterAlreadyReplayed):
        replay_dead_letter(engine, letter_id)
    [shown] = letters(client)
    assert shown["replayed_at"] and shown["replay_result"].startswith("registrado")
    assert letters(client, "?pending=true") == []


def test_a_replay_that_fails_again_is_noted_and_stays_pending(client, engine, uow, make_job):
    job, other = make_job(), make_job(name="Otra tienda")
    body = robot_body({"itemId": other.items[0], "status": "success", "trackingNumber": "1"})
    with uow() as tx:
        letter_id = dead_letters.add(
            tx.session, reason="403 item_not_in_job", body=body, headers={}, auth="job", job_id=job.id
        ).id
        tx.commit()
    with pytest.raises(Exception) as failure:
        replay_dead_letter(engine, letter_id)
    assert type(failure.value).__name__ == "ItemNotInJob"
    [shown] = letters(client, "?pending=true")
    assert shown["replay_result"].startswith("falló: 403 item_not_in_job")
    with uow() as tx:
        assert tx.session.get(RobotJobItem, other.items[0]).status == "pending"
