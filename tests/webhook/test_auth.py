"""Callback authentication: every refusal is a 401 that writes nothing; rotation and the ±tolerance edges."""

from __future__ import annotations

import time

import pytest

from tests.webhook.helpers import CALLBACK, new_signing_secret, robot_body, robot_headers, sign

NOW = 1_800_000_000.0


@pytest.fixture
def frozen_client(make_app):
    return make_app(clock=lambda: NOW).test_client()


def _body(job):
    return robot_body({"itemId": job.items[0], "status": "success", "trackingNumber": "10107"})


def _refused(client, job, headers, snapshot, body=None):
    before = snapshot()
    response = client.post(CALLBACK, data=body if body is not None else _body(job), headers=headers)
    assert response.status_code == 401, response.json
    assert response.json["error"] == "unauthorized" and response.headers["WWW-Authenticate"] == "Bearer"
    assert snapshot() == before
    return response


@pytest.mark.parametrize(
    "secret",
    [None, "", "wrong-secret", "x" * 5000, "sécret-latin1", " leading-space"],
    ids=["missing", "empty", "wrong", "huge", "non-ascii", "mangled"],
)
def test_bad_callback_secret_is_401(client, job, snapshot, secret):
    _refused(client, job, robot_headers(secret), snapshot)


def test_refusals_all_read_the_same(client, job, snapshot, make_job):
    """Unknown item, wrong secret, missing header: one message, so a caller learns nothing from it."""
    wrong = _refused(client, job, robot_headers("wrong"), snapshot).json
    unknown = _refused(
        client,
        job,
        robot_headers(job.secret),
        snapshot,
        body=robot_body({"itemId": "itm_unknown", "status": "error"}),
    ).json
    assert wrong == unknown


@pytest.mark.parametrize("which", [0, 1])
def test_rotation_accepts_either_configured_secret(frozen_client, job, signing_secrets, which):
    body = _body(job)
    response = frozen_client.post(CALLBACK, data=body, headers=sign(signing_secrets[which], body, timestamp=NOW))
    assert response.status_code == 200, response.json


def test_retired_secret_is_refused(frozen_client, job, snapshot):
    body = _body(job)
    _refused(frozen_client, job, sign(new_signing_secret(), body, timestamp=NOW), snapshot, body=body)


def test_any_of_several_signatures_may_match(frozen_client, job, signing_secrets):
    body = _body(job)
    good = sign(signing_secrets[1], body, timestamp=NOW, msg_id="msg_multi")
    bad = sign(new_signing_secret(), body, timestamp=NOW, msg_id="msg_multi")
    good["webhook-signature"] = f"v2,abc {bad['webhook-signature']} {good['webhook-signature']}"
    assert frozen_client.post(CALLBACK, data=body, headers=good).status_code == 200


@pytest.mark.parametrize("offset", [-300, -299, 0, 299, 300])
def test_timestamp_within_tolerance_is_accepted(frozen_client, job, signing_secrets, offset):
    body = _body(job)
    response = frozen_client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body, timestamp=NOW + offset))
    assert response.status_code == 200


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400])
def test_timestamp_outside_tolerance_is_refused(frozen_client, job, signing_secrets, snapshot, offset):
    body = _body(job)
    _refused(frozen_client, job, sign(signing_secrets[0], body, timestamp=NOW + offset), snapshot, body=body)


def test_real_clock_accepts_a_fresh_signature(client, job, signing_secrets):
    body = _body(job)
    assert (
        client.post(CALLBACK, data=body, headers=sign(signing_secrets[0], body, timestamp=time.time())).status_code
        == 200
    )


def _tamper(headers: dict, **changes) -> dict:
    out = dict(headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


@pytest.mark.parametrize(
    "changes",
    [
        {"webhook_id": None},
        {"webhook_timestamp": None},
        {"webhook_signature": None},
        {"webhook_timestamp": "not-a-number"},
        {"webhook_timestamp": "1.8e9"},
        {"webhook_timestamp": "-1800000000"},
        {"webhook_timestamp": "99999999999999999999999"},
        {"webhook_timestamp": "nan"},
        {"webhook_signature": "v1,%%%not-base64%%%"},
        {"webhook_signature": "v1,"},
        {"webhook_signature": "v1"},
        {"webhook_signature": "garbage"},
        {"webhook_signature": "v1,AAAA"},
        {"webhook_signature": "v1,ñandú"},
        {"webhook_id": "mßg"},
        {"webhook_id": "m" * 300},
        {"webhook_id": "other-id"},
    ],
)
def test_malformed_or_wrong_signature_headers_are_401_never_5xx(frozen_client, job, signing_secrets, snapshot, changes):
    body = _body(job)
    headers = _tamper(sign(signing_secrets[0], body, timestamp=NOW, msg_id="msg_1"), **changes)
    _refused(frozen_client, job, headers, snapshot, body=body)


def test_tampered_body_is_refused(frozen_client, job, signing_secrets, snapshot):
    body = _body(job)
    headers = sign(signing_secrets[0], body, timestamp=NOW)
    _refused(frozen_client, job, headers, snapshot, body=body.replace(b"10107", b"99999"))


def test_signature_headers_win_over_a_valid_secret(frozen_client, job, snapshot):
    """A request that presents a signature is judged by it: a bad signature is not rescued by X-Callback-Secret."""
    headers = {
        **robot_headers(job.secret),
        "webhook-id": "x",
        "webhook-timestamp": str(int(NOW)),
        "webhook-signature": "v1,AAAA",
    }
    _refused(frozen_client, job, headers, snapshot)


def test_signed_callbacks_off_when_no_secrets_are_configured(make_app, settings, job, snapshot):
    client = make_app(
        settings=settings.model_copy(update={"webhook_signing_secrets": []}), clock=lambda: NOW
    ).test_client()
    body = _body(job)
    _refused(client, job, sign(new_signing_secret(), body, timestamp=NOW), snapshot, body=body)


def test_signature_is_checked_over_raw_bytes_even_when_not_utf8(frozen_client, job, signing_secrets, snapshot):
    """A non-UTF-8 body with a good signature passes authentication, then fails parsing with 400."""
    import base64
    import hashlib
    import hmac

    body = b'{"itemId": "\xff\xfe"}'
    key = base64.b64decode(signing_secrets[0].removeprefix("whsec_"))
    digest = hmac.new(key, b"msg_raw." + str(int(NOW)).encode() + b"." + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": "msg_raw",
        "webhook-timestamp": str(int(NOW)),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    before = snapshot()
    response = frozen_client.post(CALLBACK, data=body, headers=headers)
    assert response.status_code == 400 and response.json["error"] == "invalid_encoding"
    assert snapshot() == before
    assert frozen_client.post(CALLBACK, data=body, headers={**headers, "webhook-id": "msg_other"}).status_code == 401
