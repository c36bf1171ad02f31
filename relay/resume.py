"""The consumer of outbox events "resume": resume a job's suspended flow run once its batch completed, and carry a
late correction of a finished job to the Prefect UI.

Every `robot.batch.completed` event is delivered until Prefect confirms the run left `Suspended`:
- resumed now, or resumed before, or the run already finished (or there is no run) → delivered;
- the run has not suspended yet (still running, or its input schema not saved yet) → retried within seconds;
- Prefect unreachable → retried later (the reconciler redelivers every minute).

Every `robot.batch.corrected` event (a robot success overturned a closure of ours after the job finished) is
delivered once the job's run has ended, its summary artifacts are republished and its final state agrees with the
job (relay.settle: a `Failed` run of a now `completed` job becomes `Completed`). A run still suspended is resumed
(it then finishes from the database); a run still running is waited for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any
from uuid import UUID

import httpx
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings
from sqlalchemy import Engine

from domain import outbox
from domain.batches.jobs import get_job
from domain.db import UnitOfWork
from domain.errors import UnknownJob
from domain.events import BatchEvent, RobotBatchCorrected, parse_batch_event
from domain.models import FINISHED_JOB_STATUSES, OutboxEvent
from relay.artifacts import publish_summary
from relay.outbox_consumer import Delivery, OutboxConsumer
from relay.prefect_api import TRANSPORT_ERRORS, PrefectUnavailable, is_server_error, prefect_client
from relay.progress import publish_progress
from relay.run_input import BatchCompleted, response_key, run_input_of
from relay.run_log import log_in_job_run
from relay.settle import agree_run_state, read_run_state

log = logging.getLogger("relay.resume")

NOT_SUSPENDED_RETRY_S = 1.0
UNREACHABLE_RETRY_S = 20.0
LEASE_S = 60


class Outcome(StrEnum):
    RESUMED = "resumed"
    ALREADY_DONE = "already_done"  # resumed before, finished, or nothing to resume: the event is delivered
    NOT_SUSPENDED_YET = "not_suspended_yet"  # the run is still before its suspend: retry within seconds
    UNREACHABLE = "unreachable"  # Prefect did not answer: retry later
    CORRECTED = "corrected"  # a correction reached the UI: summary republished, run state agrees
    RUN_NOT_FINISHED = "run_not_finished"  # a correction waits for the job's run to end: retry within seconds

    @property
    def delivered(self) -> bool:
        return self in (Outcome.RESUMED, Outcome.ALREADY_DONE, Outcome.CORRECTED)

    @property
    def retry_soon(self) -> bool:
        return self in (Outcome.NOT_SUSPENDED_YET, Outcome.RUN_NOT_FINISHED)


@dataclass
class ResumeStats:
    claimed: int = 0
    resumed: int = 0
    already_done: int = 0
    not_suspended_yet: int = 0
    unreachable: int = 0
    corrected: int = 0
    run_not_finished: int = 0

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    def __iadd__(self, other: ResumeStats) -> ResumeStats:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def retry_soon(self) -> int:
        """Events left for another try within seconds: the run is before its suspend, or Prefect did not answer."""
        return self.not_suspended_yet + self.run_not_finished + self.unreachable

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# What operators read in the job's run when a resume or a correction reached it.
RUN_LINES = {
    Outcome.RESUMED: "lote terminado; se reanuda la ejecución para cerrar el lote y publicar el resumen",
    Outcome.CORRECTED: "el robot reportó resultados después del cierre: resumen republicado y estado de la ejecución "
    "ajustado al lote",
}


def _with_prefect(work: Callable[[Any], tuple[Outcome, str]]) -> tuple[Outcome, str]:
    """`work(client)` against Prefect; a Prefect that does not answer (or answers 5xx) is UNREACHABLE."""
    try:
        with prefect_client() as client:
            return work(client)
    except PrefectUnavailable as exc:
        return Outcome.UNREACHABLE, str(exc)
    except Exception as exc:
        if isinstance(exc, TRANSPORT_ERRORS) or is_server_error(exc):
            return Outcome.UNREACHABLE, f"{type(exc).__name__}: {exc}"
        raise


def resume_run(flow_run_id: str | None, run_input: BatchCompleted) -> tuple[Outcome, str]:
    """Try to resume one flow run with its run input; (outcome, why)."""
    if not flow_run_id:
        return Outcome.ALREADY_DONE, "the job has no flow run"
    return _with_prefect(lambda client: _resume(client, UUID(flow_run_id), run_input))


def _resume(client, run_id: UUID, run_input: BatchCompleted) -> tuple[Outcome, str]:
    # The client's resume call rather than prefect.flow_runs.resume_flow_run: that wrapper returns silently on an
    # ABORT or WAIT answer, and an event marked delivered for a resume that did not happen strands the run.
    # The resume is tried first, before any read of the run: this call is on the last result → run `Completed`
    # path, and a run that is not paused answers ABORT without any change. Only a resume not accepted pays for the
    # read that says why.
    try:
        result = client.resume_flow_run(run_id, run_input=run_input.model_dump(mode="json"))
    except ObjectNotFound:
        return Outcome.ALREADY_DONE, "the flow run does not exist on this Prefect server"
    except httpx.HTTPStatusError as exc:  # this client method raises the bare 404, not ObjectNotFound
        if exc.response.status_code == 404:
            return Outcome.ALREADY_DONE, "the flow run does not exist on this Prefect server"
        raise
    if result.status == SetStateStatus.ACCEPT:
        return Outcome.RESUMED, "resumed"
    if result.state is not None and result.state.type == StateType.FAILED:
        return Outcome.ALREADY_DONE, "the suspend timed out; the run failed on the server"
    try:
        state = client.read_flow_run(run_id).state
    except ObjectNotFound:
        return Outcome.ALREADY_DONE, "the flow run does not exist on this Prefect server"
    if state is None:
        return Outcome.NOT_SUSPENDED_YET, "the run has no state yet"
    if state.is_paused():
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


def _target(engine: Engine, event: BatchEvent) -> tuple[str | None, BatchCompleted]:
    """The job's current flow run and run input, read from the database (a crashed run's rerun replaces it)."""
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            job = get_job(uow.session, event.job_id)
            return job.flow_run_id or event.flow_run_id, run_input_of(uow.session, job)
    except UnknownJob:
        return event.flow_run_id, BatchCompleted.from_event(event)


def correct_run(engine: Engine, job_id: str) -> tuple[Outcome, str]:
    """Carry a finished job's correction to Prefect once its run has ended: summary, then the run's final state."""
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            job = get_job(uow.session, job_id)
            flow_run_id, status, reason = job.flow_run_id, job.status, job.failure_reason
            run_input = run_input_of(uow.session, job)
    except UnknownJob:
        return Outcome.ALREADY_DONE, "unknown job"

    def correct(client) -> tuple[Outcome, str]:
        state = read_run_state(client, flow_run_id)
        if state is not None and state.is_paused():
            # The run never got its resume: resume it now; it finishes from the (corrected) database.
            outcome, why = _resume(client, UUID(flow_run_id), run_input)
            return Outcome.RUN_NOT_FINISHED, f"the run was suspended, resume: {outcome.value}: {why}"
        if state is not None and not state.is_final():
            return Outcome.RUN_NOT_FINISHED, f"the run is {state.name}; its own end publishes first"
        publish_summary(engine, job_id)
        changed = agree_run_state(client, flow_run_id, state, status, reason) if state is not None else None
        return Outcome.CORRECTED, f"summary republished; run {'set ' + changed if changed else 'already agreed'}"

    return _with_prefect(correct)


def deliver_resume_events(
    engine: Engine, *, worker_id: str, limit: int = 20, unreachable_retry_s: float = UNREACHABLE_RETRY_S
) -> ResumeStats:
    """Claim due "resume" events, resume their flow runs, and record each outcome in its own transaction."""
    stats = ResumeStats()
    consumer = OutboxConsumer(engine, outbox.RESUME, worker_id, lease_seconds=LEASE_S)
    events = consumer.claim(limit)
    stats.claimed = len(events)
    consumer.deliver(events, lambda event: _deliver(engine, event, stats, unreachable_retry_s))
    return stats


def _deliver(engine: Engine, event: OutboxEvent, stats: ResumeStats, unreachable_retry_s: float) -> Delivery:
    """The resume handler: resume the job's run (or carry its correction), count and log the outcome."""
    event_id, event_type, job_id = event.event_id, event.event_type, event.aggregate_id
    try:
        batch = parse_batch_event(event_type, event.payload)
        job_id = batch.job_id
        if isinstance(batch, RobotBatchCorrected):
            outcome, why = correct_run(engine, batch.job_id)
        else:
            flow_run_id, run_input = _target(engine, batch)
            outcome, why = resume_run(flow_run_id, run_input)
    except Exception as exc:  # an unexpected answer must not lose the event: retry later
        log.exception("%s of job %s failed", event_type, job_id)
        outcome, why = Outcome.UNREACHABLE, f"{type(exc).__name__}: {exc}"
    stats.count(outcome)
    # Anything but a resume or a correction now is worth a warning: it is retried or needs nothing at all.
    level = logging.INFO if outcome in (Outcome.RESUMED, Outcome.CORRECTED) else logging.WARNING
    log.log(level, "%s event %s (job %s): %s: %s", event_type, event_id, job_id, outcome.value, why)
    if outcome in RUN_LINES:
        log_in_job_run(engine, log, logging.INFO, job_id, f"Lote {job_id}: {RUN_LINES[outcome]}")
    if outcome.delivered:
        return Delivery.done()
    retry = NOT_SUSPENDED_RETRY_S if outcome.retry_soon else unreachable_retry_s
    return Delivery.retry(f"{outcome.value}: {why}", retry)


def resume_after_commit(engine: Engine, job_id: str) -> ResumeStats | None:
    """Best effort, right after a callback committed: one pass over the job's resume events if it is finished (it
    just finished, or a late result corrected it), then its progress artifact. Never raises.

    None when there is nothing to do here (the job is still processing, Prefect is not configured, or this failed:
    the outbox keeps the event for the reconciler). Otherwise the pass's stats: `stats.retry_soon` > 0 means the run
    has not reached its suspend yet (or Prefect did not answer), and the caller asks again in NOT_SUSPENDED_RETRY_S
    (webhook/after_commit.py, on a timer, within its budget).
    """
    try:
        if not get_current_settings().api.url:
            return None  # nothing to resume against; the events wait in the outbox
        with UnitOfWork(engine, readonly=True) as uow:
            finished = get_job(uow.session, job_id).status in FINISHED_JOB_STATUSES
        if not finished:
            publish_progress(engine, job_id)
            return None
        # The resume first: it is on the last result → run Completed path; the progress only after it.
        stats = deliver_resume_events(
            engine, worker_id=f"after-commit-{os.getpid()}", limit=10, unreachable_retry_s=NOT_SUSPENDED_RETRY_S
        )
        publish_progress(engine, job_id)
        return stats
    except Exception:
        log.exception("resume after commit of job %s failed; the reconciler will redeliver", job_id)
        return None
