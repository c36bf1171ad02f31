"""The one dispatch of a job to the robot: claim in its own committed transaction, then send, at most once per job.

Three outcomes: accepted; refused (a definite "no": the job fails fast); unknown (sent, but no answer reached us:
the job stays `processing` and waits for results until its deadline, as an accepted one does). Never re-sent.
"""

from __future__ import annotations

import logging
import time

import httpx
from pydantic import BaseModel, Field

from domain.batches.dispatch import (
    build_dispatch_request,
    hash_callback_secret,
    new_callback_secret,
    portal_credentials,
)
from domain.batches.jobs import claim_dispatch, fail_job, get_job, mark_dispatch_accepted, mark_dispatch_unknown
from domain.db import UnitOfWork
from domain.errors import DomainError
from domain.models import ErrorType
from domain.settings import Settings
from flows import runtime
from flows.robot_client import DispatchOutcomeUnknown, DispatchRefused, dispatch_batch
from relay.run_log import log_in_run

log = logging.getLogger("flows.dispatch")


def _say(level: int, job_id: str, message: str) -> None:
    """A line for operators in the run's logs (Spanish, with the job id; never the request: it holds secrets)."""
    log_in_run(log, level, f"Lote {job_id}: {message}")


def robot_address(robot_url: str) -> str:
    """Scheme, host and port only: a URL's user, password, path or query never reach a log line."""
    url = httpx.URL(robot_url)
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


class DispatchResult(BaseModel):
    """What the dispatch step did; holds no credentials and no callback secret."""

    sent: bool = Field(description="This run sent the batch to the robot (False: another run had claimed it).")
    accepted: bool = Field(default=False, description="The robot answered 2xx.")
    outcome_unknown: bool = Field(
        default=False, description="Sent, but no answer reached us: the job waits for results until its deadline."
    )
    status_code: int | None = Field(default=None, description="HTTP status of the robot's answer.")
    reason: str | None = Field(
        default=None, description="Why the job failed at dispatch, or why its outcome is unknown."
    )


def _fail(engine, job_id: str, reason: str, *, unsent_only: bool = False) -> bool:
    with UnitOfWork(engine) as uow:
        failed = fail_job(
            uow.session,
            job_id,
            reason=reason,
            error_type=ErrorType.DISPATCH,
            error_message=reason,
            dispatch_refused=True,
            unsent_only=unsent_only,
        )
        uow.commit()
    return failed


def _claimed_elsewhere(job_id: str) -> DispatchResult:
    _say(logging.INFO, job_id, "el envío ya lo reclamó otra ejecución; no se reenvía (se esperan sus resultados)")
    return DispatchResult(sent=False)


def _unprepared(exc: DomainError) -> str:
    return f"No se pudo preparar el lote para el robot: {exc.message}"


def dispatch_once(engine, settings: Settings, job_id: str) -> DispatchResult:
    """Check the portal login can be read, claim the job's dispatch (committed before any HTTP call), then POST it;
    a rerun finds it claimed."""
    # The key (maybe a Prefect Secret block) and the password are checked before the claim: a job that cannot be
    # sent fails now with the reason, instead of staying claimed-but-unsent until its deadline.
    try:
        credentials_key = runtime.credentials_key(settings)
        with UnitOfWork(engine, readonly=True) as uow:
            portal_credentials(uow.session, get_job(uow.session, job_id), credentials_key=credentials_key)
    except DomainError as exc:
        reason = _unprepared(exc)
        if not _fail(engine, job_id, reason, unsent_only=True):  # another run claimed it: its outcome stands
            return _claimed_elsewhere(job_id)
        _say(logging.ERROR, job_id, reason)
        return DispatchResult(sent=False, reason=reason)
    secret = new_callback_secret()
    with UnitOfWork(engine) as uow:
        claimed = claim_dispatch(uow.session, job_id, callback_secret_hash=hash_callback_secret(secret))
        uow.commit()
    if not claimed:
        return _claimed_elsewhere(job_id)
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            # Built after the claim: from then on no pending item can be withdrawn (withdraw_unsent_items).
            request = build_dispatch_request(
                uow.session,
                job_id,
                callback_url=settings.callback_url,
                callback_secret=secret,
                credentials_key=credentials_key,
            )
    except DomainError as exc:  # e.g. the carrier config removed since the check: nothing was sent, nor will be
        reason = _unprepared(exc)
        _say(logging.ERROR, job_id, reason)
        _fail(engine, job_id, reason)
        return DispatchResult(sent=False, reason=reason)
    orders = len(request.get("orders") or [])
    _say(
        logging.INFO,
        job_id,
        f"enviando {orders} pedido(s) al robot en {robot_address(settings.robot_url)} "
        f"(una sola vez; plazo de respuesta {settings.robot_dispatch_timeout_s:g} s)",
    )
    started = time.monotonic()
    try:
        answer = dispatch_batch(settings.robot_url, request, timeout_s=settings.robot_dispatch_timeout_s)
    except DispatchRefused as exc:
        _say(logging.ERROR, job_id, f"el robot no recibió el lote: {exc.reason}")
        _fail(engine, job_id, exc.reason)
        return DispatchResult(sent=True, status_code=exc.status_code, reason=exc.reason)
    except DispatchOutcomeUnknown as exc:
        # Not a refusal: the robot starts before it answers. Results are recorded as they come; the deadline
        # closes whatever never comes.
        _say(logging.WARNING, job_id, f"envío sin respuesta: {exc.reason}")
        with UnitOfWork(engine) as uow:
            mark_dispatch_unknown(uow.session, job_id)
            uow.commit()
        return DispatchResult(sent=True, outcome_unknown=True, reason=exc.reason)
    finally:
        del request  # it holds the portal password: keep it no longer than the POST
    with UnitOfWork(engine) as uow:
        mark_dispatch_accepted(uow.session, job_id)
        uow.commit()
    said = f": «{answer.message}»" if answer.message else ""
    _say(
        logging.INFO,
        job_id,
        f"el robot aceptó el lote (HTTP {answer.status_code}, "
        f"{1000 * (time.monotonic() - started):.0f} ms){said}; se esperan los resultados",
    )
    return DispatchResult(sent=True, accepted=True, status_code=answer.status_code)
