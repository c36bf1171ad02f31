"""The robot's callback route: authenticate, validate, record every result in one transaction, acknowledge; and,
when the database cannot take it, keep it in this host's durable spool and answer 202.

Order of work for `POST /api/webhooks/robot-callback` (on PostgreSQL the existing robot's plain per-order result is
usually recorded before Flask, by webhook/fast_lane.py through `record_plain`; what it leaves comes here):
1. body size (413) and credential headers (401) — a signature is verified over the raw body before any parsing;
2. the spool: while this host's spool holds callbacks, this one queues behind them (202), so arrival order holds;
3. `handle_callback`, the path a live request and a spool replay share: JSON and the protocol (400/422); one unit
   of work: webhook-id receipt (replays → 200, nothing done), per-job secret against the item's or the job's stored
   hash (401 when the item/job is unknown or the secret is wrong: the caller cannot tell which), the domain use
   case (403 for another job's item), commit;
4. the database down (connect or mid-transaction) → the raw request goes to the spool, 202; the spool full → 503;
5. an authenticated callback refused for any reason but the database (400/403/404/422) is kept as a dead letter
   (domain/dead_letters.py) before the refusal is answered; an unauthenticated one is only refused;
6. 200 only after the commit; the resume and progress notifiers run on a background pool (webhook/after_commit.py),
   and their failures are logged, never returned (the outbox keeps "robot.batch.completed" for redelivery).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from domain import dead_letters
from domain.batches.dispatch import hash_callback_secret
from domain.batches.jobs import get_job
from domain.batches.report_one import report_item_result
from domain.batches.results import RecordOutcome, get_item_auth, record_batch_results, record_item_result
from domain.db import UnitOfWork
from domain.errors import DeadLetterAlreadyReplayed, DomainError, UnknownItem, UnknownJob
from domain.models import CallbackDeadLetter, ItemStatus, WebhookReceipt
from webhook.auth import CallbackCredential, callback_credential
from webhook.errors import DATABASE_DOWN, ApiError, BadRequest, Unauthorized, Unavailable, Unprocessable, refusal_of
from webhook.inbox_schemas import SpooledAck
from webhook.logs import annotate_request, correlate, log
from webhook.schemas import BatchCallback, CallbackAck, CallbackResult, ErrorDetail, ResultAck
from webhook.spool import KEPT_HEADERS, SpooledRequest, SpoolFull

bp = Blueprint("callbacks", __name__)

CALLBACK_PATH = "/api/webhooks/robot-callback"
# A replayed spool entry leaves its name in webhook_receipts, in the transaction that applies it (no other table
# needed); the prefix keeps it apart from Standard Webhooks ids.
SPOOL_RECEIPT_PREFIX = "spool:"
# Set in the WSGI environ by webhook/fast_lane.py when it tried the one-round-trip record and it changed nothing.
TRIED_AT_ONCE = "robotjobs.tried_at_once"
# Refusals of a callback that reached the database: the request is at fault, not us.
REFUSALS = (ApiError, DomainError, ValidationError)


@dataclass
class Recorded:
    job_id: str | None
    outcomes: list[RecordOutcome]
    job_finished: bool
    job_status: str | None
    duplicate_delivery: bool = False


@dataclass
class Attribution:
    """Who vouched for a callback, filled in as its authentication succeeds: only such callbacks are dead-lettered."""

    method: str | None = None  # "signature" | "job" (per-job secret) | "legacy"
    job_id: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.method is not None


@dataclass
class Handled:
    """What `handle_callback` did: recorded it, or refused it (and maybe kept it as a dead letter)."""

    recorded: Recorded | None = None
    refusal: Exception | None = None
    dead_lettered: bool = False
    dead_letter_id: int | None = None  # None when dead-lettered by an earlier try of the same spool entry
    spool_duplicate: bool = False  # replay only: the entry's receipt exists, it was applied before
    attribution: Attribution = field(default_factory=Attribution)


def _decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            "El cuerpo no es UTF-8.", code="invalid_encoding", details=[ErrorDetail(field="", reason=str(exc))]
        ) from None
    try:
        return json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError, and RecursionError-free since json raises ValueError
        raise BadRequest(
            "El cuerpo no es JSON válido.", code="invalid_json", details=[ErrorDetail(field="", reason=str(exc))]
        ) from None
    except RecursionError:
        raise BadRequest("JSON demasiado anidado.", code="invalid_json") from None


def parse_body(raw: bytes) -> CallbackResult | BatchCallback:
    """The per-order or the batch body; a `results` or `jobId` key makes it a batch."""
    data = _decode(raw)
    if not isinstance(data, dict):
        raise Unprocessable(
            "El cuerpo debe ser un objeto JSON.", details=[ErrorDetail(field="", reason="expected a JSON object")]
        )
    if "results" in data or "jobId" in data:
        return BatchCallback.model_validate(data)
    return CallbackResult.model_validate(data)


def _receipt_is_new(session, webhook_id: str, job_id: str | None) -> bool:
    """Insert the webhook-id first, so a concurrent replay blocks on it and then sees the conflict."""
    try:
        with session.begin_nested():
            session.add(WebhookReceipt(webhook_id=webhook_id, job_id=job_id))
            session.flush()
        return True
    except IntegrityError:
        return False


def _record(
    session,
    body: CallbackResult | BatchCallback,
    credential: CallbackCredential,
    attribution: Attribution | None = None,
) -> Recorded:
    checker = current_app.extensions["robotjobs"].secrets
    attribution = attribution if attribution is not None else Attribution()
    if credential.webhook_id is not None:
        job_hint = body.job_id if isinstance(body, BatchCallback) else None
        if not _receipt_is_new(session, credential.webhook_id, job_hint):
            log("info", "callback_replayed")
            return Recorded(job_id=job_hint, outcomes=[], job_finished=False, job_status=None, duplicate_delivery=True)

    if isinstance(body, BatchCallback):
        correlate(job_id=body.job_id)
        attribution.job_id = body.job_id
        job_id: str | None = body.job_id
        if credential.method == "secret":
            try:
                stored_hash = get_job(session, body.job_id).callback_secret_hash
            except UnknownJob:
                checker.check(credential.secret, None)  # a legacy secret may still vouch; then 404 below
                attribution.method = "legacy"
                raise
            attribution.method = checker.check(credential.secret, stored_hash)
        batch = record_batch_results(session, body.job_id, [r.to_domain() for r in body.results])
        return Recorded(batch.job_id, batch.outcomes, batch.job_finished, batch.job_status)

    correlate(item_id=body.item_id)
    job_id = None
    auth = None
    if credential.method == "secret":
        try:
            # Locks the job row too: the lookup and the lock are one round trip (released at once if refused).
            auth = get_item_auth(session, body.item_id, lock=True)
        except UnknownItem:
            # Unknown item under a per-job secret: the same 401 as a wrong secret, so ids cannot be probed.
            if not checker.is_legacy(credential.secret):
                raise Unauthorized("unknown item under X-Callback-Secret") from None
            attribution.method = "legacy"
            raise
        correlate(job_id=auth.job_id)
        attribution.job_id = auth.job_id
        attribution.method = checker.check(credential.secret, auth.callback_secret_hash)
        if attribution.method == "job":
            job_id = auth.job_id  # the secret vouches for this job only
    outcome = record_item_result(session, body.to_domain(), job_id=job_id, locked=auth)
    return Recorded(outcome.job_id, [outcome], outcome.job_finished, outcome.job_status)


def _attribute_unparsed(state, raw: bytes, credential: CallbackCredential, attribution: Attribution) -> None:
    """Who vouches for a body the protocol cannot understand: a signature (verified already) or the legacy secret;
    else the per-job secret of the job or item the JSON names (a lookup in the database). Otherwise nobody."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        data = None
    data = data if isinstance(data, dict) else {}
    job_id, item_id = data.get("jobId"), data.get("itemId")
    job_id = job_id if isinstance(job_id, str) and 0 < len(job_id) <= 36 and "\x00" not in job_id else None
    item_id = item_id if isinstance(item_id, str) and 0 < len(item_id) <= 64 and "\x00" not in item_id else None
    if credential.method == "signature" or state.secrets.is_legacy(credential.secret):
        attribution.method = attribution.method or "legacy"
        attribution.job_id = job_id
        return
    if job_id is None and item_id is None:
        return
    with UnitOfWork(state.engine, readonly=True) as uow:
        try:
            if job_id is not None:
                stored_hash, found_job = get_job(uow.session, job_id).callback_secret_hash, job_id
            else:
                item_auth = get_item_auth(uow.session, item_id)
                stored_hash, found_job = item_auth.callback_secret_hash, item_auth.job_id
        except (UnknownJob, UnknownItem):
            return
    if state.secrets.matches_job(credential.secret, stored_hash):
        attribution.method, attribution.job_id = "job", found_job


def _reason(exc: Exception) -> str:
    status, code, message, details = refusal_of(exc)
    fields = "; ".join(f"{d.field or '(cuerpo)'}: {d.reason}" for d in details)
    return f"{status} {code}: {message}" + (f" [{fields}]" if fields else "")


def _dead_letter(
    state,
    exc: Exception,
    headers: Mapping[str, str],
    raw: bytes,
    attribution: Attribution,
    *,
    spool_entry: str | None,
    received_at: float | None,
) -> int | None:
    """Keep an authenticated, refused callback (and, at replay, the spool entry's receipt) in one transaction."""
    stored = {name: headers[name] for name in KEPT_HEADERS if name != "X-Callback-Secret" and headers.get(name)}
    extra = {"x-robotjobs-spool-entry": spool_entry} if spool_entry else None
    with UnitOfWork(state.engine) as uow:
        if spool_entry and not _receipt_is_new(uow.session, SPOOL_RECEIPT_PREFIX + spool_entry, None):
            return None  # this entry was dead-lettered before (a crash before its file was deleted)
        letter = dead_letters.add(
            uow.session,
            reason=_reason(exc),
            body=raw,
            headers=stored,
            auth=attribution.method or "",
            job_id=attribution.job_id,
            received_at=datetime.fromtimestamp(received_at, UTC) if received_at else None,
            extra=extra,
        )
        uow.commit()
    log(
        "warning",
        "callback_dead_lettered",
        dead_letter_id=letter.id,
        auth=attribution.method,
        reason=letter.reason[:300],
    )
    return letter.id


def _record_at_once(state, body: CallbackResult | BatchCallback, credential: CallbackCredential,
                    attribution: Attribution) -> Recorded | None:  # fmt: skip
    """The existing robot's plain case, a per-order result under its job's secret, in one round trip and its own
    transaction (domain/batches/report_one.py); None when it changed nothing and `_record` must decide: an unknown
    item, another secret (the legacy one, or a wrong one: refused there), a finished job, an order other jobs hold,
    SQLite, a result the normalisation refuses (refused there, after authentication, so it is dead-lettered)."""
    if not isinstance(body, CallbackResult) or credential.method != "secret" or credential.webhook_id is not None:
        return None
    assert credential.secret is not None  # a "secret" credential carries it
    correlate(item_id=body.item_id)
    try:
        result = body.to_domain()
    except REFUSALS:
        return None
    outcome = report_item_result(state.engine, result, hash_callback_secret(credential.secret))
    if outcome is None:
        return None
    correlate(job_id=outcome.job_id)
    attribution.method, attribution.job_id = "job", outcome.job_id
    return Recorded(outcome.job_id, [outcome], outcome.job_finished, outcome.job_status)


def handle_callback(
    state,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    credential: CallbackCredential | None = None,
    now: float | None = None,
    spool_entry: str | None = None,
    at_once: bool = True,
) -> Handled:
    """Authenticate, parse and record one callback: the live route and the spool replay both come here.

    Raises Unauthorized (never dead-lettered) and the database-down errors (the route spools, the replay waits);
    returns every other refusal in `Handled.refusal`, after keeping an authenticated one as a dead letter.
    `now`/`spool_entry`: a replay checks signatures as of the arrival and writes the entry's receipt.
    `at_once=False`: the one-round-trip record was tried already (webhook/fast_lane.py) and changed nothing."""
    attribution = Attribution()
    if credential is None:
        credential = callback_credential(headers, raw, state.verifier, now=now)
        correlate(webhook_id=credential.webhook_id)
    if credential.method == "signature":
        attribution.method = "signature"

    def refused(exc: Exception) -> Handled:
        if not attribution.authenticated:
            return Handled(refusal=exc, attribution=attribution)
        letter_id = _dead_letter(state, exc, headers, raw, attribution, spool_entry=spool_entry, received_at=now)
        return Handled(refusal=exc, dead_lettered=True, dead_letter_id=letter_id, attribution=attribution)

    try:
        body = parse_body(raw)
    except (ApiError, ValidationError) as exc:
        _attribute_unparsed(state, raw, credential, attribution)
        return refused(exc)

    try:
        recorded = None if spool_entry or not at_once else _record_at_once(state, body, credential, attribution)
        if recorded is None:
            with UnitOfWork(state.engine) as uow:
                if spool_entry and not _receipt_is_new(uow.session, SPOOL_RECEIPT_PREFIX + spool_entry, None):
                    return Handled(spool_duplicate=True, attribution=attribution)
                recorded = _record(uow.session, body, credential, attribution)
                uow.commit()
        # Read under the job's row lock by the use case: no second read of the job.
        flow_run_id = recorded.outcomes[0].flow_run_id if recorded.outcomes else None
    except Unauthorized:
        raise
    except REFUSALS as exc:
        return refused(exc)
    return _committed(state, recorded, credential, attribution, flow_run_id=flow_run_id, spool_entry=spool_entry)


def _committed(
    state,
    recorded: Recorded,
    credential: CallbackCredential,
    attribution: Attribution,
    *,
    flow_run_id: str | None,
    spool_entry: str | None,
) -> Handled:
    """What follows a committed callback, however it was recorded: its log fields and its after-commit work."""
    # Committed: from here on nothing may turn this into an error response.
    correlate(job_id=recorded.job_id, flow_run_id=flow_run_id)
    changed = sum(1 for o in recorded.outcomes if o.changed)
    outcome = {
        "auth": credential.method,
        "results": len(recorded.outcomes),
        "changed": changed,
        "job_finished": recorded.job_finished,
        "job_status": recorded.job_status,
        "duplicate_delivery": recorded.duplicate_delivery,
    }
    if spool_entry is None:
        # A live request: on its one `http_request` line (webhook/app.py). A line of its own per callback was ~4 %
        # of a webhook worker's CPU (py-spy, BENCHMARKS.md round 8).
        annotate_request(**outcome)
    else:
        log("info", "callback_recorded", **outcome, spooled=True)
    # A finished job corrected by a late result has a "resume" event too (robot.batch.corrected): deliver it now.
    corrected = any(o.job_corrected for o in recorded.outcomes)
    if recorded.job_id and (changed or recorded.job_finished):
        state.notify_after_commit(
            recorded.job_id,
            finished=recorded.job_finished or corrected,
            error_items=[o.item_id for o in recorded.outcomes if o.changed and o.item_status == ItemStatus.ERROR],
        )
    return Handled(recorded=recorded, attribution=attribution)


def record_plain(state, raw: bytes, credential: CallbackCredential) -> Handled | None:
    """The live route's plain case for webhook/fast_lane.py: a per-order result under its job's secret, recorded in
    one round trip (`_record_at_once`). None when the body is not that case or the call changed nothing: the route
    then takes the request as it came, with `at_once=False`, and answers it (refusals, dead letters, spool)."""
    try:
        body = parse_body(raw)
    except (ApiError, ValidationError):
        return None
    attribution = Attribution()
    recorded = _record_at_once(state, body, credential, attribution)
    if recorded is None:
        return None
    flow_run_id = recorded.outcomes[0].flow_run_id if recorded.outcomes else None
    return _committed(state, recorded, credential, attribution, flow_run_id=flow_run_id, spool_entry=None)


def ack_body(recorded: Recorded) -> bytes:
    """The 200 body, serialised by pydantic (the bytes `jsonify(model_dump(...))` gave: compact, declaration order,
    UTF-8, a final newline) without building the dict and encoding it again in Python on every callback."""
    outcomes = recorded.outcomes
    ack = CallbackAck(
        job_id=recorded.job_id,
        job_finished=recorded.job_finished,
        job_status=recorded.job_status,
        changed=[o.item_id for o in outcomes if o.changed],
        unchanged=[o.item_id for o in outcomes if not o.changed],
        results=[ResultAck(item_id=o.item_id, changed=o.changed, item_status=o.item_status) for o in outcomes],
        duplicate_delivery=recorded.duplicate_delivery,
    )
    return ack.model_dump_json(by_alias=True).encode() + b"\n"


def _ack(recorded: Recorded) -> Response:
    return current_app.response_class(ack_body(recorded), mimetype="application/json")


def _spool(state, raw: bytes, *, cause: str, error: Exception | None = None):
    """Keep the request on this host's disk and answer 202; 503 with Retry-After when the spool cannot take it."""
    started = time.monotonic()
    try:
        name = state.inbox.spool_request(request.headers, raw)
    except SpoolFull as exc:
        log("critical", "spool_full", cause=cause, detail=str(exc))
        raise Unavailable("Buzón local lleno; reintente más tarde.", code="spool_full") from None
    except OSError as exc:
        log("critical", "spool_write_failed", cause=cause, error=f"{type(exc).__name__}: {exc}"[:300])
        raise Unavailable("Base de datos no disponible; reintente más tarde.", code="database_unavailable") from None
    correlate(spool_entry=name)
    fields: dict[str, Any] = {"cause": cause, "bytes": len(raw), "ms": round(1000 * (time.monotonic() - started), 2)}
    if error is not None:
        fields["error"] = type(error).__name__
        fields["detail"] = str(error).splitlines()[0][:300] if str(error) else ""
    # A database outage is still loud, but the callback is safe on disk: not CRITICAL any more.
    log("warning" if error is not None else "info", "callback_spooled", **fields)
    ack = SpooledAck(spool_entry=name, message="Recibido; se registrará en cuanto la base de datos responda.")
    response = jsonify(ack.model_dump(mode="json", by_alias=True))
    response.status_code = 202
    return response


def _understandable_without_database(raw: bytes, credential: CallbackCredential) -> None:
    """Before queueing behind the spool: a body that is not even JSON, under a credential only the database can
    check, would be refused (400) and never kept; refuse it now rather than accept it for nothing."""
    if credential.method == "secret" and not current_app.extensions["robotjobs"].secrets.is_legacy(credential.secret):
        _decode(raw)


@bp.post(CALLBACK_PATH)
def robot_callback():
    state = current_app.extensions["robotjobs"]
    raw = request.get_data(cache=True)  # MAX_CONTENT_LENGTH makes this a 413 before reading a byte too many
    credential = callback_credential(request.headers, raw, state.verifier)
    correlate(webhook_id=credential.webhook_id)
    if state.inbox.queued():
        # Callbacks wait in this host's spool: recording this one now could overtake them (a spooled success
        # followed by the fatal re-report's error for the same item must not let the error win).
        _understandable_without_database(raw, credential)
        return _spool(state, raw, cause="queued_behind_spool")
    try:
        handled = handle_callback(
            state, request.headers, raw, credential=credential, at_once=not request.environ.get(TRIED_AT_ONCE)
        )
    except DATABASE_DOWN as exc:
        return _spool(state, raw, cause="database_unavailable", error=exc)
    if handled.refusal is not None:
        raise handled.refusal
    response = _ack(handled.recorded)
    if len(handled.recorded.outcomes) >= LARGE_REPORT:
        response.call_on_close(_give_memory_back)  # after the answer is sent: the robot does not wait for it
    return response


# A batch report of thousands of results leaves the worker's heap grown by its transient objects (payloads, JSON
# text, parameter arrays): freed, but kept by the allocator. Measured (benchmarks/batch_record_bench.py --webhook,
# 2 reports of 5,000): RSS 141 -> 202 MB without this, 141 -> 176 MB with it. After such a report the worker collects
# and returns free heap to the system; per-order callbacks never pay for it.
LARGE_REPORT = 1000
_LIBC = ctypes.util.find_library("c")


def _give_memory_back() -> None:
    gc.collect()
    if _LIBC:
        try:
            ctypes.CDLL(_LIBC).malloc_trim(0)  # glibc only; elsewhere nothing to do
        except (OSError, AttributeError):
            pass


# --- replay -----------------------------------------------------------------------------------------------------


def replay_spooled(app: Flask, entry: SpooledRequest) -> str:
    """Apply one spool entry as the live route would have (the Inbox's `apply`): "recorded", "duplicate",
    "dead_lettered" or "dropped". Database errors propagate: the entry stays, in order, for the next try."""
    state = app.extensions["robotjobs"]
    with app.app_context():
        correlate(spool_entry=entry.name)
        age_s = round(time.time() - entry.received_at, 3)
        try:
            handled = handle_callback(state, entry.headers, entry.body, now=entry.received_at, spool_entry=entry.name)
        except Unauthorized as exc:
            # Not trusted: never dead-lettered. The robot got a 202 for it; the log says why it was dropped.
            log("warning", "spool_entry_dropped", reason=exc.reason, status=401, age_s=age_s)
            return "dropped"
        if handled.spool_duplicate:
            log("info", "spool_entry_replayed", outcome="duplicate", age_s=age_s)
            return "duplicate"
        if handled.refusal is not None:
            status, code, *_ = refusal_of(handled.refusal)
            if handled.dead_lettered:
                log(
                    "warning",
                    "spool_entry_replayed",
                    outcome="dead_lettered",
                    status=status,
                    error=code,
                    dead_letter_id=handled.dead_letter_id,
                    age_s=age_s,
                )
                return "dead_lettered"
            log(
                "warning",
                "spool_entry_dropped",
                reason="refused, not attributable",
                status=status,
                error=code,
                age_s=age_s,
            )
            return "dropped"
        log("info", "spool_entry_replayed", outcome="recorded", age_s=age_s)
        return "recorded"


def _record_trusted(session, body: CallbackResult | BatchCallback, letter: CallbackDeadLetter) -> Recorded:
    """A dead letter's body under the attribution recorded when it arrived (the operator vouches for the replay)."""
    auth = letter.headers.get(dead_letters.AUTH_KEY)
    webhook_id = letter.headers.get("webhook-id") if auth == "signature" else None
    if webhook_id and not _receipt_is_new(session, webhook_id, letter.job_id):
        return Recorded(job_id=letter.job_id, outcomes=[], job_finished=False, job_status=None, duplicate_delivery=True)
    if isinstance(body, BatchCallback):
        if auth == "job" and body.job_id != letter.job_id:
            raise Unauthorized("dead letter's batch names another job than its secret vouched for")
        batch = record_batch_results(session, body.job_id, [r.to_domain() for r in body.results])
        return Recorded(batch.job_id, batch.outcomes, batch.job_finished, batch.job_status)
    outcome = record_item_result(session, body.to_domain(), job_id=letter.job_id if auth == "job" else None)
    return Recorded(outcome.job_id, [outcome], outcome.job_finished, outcome.job_status)


def replay_dead_letter(engine, letter_id: int) -> str:
    """Apply a dead letter once (`robotjobs dead-letters replay ID`): the result text, stored with it. A refusal is
    noted on the letter, which stays pending, and raised. The flow's resume comes from the outbox (reconciler)."""
    with UnitOfWork(engine) as uow:
        letter = dead_letters.get(uow.session, letter_id)
        if letter.replayed_at is not None:
            raise DeadLetterAlreadyReplayed(f"La carta muerta {letter_id} ya se reprodujo: {letter.replay_result}")
        raw = dead_letters.raw_body(letter)
        try:
            recorded = _record_trusted(uow.session, parse_body(raw), letter)
            changed = sum(1 for o in recorded.outcomes if o.changed)
            result = (
                "entrega duplicada: nada que hacer"
                if recorded.duplicate_delivery
                else f"registrado: {changed} cambiado(s), {len(recorded.outcomes) - changed} sin cambio"
            )
            if not dead_letters.mark_replayed(uow.session, letter_id, result=result):
                raise DeadLetterAlreadyReplayed(f"La carta muerta {letter_id} ya se reprodujo.")
            uow.commit()
            return result
        except DeadLetterAlreadyReplayed:
            raise
        except REFUSALS as exc:
            uow.rollback()
            dead_letters.note_replay_failure(uow.session, letter_id, result=f"falló: {_reason(exc)}")
            uow.commit()
            raise
