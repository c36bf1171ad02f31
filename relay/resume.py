"""Resume a job's suspended flow run once its batch completed: the consumer of outbox events "resume".

Every `robot.batch.completed` event is delivered until Prefect confirms the run left `Suspended`:
- resumed now, or resumed before, or the run already finished (or there is no run) → delivered;
- the run has not suspended yet (still running, or its input schema not saved yet) → retried within seconds;
- Prefect unreachable → retried later (the reconciler redelivers every minute).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound
from sqlalchemy import Engine

from domain import outbox
from domain.db import UnitOfWork
from domain.errors import UnknownJob
from domain.jobs import get_job
from domain.models import FINISHED_JOB_STATUSES
from relay.prefect_api import TRANSPORT_ERRORS, PrefectUnavailable, is_server_error, prefect_calls
from relay.run_input import BatchCompleted, response_key

log = logging.getLogger("relay.resume")

NOT_SUSPENDED_RETRY_S = 1.0
UNREACHABLE_RETRY_S = 20.0
LEASE_S = 60


class Outcome(StrEnum):
    RESUMED = "resumed"
    ALREADY_DONE = "already_done"  # resumed before, finished, or nothing to resume: the event is delivered
    NOT_SUSPENDED_YET = "not_suspended_yet"  # the run is still before its suspend: retry within seconds
    UNREACHABLE = "unreachable"  # Prefect did not answer: retry later

    @property
    def delivered(self) -> bool:
        return self in (Outcome.RESUMED, Outcome.ALREADY_DONE)


@dataclass
class ResumeStats:
    claimed: int = 0
    resumed: int = 0
    already_done: int = 0
    not_suspended_yet: int = 0
    unreachable: int = 0

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    def __iadd__(self, other: "ResumeStats") -> "ResumeStats":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def resume_run(flow_run_id: str | None, run_input: BatchCompleted) -> tuple[Outcome, str]:
    """Try to resume one flow run with its run input; (outcome, why)."""
    if not flow_run_id:
        return Outcome.ALREADY_DONE, "the job has no flow run"
    try:
        with prefect_calls(), get_client(sync_client=True) as client:
            return _resume(client, UUID(flow_run_id), run_input)
    except PrefectUnavailable as exc:
        return Outcome.UNREACHABLE, str(exc)
    except Exception as exc:
        if isinstance(exc, TRANSPORT_ERRORS) or is_server_error(exc):
            return Outcome.UNREACHABLE, f"{type(exc).__name__}: {exc}"
        raise


def _resume(client, run_id: UUID, run_input: BatchCompleted) -> tuple[Outcome, str]:
    # The client's resume call rather than prefect.flow_runs.resume_flow_run: that wrapper returns silently on an
    # ABORT or WAIT answer, and an event marked delivered for a resume that did not happen strands the run.
    try:
        state = client.read_flow_run(run_id).state
    except ObjectNotFound:
        return Outcome.ALREADY_DONE, "the flow run does not exist on this Prefect server"
    if state is None:
        return Outcome.NOT_SUSPENDED_YET, "the run has no state yet"
    if state.is_paused():
        result = client.resume_flow_run(run_id, run_input=run_input.model_dump(mode="json"))
        if result.status == SetStateStatus.ACCEPT:
            return Outcome.RESUMED, "resumed"
        if result.state is not None and result.state.type == StateType.FAILED:
            return Outcome.ALREADY_DONE, "the suspend timed out; the run failed on the server"
        # e.g. REJECT "Run input schema not found": the run proposed `Suspended` but has not saved its input
        # schema yet. Whatever it is, the run is still paused: try again shortly.
        reason = getattr(result.details, "reason", None)
        return Outcome.NOT_SUSPENDED_YET, f"resume answered {result.status.value}: {reason}"
    if state.is_final():
        return Outcome.ALREADY_DONE, f"the run already finished ({state.type.value})"
    if _resumed_before(client, run_id, run_input.job_id):
        return Outcome.ALREADY_DONE, f"the run was resumed before (now {state.name})"
    return Outcome.NOT_SUSPENDED_YET, f"the run is {state.name} and not suspended yet"


def _resumed_before(client, run_id: UUID, job_id: str) -> bool:
    """A resume stores its input under the pause's response key: present means the run was resumed."""
    try:
        client.read_flow_run_input(run_id, response_key(job_id))
    except ObjectNotFound:
        return False
    except httpx.HTTPStatusError as exc:  # this client method raises the bare 404, not ObjectNotFound
        if exc.response.status_code == 404:
            return False
        raise
    return True


def _target(engine: Engine, payload: dict[str, Any]) -> tuple[str | None, BatchCompleted]:
    """The job's current flow run and run input, read from the database (a crashed run's rerun replaces it)."""
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            job = get_job(uow.session, payload["job_id"])
            flow_run_id = job.flow_run_id or payload.get("flow_run_id")
            run_input = BatchCompleted(
                job_id=job.id,
                status=job.status,
                success_count=job.success_count,
                error_count=job.error_count,
                total_items=job.total_items,
            )
    except UnknownJob:
        return payload.get("flow_run_id"), BatchCompleted.from_payload(payload)
    return flow_run_id, run_input


def deliver_resume_events(
    engine: Engine, *, worker_id: str, limit: int = 20, unreachable_retry_s: float = UNREACHABLE_RETRY_S
) -> ResumeStats:
    """Claim due "resume" events, resume their flow runs, and record each outcome in its own transaction."""
    stats = ResumeStats()
    with UnitOfWork(engine) as uow:
        events = outbox.claim_events(
            uow.session, consumer=outbox.RESUME, worker_id=worker_id, limit=limit, lease_seconds=LEASE_S
        )
        claimed = [(event.event_id, dict(event.payload)) for event in events]
        uow.commit()
    stats.claimed = len(claimed)
    for event_id, payload in claimed:
        try:
            flow_run_id, run_input = _target(engine, payload)
            outcome, why = resume_run(flow_run_id, run_input)
        except Exception as exc:  # an unexpected answer must not lose the event: retry later
            log.exception("resume of job %s failed", payload.get("job_id"))
            outcome, why = Outcome.UNREACHABLE, f"{type(exc).__name__}: {exc}"
        stats.count(outcome)
        # Anything but a resume now is worth a warning: it is retried or needs no resume at all.
        log.log(logging.INFO if outcome == Outcome.RESUMED else logging.WARNING, "resume event %s (job %s): %s: %s",
                event_id, payload.get("job_id"), outcome.value, why)
        with UnitOfWork(engine) as uow:
            if outcome.delivered:
                outbox.mark_delivered(uow.session, event_id)
            else:
                retry = NOT_SUSPENDED_RETRY_S if outcome == Outcome.NOT_SUSPENDED_YET else unreachable_retry_s
                outbox.mark_failed(uow.session, event_id, error=f"{outcome.value}: {why}", retry_in_seconds=retry)
            uow.commit()
    return stats


def resume_after_commit(engine: Engine, job_id: str, *, patience_s: float = 5.0) -> ResumeStats | None:
    """Best effort, right after a callback committed: progress, then resume if the job just finished. Never raises.

    A run still before its suspend, or a Prefect API that did not answer (a busy SQLite server answers 503), is
    retried every second for `patience_s`; whatever is left stays in the outbox for the reconciler.
    """
    try:
        from relay.progress import publish_progress

        publish_progress(engine, job_id)
        with UnitOfWork(engine, readonly=True) as uow:
            finished = get_job(uow.session, job_id).status in FINISHED_JOB_STATUSES
        if not finished:
            return None
        deadline = time.monotonic() + patience_s
        total = ResumeStats()
        while True:
            stats = deliver_resume_events(
                engine, worker_id=f"after-commit-{os.getpid()}", limit=10, unreachable_retry_s=NOT_SUSPENDED_RETRY_S
            )
            total += stats
            retry = stats.not_suspended_yet + stats.unreachable
            if not retry or time.monotonic() + NOT_SUSPENDED_RETRY_S > deadline:
                return total
            time.sleep(NOT_SUSPENDED_RETRY_S)
    except Exception:
        log.exception("resume after commit of job %s failed; the reconciler will redeliver", job_id)
        return None
