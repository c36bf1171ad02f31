"""The automation runner: claims outbox events for consumer "automations", runs the matching automations and logs
every execution. Start one or several: `python -m automations.runner` (see `main`).

Delivery of events is at-least-once (a lease on each event); effects are exactly once per (event, automation):
- `automation_executions` has a unique (event_id, automation_id): a redelivered event resumes the same execution;
- internal actions change the database and mark their run succeeded in one transaction (a guarded UPDATE);
- an external action's run is claimed and committed (`started`) before the call, and the call carries an
  Idempotency-Key derived from (event, automation, action index): a crash and redelivery repeats the call with
  the same key, and the provider answers it without sending again.
The first failing action stops the rest (marked skipped). Events at depth MAX_CASCADE_DEPTH run no automation:
the execution is logged as `suppressed`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine

from automations.actions import ActionFailed, Effects, run_external, run_internal
from domain import outbox
from domain.automations import runs
from domain.automations.models import ActionStatus, AutomationActionRun, AutomationExecution, ExecutionStatus
from domain.automations.rules import EXTERNAL_ACTIONS, matching_automations, parse_actions, render_action
from domain.automations.variables import build_variables
from domain.db import UnitOfWork, make_engine
from domain.errors import DomainError
from domain.events import parse_automation_event
from domain.models import OutboxEvent, utcnow
from domain.settings import Settings, get_settings
from relay.outbox_consumer import Delivery, OutboxConsumer

log = logging.getLogger("automations.runner")

DEFAULT_BATCH = 20
DEFAULT_LEASE_SECONDS = 120


class RunStats(BaseModel):
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    executions: int = 0
    actions_succeeded: int = 0
    actions_failed: int = 0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- One batch --------------------------------------------------------------------------------------------------


def run_once(
    engine: Engine,
    settings: Settings,
    *,
    worker_id: str,
    limit: int = DEFAULT_BATCH,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    effects: Effects | None = None,
) -> RunStats:
    """Claim up to `limit` events, run their automations, mark them delivered (or due again on an error)."""
    stats = RunStats()
    # The lease is checked before each event: a slow batch may outlive it, and another runner then owns the event.
    consumer = OutboxConsumer(engine, outbox.AUTOMATIONS, worker_id, lease_seconds=lease_seconds, check_lease=True)
    events = consumer.claim(limit)
    stats.claimed = len(events)
    if not events:
        return stats
    own_effects = effects is None
    effects = effects or Effects.from_settings(settings)
    try:
        delivered = consumer.deliver(events, lambda event: _deliver(engine, effects, event, worker_id, stats))
    finally:
        if own_effects:
            effects.close()
    stats.delivered, stats.retried = delivered.delivered, delivered.failed
    return stats


def _deliver(engine: Engine, effects: Effects, event: OutboxEvent, worker_id: str, stats: RunStats) -> Delivery:
    """The automations handler: an exception propagates, and the consumer makes the event due again with backoff."""
    process_event(engine, effects, event, worker_id=worker_id, stats=stats)
    return Delivery.done()


def process_event(
    engine: Engine, effects: Effects, event: OutboxEvent, *, worker_id: str, stats: RunStats | None = None
) -> None:
    """Run every matching automation of one event (resuming executions a crashed runner left unfinished)."""
    stats = stats if stats is not None else RunStats()
    happened = parse_automation_event(event.event_type, event.payload)
    with UnitOfWork(engine) as uow:
        automations = matching_automations(uow.session, workspace_id=event.workspace_id, event=happened)
    variables = build_variables(happened)
    for automation in automations:
        execution = start_execution(engine, event, automation, variables=variables, worker_id=worker_id)
        if execution.status != ExecutionStatus.RUNNING:
            continue
        stats.executions += 1
        run_actions(engine, effects, event, execution, variables=variables, stats=stats)


def start_execution(
    engine: Engine, event: OutboxEvent, automation: Any, *, variables: dict[str, Any], worker_id: str
) -> AutomationExecution:
    """Create the (event, automation) execution with its action runs, once; return it (new or already there)."""
    with UnitOfWork(engine) as uow:
        execution, inserted = runs.start_execution(
            uow.session, event, automation, variables=variables, worker_id=worker_id
        )
        uow.commit()
    if inserted and execution.status == ExecutionStatus.SUPPRESSED:
        log.warning("automation %s suppressed for event %s: %s", automation.id, event.event_id, execution.error)
    return execution


# --- Actions ----------------------------------------------------------------------------------------------------


def _runs(engine: Engine, execution_id: str) -> list[AutomationActionRun]:
    with UnitOfWork(engine) as uow:
        return runs.action_runs(uow.session, execution_id)


def _set_run(engine: Engine, run_id: int, *, from_status: tuple[str, ...], **values: Any) -> bool:
    """A guarded transition of an action run in its own transaction; True only for the caller that made it."""
    with UnitOfWork(engine) as uow:
        changed = runs.set_action_run(uow.session, run_id, from_status=from_status, **values)
        uow.commit()
    return changed


def _finish_execution(engine: Engine, execution_id: str, status: str, error: str | None = None) -> None:
    with UnitOfWork(engine) as uow:
        runs.finish_execution(uow.session, execution_id, status, error)
        uow.commit()


def _fail_execution(engine: Engine, execution_id: str, index: int, error: str | None) -> None:
    """The action at `index` failed: the rest are skipped and the execution fails, in one transaction."""
    with UnitOfWork(engine) as uow:
        runs.skip_rest(uow.session, execution_id, index, runs.skipped_after(index))
        runs.finish_execution(uow.session, execution_id, ExecutionStatus.FAILED, runs.action_failed(index, error))
        uow.commit()


def run_actions(
    engine: Engine,
    effects: Effects,
    event: OutboxEvent,
    execution: AutomationExecution,
    *,
    variables: dict[str, Any],
    stats: RunStats,
) -> None:
    """Run the execution's pending actions in order; the first failure stops the rest."""
    actions = parse_actions(execution.actions)
    for run in _runs(engine, execution.id):
        if run.status in (ActionStatus.SUCCEEDED, ActionStatus.SKIPPED):
            continue
        error = None
        if run.status == ActionStatus.FAILED:  # a crash after the failure was recorded, before the rest was skipped
            error = run.error
        else:
            rendered = render_action(actions[run.action_index], variables)
            if rendered.action["type"] in EXTERNAL_ACTIONS:
                error = _run_external(engine, effects, run, rendered.action, rendered.missing)
            else:
                error = _run_internal(engine, event, execution, run, rendered.action, rendered.missing)
        if error is not None:
            stats.actions_failed += 1
            _fail_execution(engine, execution.id, run.action_index, error)
            log.warning("execution %s failed at action %s: %s", execution.id, run.action_index, error)
            return
        stats.actions_succeeded += 1
    # Another runner (after a lease expiry) may have failed a run meanwhile: decide from what is recorded.
    failed = [r for r in _runs(engine, execution.id) if r.status == ActionStatus.FAILED]
    if failed:
        _finish_execution(
            engine, execution.id, ExecutionStatus.FAILED, runs.action_failed(failed[0].action_index, failed[0].error)
        )
        return
    _finish_execution(engine, execution.id, ExecutionStatus.SUCCEEDED)
    log.info(
        "execution %s of automation %s for event %s succeeded",
        execution.id,
        execution.automation_id,
        execution.event_id,
    )


def _result(result: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    return {**result, "missing_variables": missing} if missing else result


def _run_internal(
    engine: Engine,
    event: OutboxEvent,
    execution: AutomationExecution,
    run: AutomationActionRun,
    action: dict[str, Any],
    missing: list[str],
) -> str | None:
    """The effect and the run's success commit together; returns the error text when the action failed."""
    started = time.monotonic()
    started_at = utcnow()
    with UnitOfWork(engine) as uow:
        # Taking the run first serialises concurrent runners on its row: the loser sees it already succeeded.
        if not runs.set_action_run(
            uow.session,
            run.id,
            from_status=(ActionStatus.PENDING,),
            status=ActionStatus.STARTED,
            attempts=AutomationActionRun.attempts + 1,
            started_at=started_at,
        ):
            # Read in this transaction: on SQLite it holds the write lock, a second one would wait for it.
            return runs.settled_error(uow.session, run.id)
        try:
            result = run_internal(
                uow.session,
                action,
                workspace_id=execution.workspace_id,
                order_id=execution.order_id,
                automation_id=execution.automation_id,
                idempotency_key=run.idempotency_key,
                depth=event.depth + 1,
            )
        except (DomainError, ActionFailed) as exc:
            uow.rollback()
            error = getattr(exc, "message", None) or str(exc)
        else:
            runs.set_action_run(
                uow.session,
                run.id,
                from_status=(ActionStatus.STARTED,),
                status=ActionStatus.SUCCEEDED,
                finished_at=utcnow(),
                duration_ms=int((time.monotonic() - started) * 1000),
                result=_result(result, missing),
            )
            uow.commit()
            return None
    _set_run(
        engine,
        run.id,
        from_status=(ActionStatus.PENDING,),
        status=ActionStatus.FAILED,
        attempts=AutomationActionRun.attempts + 1,
        started_at=started_at,
        finished_at=utcnow(),
        duration_ms=int((time.monotonic() - started) * 1000),
        error=error[:2000],
        result=_result({}, missing) or None,
    )
    return error


def _run_external(
    engine: Engine, effects: Effects, run: AutomationActionRun, action: dict[str, Any], missing: list[str]
) -> str | None:
    """Claim (commit `started`), call with the run's Idempotency-Key, record the outcome."""
    # `started` again is allowed: that is a redelivery after a crash mid-call; the same key makes it safe.
    claimed = _set_run(
        engine,
        run.id,
        from_status=(ActionStatus.PENDING, ActionStatus.STARTED),
        status=ActionStatus.STARTED,
        attempts=AutomationActionRun.attempts + 1,
        started_at=utcnow(),
    )
    if not claimed:
        return _settled_error(engine, run.id)
    started = time.monotonic()
    try:
        result, error = run_external(effects, action, idempotency_key=run.idempotency_key), None
    except ActionFailed as exc:
        result, error = None, str(exc)
    values: dict[str, Any] = dict(finished_at=utcnow(), duration_ms=int((time.monotonic() - started) * 1000))
    if error is None:
        values.update(status=ActionStatus.SUCCEEDED, result=_result(result or {}, missing), error=None)
    else:
        values.update(status=ActionStatus.FAILED, error=error[:2000], result=_result({}, missing) or None)
    _set_run(engine, run.id, from_status=(ActionStatus.STARTED,), **values)
    return error


def _settled_error(engine: Engine, run_id: int) -> str | None:
    """Another runner settled this run: its error if it failed, else None."""
    with UnitOfWork(engine) as uow:
        return runs.settled_error(uow.session, run_id)


# --- The process ------------------------------------------------------------------------------------------------


def run_forever(
    engine: Engine,
    settings: Settings,
    *,
    worker_id: str | None = None,
    limit: int = DEFAULT_BATCH,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    poll_interval: float = 1.0,
    stop: threading.Event | None = None,
) -> None:
    """Drain the outbox until `stop` is set; several processes may run this at once."""
    worker_id = worker_id or default_worker_id()
    stop = stop or threading.Event()
    effects = Effects.from_settings(settings)
    log.info("automation runner %s started", worker_id)
    try:
        while not stop.is_set():
            if not settings.automations_enabled:
                stop.wait(poll_interval)
                continue
            try:
                stats = run_once(
                    engine, settings, worker_id=worker_id, limit=limit, lease_seconds=lease_seconds, effects=effects
                )
            except Exception:  # e.g. the database is restarting: wait and try again
                log.exception("automation runner %s: batch failed", worker_id)
                stop.wait(poll_interval)
                continue
            if stats.claimed:
                log.info("automation runner %s: %s", worker_id, stats.model_dump())
            else:
                stop.wait(poll_interval)
    finally:
        effects.close()
        log.info("automation runner %s stopped", worker_id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Runs automations for outbox events (consumer 'automations').")
    parser.add_argument("--worker-id", default=None, help="Name in logs and leases (default host:pid)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--lease-seconds", type=int, default=DEFAULT_LEASE_SECONDS)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--once", action="store_true", help="Run one batch and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    engine = make_engine(settings.database_url)
    worker_id = args.worker_id or default_worker_id()
    if args.once:
        print(
            run_once(
                engine, settings, worker_id=worker_id, limit=args.batch_size, lease_seconds=args.lease_seconds
            ).model_dump_json(),
            flush=True,
        )
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_forever(
        engine,
        settings,
        worker_id=worker_id,
        limit=args.batch_size,
        lease_seconds=args.lease_seconds,
        poll_interval=args.poll_interval,
        stop=stop,
    )
    engine.dispose()


if __name__ == "__main__":
    main()
