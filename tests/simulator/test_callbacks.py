"""The wire form of the simulator's callbacks (robot-protocol.md §2) and of its signed batch report (§3)."""

from __future__ import annotations

import json

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from simulator.server import unused_loopback_url
from tests.simulator.conftest import make_batch, wait_idle

DISPATCH = "/api/crear-pedidos-batch"
TRANSPORT = {"host", "content-length"}
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def dispatch(simulator, body) -> httpx.Response:
    return httpx.post(simulator.url + DISPATCH, json=body, timeout=10)


def test_callback_headers_are_exactly_the_robots(simulator, receiver):
    dispatch(simulator, make_batch(receiver.url, 1, secret="per-job-secret"))
    (received,) = receiver.wait_for(1)
    assert set(received.header_map) == TRANSPORT | {"content-type", "x-callback-secret", "user-agent"}
    assert received.header_map["content-type"] == "application/json"
    assert received.header_map["x-callback-secret"] == "per-job-secret"
    assert ("user-agent", "node") in received.headers  # lower-case name, as Node's fetch sends it


def test_no_callback_secret_header_when_none_was_sent(simulator, receiver):
    dispatch(simulator, make_batch(receiver.url, 1, secret=None))
    (received,) = receiver.wait_for(1)
    assert set(received.header_map) == TRANSPORT | {"content-type", "user-agent"}


def test_body_is_compact_utf8_with_non_ascii_unescaped_and_no_empty_keys(simulator, receiver):
    body = make_batch(receiver.url, 2, o1={"ciudad": ""})
    dispatch(simulator, body)
    raws = {r.json["itemId"]: r.raw for r in receiver.wait_for(2)}
    error_item = body["orders"][1]["itemId"]
    expected = (
        '{"itemId":"' + error_item + '","status":"error","errorType":"validation",'
        '"errorMessage":"Ciudad vacía o no proporcionada"}'
    ).encode("utf-8")
    assert raws[error_item] == expected
    success = json.loads(raws[body["orders"][0]["itemId"]])
    assert raws[body["orders"][0]["itemId"]] == json.dumps(success, separators=(",", ":")).encode()
    assert set(success) == {"itemId", "status", "trackingNumber"}


def test_a_failed_callback_is_lost_never_retried_and_counted(simulator, receiver):
    receiver.status = 503
    body = make_batch(receiver.url, 2)
    dispatch(simulator, body)
    receiver.wait_for(2)
    state = wait_idle(simulator)
    assert len(receiver.received) == 2
    assert [c["httpStatus"] for c in state["callbacks"]] == [503, 503] and state["callbacksLost"] == 2


def test_an_unreachable_receiver_loses_results_and_frees_the_workspace(simulator):
    body = make_batch(unused_loopback_url() + "/cb", 2)
    assert dispatch(simulator, body).status_code == 200
    state = wait_idle(simulator)
    assert state["callbacksLost"] == 2 and state["busyWorkspaces"] == []
    assert all("ConnectionRefused" in c["error"] for c in state["callbacks"])


@pytest.mark.parametrize("report, expected_posts", [("batch", 1), ("both", 4)])
def test_signed_batch_report_verifies_with_standard_webhooks(simulator, receiver, report, expected_posts):
    simulator.configure(report=report, webhook_secret=SECRET, order_scenarios={"order-2": "invalid_city"})
    body = make_batch(receiver.url, 3, o0={"ciudad": ""})
    dispatch(simulator, body)
    received = receiver.wait_for(expected_posts)
    wait_idle(simulator)
    assert len(receiver.received) == expected_posts
    signed = received[-1]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(signed.header_map)
    assert "x-callback-secret" not in signed.header_map
    payload = Webhook(SECRET).verify(signed.raw, signed.header_map)
    assert payload["jobId"] == body["jobId"]
    assert [r["itemId"] for r in payload["results"]] == [o["itemId"] for o in body["orders"]]
    assert [r.get("errorMessage") for r in payload["results"]] == [
        "Ciudad vacía o no proporcionada",
        None,
        "No se encontró el municipio",
    ]
    assert "vacía".encode() in signed.raw
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==").verify(signed.raw, signed.header_map)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(signed.raw.replace(b"success", b"failure"), signed.header_map)


def test_batch_report_needs_a_secret(simulator):
    response = httpx.post(simulator.url + "/_sim/config", json={"report": "batch"})
    assert response.status_code == 400 and "webhook_secret" in response.text
