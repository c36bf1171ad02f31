"""Who may call: callback authentication (per-job secret, legacy secret, Standard Webhooks) and the read API token.

Every comparison is constant-time on bytes. Anything malformed in a credential header (non-ASCII, bad base64,
bad timestamp) is a plain 401, never a 5xx, and the reason goes to the log, not to the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr
from standardwebhooks import Webhook

from domain.batches.dispatch import hash_callback_secret
from webhook.errors import Unauthorized

CALLBACK_SECRET_HEADER = "X-Callback-Secret"
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_TIMESTAMP = re.compile(r"\d{1,12}")
_MAX_HEADER = 4096


def _ascii(value: str | None, name: str) -> bytes:
    if not value:
        raise Unauthorized(f"{name} missing")
    if len(value) > _MAX_HEADER:
        raise Unauthorized(f"{name} too long")
    try:
        return value.encode("ascii")
    except UnicodeError:
        raise Unauthorized(f"{name} not ASCII") from None


@dataclass(frozen=True)
class CallbackCredential:
    """How a callback authenticated itself. `secret` (per-job or legacy) is checked later, against the job."""

    method: Literal["secret", "signature"]
    secret: bytes | None = None
    webhook_id: str | None = None


class SecretChecker:
    """Checks an X-Callback-Secret against a job's stored hash, or the global legacy secret when enabled."""

    def __init__(self, legacy_secret: SecretStr | None):
        value = legacy_secret.get_secret_value() if legacy_secret else ""
        self._legacy = value.encode("utf-8") if value else None

    def is_legacy(self, presented: bytes) -> bool:
        return self._legacy is not None and hmac.compare_digest(presented, self._legacy)

    def matches_job(self, presented: bytes, stored_hash: str | None) -> bool:
        # Always do the hashing and comparison, even with no stored hash, so timing says nothing.
        expected = (stored_hash or "").encode("ascii", "replace")
        return hmac.compare_digest(hash_callback_secret(presented).encode("ascii"), expected) and bool(stored_hash)

    def check(self, presented: bytes, stored_hash: str | None) -> Literal["job", "legacy"]:
        """'job' or 'legacy' when the secret is good, else Unauthorized."""
        if self.matches_job(presented, stored_hash):
            return "job"
        if self.is_legacy(presented):
            return "legacy"
        raise Unauthorized("callback secret does not match")


class _Signer(Webhook):
    """The standardwebhooks secret, signing raw bytes (the package's `sign` wants text; a body may not be UTF-8)."""

    def digest(self, msg_id: bytes, timestamp: bytes, body: bytes) -> bytes:
        return hmac.new(self._whsecret, msg_id + b"." + timestamp + b"." + body, hashlib.sha256).digest()


class SignatureVerifier:
    """Standard Webhooks: HMAC-SHA256 of `{id}.{timestamp}.{body}`, several secrets at once for rotation."""

    def __init__(self, secrets: list[SecretStr], *, tolerance_s: int, clock: Callable[[], float] = time.time):
        # Built at startup: a malformed configured secret fails the boot, not a request.
        self._signers = [_Signer(secret.get_secret_value()) for secret in secrets]
        self._tolerance_s = tolerance_s
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self._signers)

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> str:
        """The verified webhook-id, or Unauthorized. `now`: the arrival time of a spooled request at replay."""
        if not self._signers:
            raise Unauthorized("signed callbacks are not enabled (no webhook_signing_secrets)")
        msg_id = _ascii(headers.get("webhook-id"), "webhook-id")
        if len(msg_id) > 255:
            raise Unauthorized("webhook-id too long")
        timestamp = _ascii(headers.get("webhook-timestamp"), "webhook-timestamp")
        signatures = _ascii(headers.get("webhook-signature"), "webhook-signature")
        if not _TIMESTAMP.fullmatch(timestamp.decode()):
            raise Unauthorized("webhook-timestamp is not integer seconds")
        skew = (self._clock() if now is None else now) - int(timestamp)
        if abs(skew) > self._tolerance_s:
            raise Unauthorized(f"webhook-timestamp outside tolerance (skew {skew:.0f}s)")

        presented = []
        for versioned in signatures.split(b" "):
            version, _, encoded = versioned.partition(b",")
            if version != b"v1" or not encoded:
                continue
            try:
                presented.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError):
                continue
        expected = [signer.digest(msg_id, timestamp, body) for signer in self._signers]
        # Compare every pair (no early exit) so the time taken does not reveal which secret or signature matched.
        matched = False
        for candidate in presented:
            for digest in expected:
                matched |= hmac.compare_digest(candidate, digest)
        if not matched:
            raise Unauthorized("no matching webhook-signature")
        return msg_id.decode("ascii")


def callback_credential(
    headers: Mapping[str, str], body: bytes, verifier: SignatureVerifier, *, now: float | None = None
) -> CallbackCredential:
    """Read the callback's credential. A signature, when any of its headers is present, is verified here (against
    the clock, or `now`: a spooled request is checked at replay as of its arrival)."""
    if any(headers.get(name) for name in SIGNATURE_HEADERS):
        return CallbackCredential(method="signature", webhook_id=verifier.verify(headers, body, now=now))
    return CallbackCredential(
        method="secret", secret=_ascii(headers.get(CALLBACK_SECRET_HEADER), CALLBACK_SECRET_HEADER)
    )


def check_bearer(authorization: str | None, token: SecretStr | None) -> None:
    """The read API's `Authorization: Bearer <api_token>`; closed when no token is configured."""
    if token is None or not token.get_secret_value():
        raise Unauthorized("read API closed: api_token unset")
    raw = _ascii(authorization, "Authorization")
    scheme, _, presented = raw.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(presented.strip(), token.get_secret_value().encode()):
        raise Unauthorized("bad bearer token")
