"""Bodies that break the protocol: 400/413/422 naming the field and the reason, and nothing written."""

from __future__ import annotations

import pytest

from tests.webhook.helpers import CALLBACK, db_state, robot_body, robot_headers


def _post(client, job, raw: bytes):
    return client.post(CALLBACK, data=raw, headers=robot_headers(job.secret))


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b'{"itemId": "x", "status": "success"', "invalid_json"),
        (b'{"itemId": "\xff\xfe", "status": "error"}', "invalid_encoding"),
        (b"\xef\xbb\xbf\x00\x00", "invalid_json"),
        (b"[" * 100_00 + b"]" * 100_00, "invalid_json"),
    ],
    ids=["empty", "broken", "truncated", "latin1", "nul", "deep"],
)
def test_unparseable_body_is_400(client, job, snapshot, raw, code):
    before = snapshot()
    response = _post(client, job, raw)
    assert response.status_code == 400 and response.json["error"] == code
    assert snapshot() == before


def _field_error(client, job, snapshot, payload) -> dict[str, str]:
    before = snapshot()
    response = _post(client, job, robot_body(payload) if not isinstance(payload, bytes) else payload)
    assert response.status_code == 422, response.json
    assert response.json["error"] == "validation_error"
    assert snapshot() == before
    return {d["field"]: d["reason"] for d in response.json["details"]}


def test_status_outside_success_error(client, job, snapshot):
    fields = _field_error(client, job, snapshot, {"itemId": job.items[0], "status": "done"})
    assert "status" in fields and "success" in fields["status"]


def _items(engine) -> dict[str, tuple]:
    """item id → (status, tracking number or error type, error message)."""
    return {row[0]: (row[1], row[2] if row[1] == "success" else row[3], row[4]) for row in db_state(engine)["items"]}


def _recorded(client, job, payload):
    response = _post(client, job, robot_body(payload))
    assert response.status_code == 200, response.json
    assert response.json["changed"] == [payload["itemId"]]


def test_success_without_tracking_number_is_a_created_order(client, make_job, engine):
    job = make_job(6)
    for n, tracking in enumerate((None, "", "   ", ["1"], {"n": 1})):
        payload = {"itemId": job.items[n], "status": "success"}
        if tracking is not None:
            payload["trackingNumber"] = tracking
        _recorded(client, job, payload)
    items = _items(engine)
    assert [items[job.items[n]] for n in range(5)] == [("success", None, None)] * 5


def test_unknown_error_type_is_kept_in_the_message(client, job, engine):
    _recorded(client, job, {"itemId": job.items[0], "status": "error", "errorType": "cosmic", "errorMessage": "x"})
    _recorded(client, job, {"itemId": job.items[1], "status": "error", "errorType": 7})
    items = _items(engine)
    assert items[job.items[0]] == ("error", "unknown", "[errorType del robot: cosmic] x")
    assert items[job.items[1]] == ("error", "unknown", "[errorType del robot: 7]")


def test_long_values_are_truncated_and_nul_removed(client, make_job, engine):
    job = make_job(6)
    multi_line = "page.click: Timeout 30000ms exceeded.\nCall log:\n  - waiting for locator('#ok')\n" * 80
    _recorded(
        client, job, {"itemId": job.items[0], "status": "error", "errorType": "portal", "errorMessage": multi_line}
    )
    _recorded(client, job, {"itemId": job.items[1], "status": "error", "errorMessage": "a\x00b"})
    _recorded(client, job, {"itemId": job.items[2], "status": "success", "trackingNumber": " " + "9" * 120 + " "})
    _recorded(client, job, {"itemId": job.items[3], "status": "success", "trackingNumber": 760012})
    items = _items(engine)
    status, kind, message = items[job.items[0]]
    assert (status, kind, len(message)) == ("error", "portal", 1000) and message.endswith("[mensaje truncado]")
    assert items[job.items[1]] == ("error", "unknown", "ab")
    assert items[job.items[2]] == ("success", "9" * 100, None)
    assert items[job.items[3]] == ("success", "760012", None)


def test_item_id_is_strict(client, job, snapshot):
    fields = _field_error(client, job, snapshot, {"itemId": "i" * 65, "status": "success", "trackingNumber": "1"})
    assert "itemId" in fields and "at most" in fields["itemId"]
    fields = _field_error(client, job, snapshot, {"itemId": ["x"], "status": "success"})
    assert set(fields) == {"itemId"}


def test_body_not_an_object(client, job, snapshot):
    assert _field_error(client, job, snapshot, b'["x"]') == {"": "expected a JSON object"}


def test_batch_errors_name_the_result(client, job, snapshot):
    payload = {
        "jobId": job.id,
        "results": [
            {"itemId": job.items[0], "status": "success", "trackingNumber": "1"},
            {"itemId": job.items[1], "status": "created"},
        ],
    }
    fields = _field_error(client, job, snapshot, payload)
    assert list(fields) == ["results.1.status"]
    assert "results" in _field_error(client, job, snapshot, {"jobId": job.id, "results": []})
    assert "jobId" in _field_error(client, job, snapshot, {"results": [{"itemId": "x", "status": "error"}]})


def test_body_over_the_limit_is_413(client, job, snapshot, settings):
    before = snapshot()
    padding = "x" * settings.webhook_max_body_bytes
    response = _post(client, job, robot_body({"itemId": job.items[0], "status": "error", "pad": padding}))
    assert response.status_code == 413 and response.json["error"] == "body_too_large"
    assert snapshot() == before


def test_body_just_under_the_limit_is_accepted(client, job, settings):
    payload = {"itemId": job.items[0], "status": "success", "trackingNumber": "1", "pad": ""}
    room = settings.webhook_max_body_bytes - len(robot_body(payload))
    payload["pad"] = "x" * room
    assert len(robot_body(payload)) == settings.webhook_max_body_bytes
    assert _post(client, job, robot_body(payload)).status_code == 200
