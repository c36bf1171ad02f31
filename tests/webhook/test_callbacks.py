"""The callback route: both body forms, both auth modes, idempotency, another job's item, after-commit notifiers."""

from __future__ import annotations

import json

from domain import outbox
from domain.batches.jobs import get_job
from domain.events import BATCH_COMPLETED
from domain.models import Order, RobotJobItem
from tests.webhook.helpers import CALLBACK, LEGACY_SECRET, RecordingNotifier, robot_body, robot_headers, sign


def ok(item_id, tracking="7600123", **extra):
    return {"itemId": item_id, "status": "success", "trackingNumber": tracking, **extra}


def err(item_id, message="No se encontró el municipio", kind="portal"):
    return {"itemId": item_id, "status": "error", "errorType": kind, "errorMessage": message}


def post_per_order(client, job, payload, secret=None):
    return client.post(CALLBACK, data=robot_body(payload), headers=robot_headers(secret or job.secret))


def test_per_order_success_with_job_secret_is_committed_and_acknowledged(client, uow, job, progress, resume):
    response = post_per_order(client, job, ok(job.items[0], "10107"))
    assert response.status_code == 200, response.json
    body = response.json
    assert body["changed"] == [job.items[0]] and body["unchanged"] == []
    assert body["jobId"] == job.id and body["jobFinished"] is False and body["jobStatus"] == "processing"
    assert body["results"] == [{"itemId": job.items[0], "changed": True, "itemStatus": "success"}]
    with uow() as tx:
        item = tx.session.get(RobotJobItem, job.items[0])
        assert (item.status, item.tracking_number) == ("success", "10107")
        assert tx.session.get(Order, item.order_id).tracking_number == "10107"
        assert get_job(tx.session, job.id).success_count == 1
    assert progress.calls == [job.id] and resume.calls == []


def test_the_ack_is_compact_json_in_the_schema_s_order(client, job):
    response = post_per_order(client, job, ok(job.items[0], "10107"))
    assert response.status_code == 200 and response.mimetype == "application/json"
    expected = {"ok": True, "jobId": job.id, "jobFinished": False, "jobStatus": "processing",
                "changed": [job.items[0]], "unchanged": [],
                "results": [{"itemId": job.items[0], "changed": True, "itemStatus": "success"}],
                "duplicateDelivery": False}  # fmt: skip
    assert response.data == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def test_per_order_error_without_error_type_is_recorded_as_unknown(client, uow, job):
    response = post_per_order(client, job, {"itemId": job.items[0], "status": "error", "errorMessage": "Falló"})
    assert response.status_code == 200
    with uow() as tx:
        item = tx.session.get(RobotJobItem, job.items[0])
        assert (item.status, item.error_type, item.error_message) == ("error", "unknown", "Falló")


def test_unknown_fields_are_ignored(client, uow, job):
    payload = ok(job.items[0], robotVersion="2.1", durationMs=3100, extra={"nested": [1, 2]})
    assert post_per_order(client, job, payload).status_code == 200
    with uow() as tx:
        assert tx.session.get(RobotJobItem, job.items[0]).status == "success"


def test_duplicate_is_acknowledged_and_changes_nothing(client, job, snapshot, progress):
    assert post_per_order(client, job, ok(job.items[0], "111")).status_code == 200
    before = snapshot()
    again = post_per_order(client, job, ok(job.items[0], "222"))
    assert again.status_code == 200
    assert again.json["changed"] == [] and again.json["unchanged"] == [job.items[0]]
    assert again.json["results"][0] == {"itemId": job.items[0], "changed": False, "itemStatus": "success"}
    assert snapshot() == before
    assert progress.calls == [job.id]  # nothing changed the second time: no progress to publish


def test_success_then_error_re_report_keeps_the_success(client, uow, job, snapshot):
    """The robot's fatal-error path re-reports every order as error, including ones it reported as success."""
    assert post_per_order(client, job, ok(job.items[0], "10107")).status_code == 200
    before = snapshot()
    response = post_per_order(client, job, err(job.items[0], "Error fatal en el procesamiento del batch", "unknown"))
    assert response.status_code == 200 and response.json["unchanged"] == [job.items[0]]
    assert snapshot() == before
    with uow() as tx:
        item = tx.session.get(RobotJobItem, job.items[0])
        assert (item.status, item.tracking_number, item.error_message) == ("success", "10107", None)


def test_last_result_finishes_the_job_and_calls_resume_after_commit(client, uow, job, resume, progress):
    for item_id in job.items[:-1]:
        assert post_per_order(client, job, ok(item_id)).status_code == 200
    last = post_per_order(client, job, err(job.items[-1]))
    assert last.status_code == 200
    assert last.json["jobFinished"] is True and last.json["jobStatus"] == "completed"
    assert resume.calls == [job.id]
    assert progress.calls == [job.id] * (len(job.items) - 1)
    with uow() as tx:
        [event] = outbox.undelivered(tx.session, consumer=outbox.RESUME, event_type=BATCH_COMPLETED)
        assert event.payload["job_id"] == job.id and event.payload["status"] == "completed"


def test_failing_resume_notifier_still_answers_200_and_leaves_the_event_for_redelivery(make_app, uow, job, caplog):
    resume = RecordingNotifier(error=ConnectionError("Prefect API unreachable"))
    client = make_app(resume_notifier=resume).test_client()
    for item_id in job.items[:-1]:
        assert post_per_order(client, job, ok(item_id)).status_code == 200
    last = post_per_order(client, job, ok(job.items[-1]))
    assert last.status_code == 200 and last.json["jobFinished"] is True
    assert resume.calls == [job.id]
    assert any(getattr(r, "event", "") == "resume_notify_failed" for r in caplog.records)
    with uow() as tx:
        assert get_job(tx.session, job.id).status == "completed"
        [event] = outbox.undelivered(tx.session, consumer=outbox.RESUME, event_type=BATCH_COMPLETED)
        assert event.delivered_at is None and event.payload["job_id"] == job.id


def test_failing_progress_notifier_never_fails_the_callback(make_app, job):
    client = make_app(progress_notifier=RecordingNotifier(error=RuntimeError("artifact API down"))).test_client()
    assert post_per_order(client, job, ok(job.items[0])).status_code == 200


def test_signed_batch_records_every_result_in_one_request(client, uow, job, signing_secrets, resume):
    payload = {"jobId": job.id, "results": [ok(job.items[0], "501"), err(job.items[1]), ok(job.items[2], "503")]}
    body = robot_body(payload)
    response = client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body))
    assert response.status_code == 200, response.json
    assert sorted(response.json["changed"]) == sorted(job.items) and response.json["jobFinished"] is True
    assert resume.calls == [job.id]
    with uow() as tx:
        found = get_job(tx.session, job.id)
        assert (found.status, found.success_count) == ("completed", 2)


def test_batch_with_a_duplicate_inside_and_an_already_terminal_item(client, job, signing_secrets):
    assert post_per_order(client, job, ok(job.items[0], "1")).status_code == 200
    payload = {"jobId": job.id, "results": [err(job.items[0]), ok(job.items[1], "2"), err(job.items[1])]}
    body = robot_body(payload)
    response = client.post(CALLBACK, data=body, headers=sign(signing_secrets[1], body))
    assert response.status_code == 200
    assert response.json["changed"] == [job.items[1]]
    assert [r["changed"] for r in response.json["results"]] == [False, True, False]


def test_batch_with_the_job_secret(client, job):
    payload = {"jobId": job.id, "results": [ok(job.items[0])]}
    response = client.post(CALLBACK, data=robot_body(payload), headers=robot_headers(job.secret))
    assert response.status_code == 200 and response.json["changed"] == [job.items[0]]


def test_per_order_signed_callback(client, job, signing_secrets):
    body = robot_body(ok(job.items[0]))
    response = client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body))
    assert response.status_code == 200 and response.json["changed"] == [job.items[0]]


def test_replayed_webhook_id_is_acknowledged_without_processing(client, job, signing_secrets, snapshot):
    body = robot_body(ok(job.items[0]))
    headers = sign(signing_secrets[0], body, msg_id="msg_replayed")
    assert client.post(CALLBACK, data=body, headers=headers).status_code == 200
    before = snapshot()
    again = client.post(CALLBACK, data=body, headers=headers)
    assert again.status_code == 200 and again.json["duplicateDelivery"] is True and again.json["changed"] == []
    assert snapshot() == before


def test_refused_signed_request_does_not_burn_its_webhook_id(client, job, signing_secrets, snapshot):
    """A 4xx rolls back the receipt too: the sender may fix and resend with the same id."""
    body = robot_body({"jobId": job.id, "results": [ok(job.items[0]), {"itemId": "itm_nobody", "status": "error"}]})
    headers = sign(signing_secrets[0], body, msg_id="msg_retry")
    before = snapshot()
    assert client.post(CALLBACK, data=body, headers=headers).status_code == 403
    assert snapshot() == before
    fixed = robot_body({"jobId": job.id, "results": [ok(job.items[0])]})
    assert (
        client.post(CALLBACK, data=fixed, headers=sign(signing_secrets[0], fixed, msg_id="msg_retry")).status_code
        == 200
    )


def test_result_for_another_jobs_item(client, make_job, snapshot, signing_secrets):
    mine = make_job(name="Tienda A")
    theirs = make_job(name="Tienda B")
    before = snapshot()
    # Per-order: my secret does not vouch for their item; the caller cannot tell it exists.
    refused = post_per_order(client, mine, ok(theirs.items[0]), secret=mine.secret)
    assert refused.status_code == 401
    # Batch under my job id (my secret, or a signature) naming their item: 403, and my own result is not written.
    payload = {"jobId": mine.id, "results": [ok(mine.items[0]), ok(theirs.items[0])]}
    by_secret = client.post(CALLBACK, data=robot_body(payload), headers=robot_headers(mine.secret))
    assert by_secret.status_code == 403 and by_secret.json["error"] == "item_not_in_job"
    body = robot_body(payload)
    assert client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body)).status_code == 403
    # Their job id with my secret: 401.
    payload = {"jobId": theirs.id, "results": [ok(theirs.items[0])]}
    assert client.post(CALLBACK, data=robot_body(payload), headers=robot_headers(mine.secret)).status_code == 401
    assert snapshot() == before


def test_unknown_item_and_job(client, job, signing_secrets, snapshot):
    before = snapshot()
    unknown = ok("itm_does_not_exist")
    assert post_per_order(client, job, unknown).status_code == 401  # under a per-job secret: no probing
    body = robot_body(unknown)
    signed = client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body))
    assert signed.status_code == 404 and signed.json["error"] == "unknown_item"
    body = robot_body({"jobId": "no-such-job", "results": [ok(job.items[0])]})
    assert client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body)).status_code == 404
    assert client.post(CALLBACK, data=body, headers=robot_headers(job.secret)).status_code == 401
    assert snapshot() == before


def test_legacy_secret_when_enabled(make_app, settings, job, uow, snapshot):
    legacy_off = make_app().test_client()
    before = snapshot()
    assert post_per_order(legacy_off, job, ok(job.items[0]), secret=LEGACY_SECRET).status_code == 401
    assert snapshot() == before
    client = make_app(
        settings=settings.model_copy(update={"webhook_legacy_secret": _secret(LEGACY_SECRET)})
    ).test_client()
    assert post_per_order(client, job, ok(job.items[0]), secret=LEGACY_SECRET).status_code == 200
    assert post_per_order(client, job, ok("itm_unknown"), secret=LEGACY_SECRET).status_code == 404
    with uow() as tx:
        assert tx.session.get(RobotJobItem, job.items[0]).status == "success"


def _secret(value):
    from pydantic import SecretStr

    return SecretStr(value)


def test_response_does_not_wait_for_a_slow_resume(make_app, job):
    """The resume may wait on Prefect for seconds; the robot's answer must not."""
    import threading
    import time

    from flask.testing import FlaskClient

    release = threading.Event()
    calls = []
    app = make_app(resume_notifier=lambda job_id: (calls.append(job_id), release.wait(10)))
    app.test_client_class = FlaskClient  # no settling: observe the response before the notifier ends
    client = app.test_client()
    for item_id in job.items[:-1]:
        assert post_per_order(client, job, ok(item_id)).status_code == 200
    started = time.monotonic()
    assert post_per_order(client, job, ok(job.items[-1])).json["jobFinished"] is True
    assert time.monotonic() - started < 2
    release.set()
    app.extensions["robotjobs"].after_commit.join()
    assert calls == [job.id]


def test_progress_updates_for_one_job_are_coalesced_while_waiting():
    import threading

    from webhook.after_commit import AfterCommit

    running, busy, seen = threading.Event(), threading.Event(), []
    pool = AfterCommit({"progress": lambda job_id: (seen.append(job_id), running.set(), busy.wait(5))}, threads=1)
    pool.submit("progress", "job-a")  # runs now and blocks the only thread
    assert running.wait(5)
    for _ in range(5):
        pool.submit("progress", "job-b")  # waiting: kept once
    pool.submit("progress", "job-a")  # job-a's first task already runs: this newer one is kept
    busy.set()
    pool.join()
    assert sorted(seen) == ["job-a", "job-a", "job-b"]
