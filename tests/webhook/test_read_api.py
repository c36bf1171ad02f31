"""The read API: a job with its items, and its summary as JSON and as the operators' reference text."""

from __future__ import annotations

import pytest

from tests.webhook.helpers import API_TOKEN, CALLBACK, robot_body, robot_headers

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def _report(client, job, item_id, payload):
    body = robot_body({"itemId": item_id, **payload})
    assert client.post(CALLBACK, data=body, headers=robot_headers(job.secret)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": API_TOKEN},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer tøken"},
    ],
    ids=["missing", "wrong", "no-scheme", "basic", "non-ascii"],
)
def test_read_api_needs_the_bearer_token(client, job, headers):
    for path in (f"/api/jobs/{job.id}", f"/api/jobs/{job.id}/summary"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401 and response.json["error"] == "unauthorized"


def test_read_api_closed_without_a_token(make_app, settings, job):
    client = make_app(settings=settings.model_copy(update={"api_token": None})).test_client()
    assert client.get(f"/api/jobs/{job.id}", headers=AUTH).status_code == 401


def test_job_with_items_orders_and_contacts(client, job):
    _report(client, job, job.items[0], {"status": "success", "trackingNumber": "10107"})
    response = client.get(f"/api/jobs/{job.id}", headers=AUTH)
    assert response.status_code == 200
    body = response.json
    assert body["id"] == job.id and body["status"] == "processing" and body["success_count"] == 1
    assert "callback_secret_hash" not in body and job.secret not in response.get_data(as_text=True)
    items = {item["id"]: item for item in body["items"]}
    assert set(items) == set(job.items) | set(job.rejected)
    shipped = items[job.items[0]]
    assert shipped["status"] == "success" and shipped["order"]["tracking_number"] == "10107"
    assert shipped["contact"]["name"] == "Elena Beltrán"


def test_summary_json_and_text(client, job):
    _report(client, job, job.items[0], {"status": "success", "trackingNumber": "10107"})
    _report(
        client,
        job,
        job.items[1],
        {"status": "error", "errorType": "portal", "errorMessage": "No se encontró el municipio"},
    )
    as_json = client.get(f"/api/jobs/{job.id}/summary", headers=AUTH)
    assert as_json.status_code == 200 and as_json.mimetype == "application/json"
    summary = as_json.json
    assert summary["success_count"] == 1 and summary["successes"][0]["tracking_number"] == "10107"
    assert summary["rejected"][0]["error_message"] == "No se encontró el municipio"
    assert summary["text"].startswith(
        "✅ 1 pedido(s) creado(s):\n• #10107 - Elena Beltrán  📍 calle 49f  🏙️ MANIZALES (CDAS)"
    )
    for text_request in ({"query_string": {"format": "text"}}, {"headers": {"Accept": "text/plain"}}):
        headers = {**AUTH, **text_request.get("headers", {})}
        as_text = client.get(
            f"/api/jobs/{job.id}/summary", headers=headers, query_string=text_request.get("query_string")
        )
        assert as_text.status_code == 200 and as_text.mimetype == "text/plain"
        assert as_text.get_data(as_text=True) == summary["text"]
        assert "❌ No se encontró el municipio" in summary["text"]


def test_unknown_job_is_404(client):
    for job_id in ("no-such-job", "x" * 300, "nul\x00byte"):
        response = client.get(f"/api/jobs/{job_id}", headers=AUTH)
        assert response.status_code == 404, job_id


def test_health_and_openapi(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz").json
    assert (ready["status"], ready["database"], ready["spool"]["entries"], ready["spool"]["full"]) == (
        "ok",
        "ok",
        0,
        False,
    )
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {
        CALLBACK,
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/summary",
        "/api/dead-letters",
        "/healthz",
        "/readyz",
        "/openapi.json",
    }
    result = spec["components"]["schemas"]["CallbackResult"]
    assert result["properties"]["status"]["enum"] == ["success", "error"]
    # Only what makes a result attributable is strict; the rest is normalised, never refused (robot never retries).
    assert result["required"] == ["itemId", "status"]
