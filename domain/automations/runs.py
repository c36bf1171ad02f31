"""The execution records of automations: one execution per (event, automation), one run per action, moved through
their states by guarded SQL so that every effect happens once, whoever (which runner, which redelivery) gets there.

- an execution is inserted once (unique (event_id, automation_id), `INSERT ... ON CONFLICT DO NOTHING`): a
  redelivered event finds the same execution and resumes it;
- the cascade rule: an event at depth `MAX_CASCADE_DEPTH` runs no automation, its execution is `suppressed`;
- an action run moves only from the states its caller expects (`UPDATE ... WHERE status IN (...)`): the caller
  that made the transition is the one that acts;
- an execution finishes once (`UPDATE ... WHERE status = 'running'`).

Functions take the caller's session and never commit (the runner, automations/runner.py, owns the transactions;
on SQLite its writers `BEGIN IMMEDIATE`, see domain/db.py).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from domain.automations.conditions import ConditionGroup, evaluate
from domain.automations.models import (
    ActionStatus,
    Automation,
    AutomationActionRun,
    AutomationExecution,
    ExecutionStatus,
)
from domain.automations.rules import MAX_CASCADE_DEPTH
from domain.models import OutboxEvent, new_id, table_of, utcnow

CONDITIONS_NOT_MET = "Las condiciones no se cumplieron"


def idempotency_key(event_id: str, automation_id: str, index: int) -> str:
    """The Idempotency-Key of one action of one (event, automation): the same on every redelivery."""
    return f"{event_id}:{automation_id}:{index}"


def cascade_stopped(depth: int) -> str | None:
    """The Spanish reason an event at `depth` runs no automation (the cascade rule), or None if it may."""
    if depth < MAX_CASCADE_DEPTH:
        return None
    return f"Cadena de automatizaciones detenida: el evento llegó a la profundidad {depth} (máximo {MAX_CASCADE_DEPTH})"


def execution_verdict(event: OutboxEvent, automation: Automation, variables: dict[str, Any]) -> tuple[str, str | None]:
    """The status an execution starts in, with its reason: suppressed (cascade), conditions not met, or running."""
    stopped = cascade_stopped(event.depth)
    if stopped is not None:
        return ExecutionStatus.SUPPRESSED, stopped
    conditions = ConditionGroup.model_validate(automation.conditions) if automation.conditions else None
    if not evaluate(conditions, variables):
        return ExecutionStatus.CONDITIONS_NOT_MET, CONDITIONS_NOT_MET
    return ExecutionStatus.RUNNING, None


def action_failed(index: int, error: str | None) -> str:
    """The execution's error when its action at `index` failed."""
    return f"Acción {index + 1}: {error}"


def skipped_after(index: int) -> str:
    """Why the actions after a failed one did not run."""
    return f"Omitida: falló la acción {index + 1}"


def _insert_ignore(session: Session, table: Table, values: dict[str, Any], index_elements: list[str]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if this call inserted the row."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=index_elements)
        .returning(table.c.id)
    )
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT that did nothing.
    return session.execute(statement).first() is not None


def start_execution(
    session: Session, event: OutboxEvent, automation: Automation, *, variables: dict[str, Any], worker_id: str
) -> tuple[AutomationExecution, bool]:
    """Create the (event, automation) execution with its action runs, once; (the execution, whether this call
    created it). An execution that does not run (suppressed, conditions not met) is created finished, its actions
    skipped."""
    order_id = event.aggregate_id  # every automations event is about an order: its id (domain.events)
    status, error = execution_verdict(event, automation, variables)
    now = utcnow()
    finished = status != ExecutionStatus.RUNNING
    execution_id = new_id()
    inserted = _insert_ignore(
        session,
        table_of(AutomationExecution),
        dict(
            id=execution_id,
            workspace_id=event.workspace_id,
            automation_id=automation.id,
            event_id=event.event_id,
            event_type=event.event_type,
            order_id=order_id,
            depth=event.depth,
            status=status,
            error=error,
            actions=list(automation.actions),
            worker_id=worker_id,
            started_at=now,
            finished_at=now if finished else None,
        ),
        ["event_id", "automation_id"],
    )
    if inserted:
        for index, action in enumerate(automation.actions):
            session.add(
                AutomationActionRun(
                    execution_id=execution_id,
                    action_index=index,
                    action_type=action["type"],
                    status=ActionStatus.SKIPPED if finished else ActionStatus.PENDING,
                    error=error if finished else None,
                    idempotency_key=idempotency_key(event.event_id, automation.id, index),
                )
            )
    execution = session.exec(
        select(AutomationExecution).where(
            col(AutomationExecution.event_id) == event.event_id,
            col(AutomationExecution.automation_id) == automation.id,
        )
    ).one()
    return execution, inserted


def action_runs(session: Session, execution_id: str) -> list[AutomationActionRun]:
    """The execution's action runs, in action order."""
    return list(
        session.exec(
            select(AutomationActionRun)
            .where(col(AutomationActionRun.execution_id) == execution_id)
            .order_by(col(AutomationActionRun.action_index))
        )
    )


def set_action_run(session: Session, run_id: int, *, from_status: tuple[str, ...], **values: Any) -> bool:
    """Guarded transition of an action run: True only for the caller that made it."""
    result = session.execute(
        update(AutomationActionRun)
        .where(col(AutomationActionRun.id) == run_id, col(AutomationActionRun.status).in_(from_status))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def finish_execution(session: Session, execution_id: str, status: str, error: str | None = None) -> bool:
    """A running execution ends in `status`; True if this call ended it."""
    result = session.execute(
        update(AutomationExecution)
        .where(
            col(AutomationExecution.id) == execution_id,
            col(AutomationExecution.status) == ExecutionStatus.RUNNING,
        )
        .values(status=status, error=error, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def skip_rest(session: Session, execution_id: str, after_index: int, reason: str) -> None:
    """The pending actions after `after_index` are skipped with `reason`."""
    session.execute(
        update(AutomationActionRun)
        .where(
            col(AutomationActionRun.execution_id) == execution_id,
            col(AutomationActionRun.action_index) > after_index,
            col(AutomationActionRun.status) == ActionStatus.PENDING,
        )
        .values(status=ActionStatus.SKIPPED, error=reason)
        .execution_options(synchronize_session=False)
    )


def settled_error(session: Session, run_id: int) -> str | None:
    """Another runner settled this run: its error if it failed, else None."""
    run = session.get(AutomationActionRun, run_id)
    return run.error if run is not None and run.status == ActionStatus.FAILED else None
