"""Bodies that break the protocol: 400/413/422 naming the field and the reason, and nothing written."""

from __future__ import annotations

import pytest

from tests.webhook.helpers import CALLBACK, robot_body, robot_headers


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


def test_success_without_tracking_number(client, job, snapshot):
    for tracking in (None, "", "   "):
        payload = {"itemId": job.items[0], "status": "success"}
        if tracking is not None:
            payload["trackingNumber"] = tracking
        fields = _field_error(client, job, snapshot, payload)
        assert fields == {"trackingNumber": "trackingNumber is required when status is success"}


def test_unknown_error_type(client, job, snapshot):
    fields = _field_error(client, job, snapshot, {"itemId": job.items[0], "status": "error", "errorType": "cosmic"})
    assert list(fields) == ["errorType"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("trackingNumber", "9" * 101), ("errorMessage", "é" * 1001), ("itemId", "i" * 65)],
)
def test_oversized_strings(client, job, snapshot, field, value):
    payload = {"itemId": job.items[0], "status": "success", "trackingNumber": "1", field: value}
    fields = _field_error(client, job, snapshot, payload)
    assert field in fields and "at most" in fields[field]


def test_wrong_types_and_nul(client, job, snapshot):
    fields = _field_error(client, job, snapshot, {"itemId": 42, "status": "success", "trackingNumber": ["1"]})
    assert set(fields) == {"itemId", "trackingNumber"}
    fields = _field_error(client, job, snapshot, {"itemId": job.items[0], "status": "error", "errorMessage": "a\x00b"})
    assert list(fields) == ["errorMessage"]


def test_body_not_an_object(client, job, snapshot):
    assert _field_error(client, job, snapshot, b'["x"]') == {"": "expected a JSON object"}


def test_batch_errors_name_the_result(client, job, snapshot):
    payload = {"jobId": job.id, "results": [
        {"itemId": job.items[0], "status": "success", "trackingNumber": "1"},
        {"itemId": job.items[1], "status": "success"},
    ]}
    fields = _field_error(client, job, snapshot, payload)
    assert list(fields) == ["results.1.trackingNumber"]
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
