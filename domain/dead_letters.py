"""Callback dead letters: authenticated callbacks we could not apply, kept for operators to list and replay.

A dead letter holds the body exactly as received (UTF-8 text, or base64 when the bytes are not UTF-8 or hold NUL,
which PostgreSQL text cannot store), the non-secret headers and who vouched for it (`x-robotjobs-auth`: signature,
job or legacy secret). The caller's secret itself is never stored: a replay trusts the recorded attribution, as the
operator who asks for it does. Functions take the caller's session and never commit.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlmodel import Session, col, select

from domain.errors import UnknownDeadLetter
from domain.models import CallbackDeadLetter, utcnow

AUTH_KEY = "x-robotjobs-auth"  # "signature" | "job" | "legacy": what authenticated the callback when it arrived
ENCODING_KEY = "x-robotjobs-body-encoding"  # "base64" when the body is not storable as text
_REASON_MAX = 2000


def _storable(raw: bytes) -> tuple[str, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"
    if "\x00" in text:
        return base64.b64encode(raw).decode("ascii"), "base64"
    return text, None


def raw_body(letter: CallbackDeadLetter) -> bytes:
    """The body's bytes exactly as the robot sent them."""
    if letter.headers.get(ENCODING_KEY) == "base64":
        return base64.b64decode(letter.body)
    return letter.body.encode("utf-8")


def add(
    session: Session,
    *,
    reason: str,
    body: bytes,
    headers: dict[str, str],
    auth: str,
    job_id: str | None = None,
    received_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> CallbackDeadLetter:
    """Keep one authenticated callback that could not be applied; `headers` must hold no secret."""
    text, encoding = _storable(body)
    stored: dict[str, Any] = {**headers, AUTH_KEY: auth, **(extra or {})}
    if encoding:
        stored[ENCODING_KEY] = encoding
    letter = CallbackDeadLetter(
        reason=reason[:_REASON_MAX],
        headers=stored,
        body=text,
        job_id=job_id[:36] if job_id else None,
        received_at=received_at or utcnow(),
    )
    session.add(letter)
    session.flush()
    return letter


def get(session: Session, letter_id: int) -> CallbackDeadLetter:
    letter = session.get(CallbackDeadLetter, letter_id)
    if letter is None:
        raise UnknownDeadLetter(f"Carta muerta desconocida: {letter_id}", dead_letter_id=letter_id)
    return letter


def list_letters(
    session: Session, *, pending_only: bool = False, job_id: str | None = None, limit: int = 100
) -> list[CallbackDeadLetter]:
    """Newest first; `pending_only` leaves out the ones already replayed."""
    query = select(CallbackDeadLetter).order_by(col(CallbackDeadLetter.id).desc()).limit(limit)
    if pending_only:
        query = query.where(col(CallbackDeadLetter.replayed_at).is_(None))
    if job_id:
        query = query.where(CallbackDeadLetter.job_id == job_id)
    return list(session.exec(query).all())


def mark_replayed(session: Session, letter_id: int, *, result: str, now: datetime | None = None) -> bool:
    """Mark a dead letter replayed, once: False when it already was (a concurrent replay won). Call it in the
    transaction that applies the replay, so both commit together or neither does."""
    # An UPDATE's result is a CursorResult (it has rowcount); Session.execute is typed for any statement.
    done = cast(
        CursorResult[Any],
        session.execute(
            update(CallbackDeadLetter)
            .where(col(CallbackDeadLetter.id) == letter_id, col(CallbackDeadLetter.replayed_at).is_(None))
            .values(replayed_at=now or utcnow(), replay_result=result[:_REASON_MAX])
        ),
    )
    return done.rowcount == 1


def note_replay_failure(session: Session, letter_id: int, *, result: str) -> None:
    """Say why a replay failed; the dead letter stays pending."""
    session.execute(
        update(CallbackDeadLetter)
        .where(col(CallbackDeadLetter.id) == letter_id, col(CallbackDeadLetter.replayed_at).is_(None))
        .values(replay_result=result[:_REASON_MAX])
    )
