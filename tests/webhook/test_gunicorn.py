"""The webhook under a real gunicorn on loopback: the existing robot's exact requests, signed batches, concurrency,
Prefect down during the last result, refusals on the wire, and logs that correlate and never hold a secret."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from domain import outbox
from domain.batches.jobs import get_job
from domain.events import BATCH_COMPLETED
from domain.models import RobotJobItem
from tests.webhook.gunicorn_server import GunicornServer, free_port
from tests.webhook.helpers import API_TOKEN, CALLBACK, robot_body, sign

pytestmark = pytest.mark.e2e

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(database_url, migrated_engine, signing_secrets, tmp_path_factory):
    env = {
        "DATABASE_URL": database_url,
        "WEBHOOK_SIGNING_SECRETS": ",".join(signing_secrets),
        "API_TOKEN": API_TOKEN,
        "WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY),
        "WEBHOOK_SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
        # Prefect is down: nothing listens on this port. The after-commit resume must fail quietly.
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
    }
    # Up to 2 min to boot: each worker imports Prefect (the relay), 30 s and more on a loaded 2-core machine.
    with GunicornServer(
        env=env, log_path=tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", ready_timeout_s=120
    ) as running:
        yield running


def node_fetch(server, body: bytes, secret: str | None) -> tuple[int, dict]:
    """Replay the existing robot's request byte for byte: Node's fetch (undici) headers, compact UTF-8 JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", CALLBACK, skip_host=True, skip_accept_encoding=True)
    conn.putheader("host", f"127.0.0.1:{server.port}")
    conn.putheader("connection", "keep-alive")
    conn.putheader("Content-Type", "application/json")
    if secret is not None:
        conn.putheader("X-Callback-Secret", secret)
    conn.putheader("accept", "*/*")
    conn.putheader("accept-language", "*")
    conn.putheader("sec-fetch-mode", "cors")
    conn.putheader("user-agent", "node")
    conn.putheader("accept-encoding", "gzip, deflate")
    conn.putheader("content-length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    payload = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, payload


def test_existing_robot_request_replayed_exactly(server, uow, job):
    body = robot_body(
        {
            "itemId": job.items[0],
            "status": "error",
            "errorType": "portal",
            "errorMessage": "No se encontró el municipio",
        }
    )
    assert "ó".encode() in body and b"\\u" not in body  # non-ASCII travels unescaped, as Node sends it
    status, payload = node_fetch(server, body, job.secret)
    assert status == 200 and payload["changed"] == [job.items[0]]
    body = robot_body({"itemId": job.items[1], "status": "success", "trackingNumber": "76001234"})
    assert node_fetch(server, body, job.secret)[0] == 200
    with uow() as tx:
        failed = tx.session.get(RobotJobItem, job.items[0])
        assert (failed.status, failed.error_message) == ("error", "No se encontró el municipio")
        assert tx.session.get(RobotJobItem, job.items[1]).tracking_number == "76001234"
    # The same request again (the robot's re-sent batches): 200, nothing changed.
    status, payload = node_fetch(server, body, job.secret)
    assert status == 200 and payload["unchanged"] == [job.items[1]]


def test_robot_without_secret_header_is_refused(server, job, snapshot):
    before = snapshot()
    body = robot_body({"itemId": job.items[0], "status": "success", "trackingNumber": "1"})
    assert node_fetch(server, body, None)[0] == 401
    assert snapshot() == before


def test_signed_batch_and_prefect_down_during_the_last_result(server, uow, job, signing_secrets):
    """Prefect is unreachable: the batch that finishes the job is still 200 and the resume event stays queued."""
    body = robot_body(
        {
            "jobId": job.id,
            "results": [
                {"itemId": item_id, "status": "success", "trackingNumber": f"90{n}"}
                for n, item_id in enumerate(job.items)
            ],
        }
    )
    response = httpx.post(server.url + CALLBACK, content=body, headers=sign(signing_secrets[1], body), timeout=30)
    assert response.status_code == 200 and response.json()["jobFinished"] is True
    with uow() as tx:
        assert get_job(tx.session, job.id).status == "completed"
        [event] = outbox.undelivered(tx.session, consumer=outbox.RESUME, event_type=BATCH_COMPLETED)
        assert event.payload["job_id"] == job.id
    replay = httpx.post(server.url + CALLBACK, content=body, headers=response.request.headers, timeout=30)
    assert replay.status_code == 200 and replay.json()["duplicateDelivery"] is True


def test_concurrent_callbacks_with_duplicates_count_exactly(server, uow, make_job):
    job = make_job(orders=6)
    requests = []
    for n, item_id in enumerate(job.items):
        requests += [{"itemId": item_id, "status": "success", "trackingNumber": f"10{n}"}] * 3
        requests.append(
            {
                "itemId": item_id,
                "status": "error",
                "errorType": "unknown",
                "errorMessage": "Error fatal en el procesamiento del batch",
            }
        )

    def send(payload):
        return node_fetch(server, robot_body(payload), job.secret)

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(send, requests))
    assert all(status == 200 for status, _ in results)
    changed = [item for _, payload in results for item in payload["changed"]]
    assert sorted(changed) == sorted(job.items)  # each item changed exactly once, whatever the interleaving
    with uow() as tx:
        found = get_job(tx.session, job.id)
        assert found.success_count + found.error_count == found.total_items and found.status in ("completed", "failed")
        assert len(outbox.events_of(tx.session, event_type=BATCH_COMPLETED)) == 1


def _raw_request(server, head: bytes, body: bytes = b"") -> int:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


def test_refusals_on_the_wire_are_never_5xx(server, job, snapshot):
    before = snapshot()
    body = robot_body({"itemId": job.items[0], "status": "success", "trackingNumber": "1"})
    non_ascii = (
        b"POST " + CALLBACK.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Callback-Secret: s\xc3\xa9cret\xe2\x82\xac\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    assert _raw_request(server, non_ascii, body) in (400, 401)
    bad_sig = (
        b"POST " + CALLBACK.encode() + b" HTTP/1.1\r\nHost: x\r\nwebhook-id: \xff\xfe\r\nwebhook-timestamp: 1\r\n"
        b"webhook-signature: v1,@@@\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    assert _raw_request(server, bad_sig, body) in (400, 401)
    huge = robot_body({"itemId": job.items[0], "status": "error", "pad": "x" * MAX_BODY})
    response = httpx.post(server.url + CALLBACK, content=huge, headers={"X-Callback-Secret": job.secret}, timeout=30)
    assert response.status_code == 413
    response = httpx.post(
        server.url + CALLBACK, content=b"\xff{", headers={"X-Callback-Secret": job.secret}, timeout=30
    )
    assert response.status_code == 400
    assert snapshot() == before


def test_read_api_and_health_over_http(server, job):
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    assert httpx.get(f"{server.url}/api/jobs/{job.id}", headers=headers).json()["id"] == job.id
    text = httpx.get(f"{server.url}/api/jobs/{job.id}/summary?format=text", headers=headers)
    assert text.status_code == 200 and text.text.startswith("✅ 0 pedido(s) creado(s):")
    assert httpx.get(f"{server.url}/api/jobs/{job.id}").status_code == 401
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/openapi.json").json()["openapi"] == "3.1.0"


def test_logs_are_json_with_correlation_ids_and_never_a_secret(server, job, signing_secrets):
    body = robot_body({"itemId": job.items[0], "status": "success", "trackingNumber": "555"})
    node_fetch(server, body, job.secret)
    node_fetch(server, body, "a-wrong-secret-that-must-not-be-logged")
    signed = robot_body({"jobId": job.id, "results": [{"itemId": job.items[1], "status": "error"}]})
    httpx.post(server.url + CALLBACK, content=signed, headers=sign(signing_secrets[0], signed, msg_id="msg_logged"))
    threading.Event().wait(0.5)  # let the after-response notifiers write their lines
    logs = server.logs()
    for secret in (
        job.secret,
        "a-wrong-secret-that-must-not-be-logged",
        *signing_secrets,
        signing_secrets[0].removeprefix("whsec_"),
        API_TOKEN,
    ):
        assert secret not in logs
    ours = [
        json.loads(line)
        for line in logs.splitlines()
        if line.startswith("{") and '"logger": "robotjobs.webhook"' in line
    ]
    # One line per request: a recorded callback's outcome is on its `http_request` line, not a line of its own.
    requests = [line for line in ours if line["event"] == "http_request" and line.get("path") == CALLBACK]
    recorded = [line for line in requests if "changed" in line]
    assert not [line for line in ours if line["event"] == "callback_recorded"]
    assert any(
        line.get("item_id") == job.items[0]
        and line.get("job_id") == job.id
        and line.get("flow_run_id")
        and line.get("request_id")
        and line.get("status") == 200
        and (line.get("auth"), line.get("results"), line.get("changed")) == ("secret", 1, 1)
        for line in recorded
    )
    assert any(
        line.get("webhook_id") == "msg_logged" and line.get("job_id") == job.id and line.get("auth") == "signature"
        for line in recorded
    )
    refused = [line for line in ours if line["event"] == "request_refused" and line.get("status") == 401]
    assert refused and all(line.get("item_id") == job.items[0] for line in refused[-1:])
