"""`--wait`: follow the batch of the flow run the CLI started, with a live progress line, until it ends.

The job of run X is the one whose `flow_run_id` is X (the run that creates a batch records itself on it). Until
every flow does so, and for an idempotency key that returned an existing batch, two more ways are accepted: the
job under the operator's idempotency key, and a job the run's artifacts name (`robot-job-<id>-...`).
Never "the latest job of the workspace": another operator's batch is not ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from sqlalchemy import Engine, func, or_
from sqlmodel import select

from cli.deployments import Deployments
from domain.batches.summary import status_label
from domain.db import UnitOfWork
from domain.models import FINISHED_JOB_STATUSES, JobStatus, RobotJob, Workspace

# Asking Prefect costs more than a database read: the run's state and artifacts are read every few polls.
PREFECT_EVERY = 3


@dataclass(frozen=True)
class Progress:
    status: str
    done: int
    total: int
    success: int
    error: int

    @classmethod
    def of(cls, job: RobotJob) -> Progress:
        return cls(
            status=job.status,
            done=min(job.success_count + job.error_count, job.total_items),
            total=job.total_items,
            success=job.success_count,
            error=job.error_count,
        )


@dataclass(frozen=True)
class Followed:
    """How following ended: the job (None if the run never named one), and why it stopped otherwise."""

    job_id: str | None
    status: str | None = None
    problem: str | None = None  # Spanish, for the operator: the run failed before a batch, or the wait timed out

    @property
    def ok(self) -> bool:
        return self.problem is None and self.status == JobStatus.COMPLETED


def bar(done: int, total: int, width: int = 24) -> str:
    filled = width if total <= 0 else round(width * done / total)
    return "█" * filled + "░" * (width - filled)


def progress_text(p: Progress) -> str:
    percent = 100 if p.total <= 0 else int(100 * p.done / p.total)
    return (
        f"{p.done}/{p.total} pedidos ({percent} %)  {p.success} creados  {p.error} con error  "
        f"[{status_label(p.status)}]"
    )


class ProgressLine:
    """On a terminal, one line redrawn in place; otherwise a plain line when progress changed, at most every
    `every_s` (and always the last one), so a log file or CI output stays short."""

    def __init__(self, out: TextIO, *, tty: bool, clock: Callable[[], float] = time.monotonic, every_s: float = 10.0):
        self.out, self.tty, self.clock, self.every_s = out, tty, clock, every_s
        self._shown: Progress | None = None
        self._pending: Progress | None = None
        self._last_at = -1e9
        self._width = 0

    def note(self, text: str) -> None:
        """A line of its own (e.g. which batch is followed), above the progress line."""
        self._clear()
        print(text, file=self.out)
        if self.tty and self._shown is not None:
            self._draw(self._shown)

    def update(self, p: Progress) -> None:
        if self.tty:
            if p != self._shown:
                self._draw(p)
            return
        if p == self._shown:
            return
        self._pending = p
        if self.clock() - self._last_at >= self.every_s:
            self._print_pending()

    def finish(self) -> None:
        if self.tty:
            if self._shown is not None:
                self.out.write("\n")
                self.out.flush()
            self._width = 0
        elif self._pending is not None:
            self._print_pending()

    def _draw(self, p: Progress) -> None:
        line = f"[{bar(p.done, p.total)}] {progress_text(p)}"
        self.out.write("\r" + line.ljust(self._width))
        self.out.flush()
        self._width, self._shown = len(line), p

    def _clear(self) -> None:
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")

    def _print_pending(self) -> None:
        print(f"Avance: {progress_text(self._pending)}", file=self.out, flush=True)
        self._shown, self._pending, self._last_at = self._pending, None, self.clock()


def job_of_run(engine: Engine, flow_run_id: str, *, key: str | None = None, workspace: str | None = None) -> str | None:
    """The job the run created (its `flow_run_id`), else the one under the operator's idempotency key."""
    with UnitOfWork(engine, readonly=True) as uow:
        job_id = uow.session.exec(select(RobotJob.id).where(RobotJob.flow_run_id == flow_run_id)).first()
        if job_id is None and key:
            query = select(RobotJob.id).where(RobotJob.idempotency_key == key)
            if workspace:
                query = query.join(Workspace, Workspace.id == RobotJob.workspace_id).where(
                    or_(Workspace.id == workspace, func.lower(Workspace.name) == workspace.strip().lower())
                )
            job_id = uow.session.exec(query.order_by(RobotJob.created_at.desc())).first()
        return job_id


def read_progress(engine: Engine, job_id: str) -> Progress | None:
    with UnitOfWork(engine, readonly=True) as uow:
        job = uow.session.get(RobotJob, job_id)
        return Progress.of(job) if job is not None else None


def follow(
    engine: Engine,
    deployments: Deployments,
    flow_run_id: str,
    line: ProgressLine,
    *,
    timeout_s: float,
    key: str | None = None,
    workspace: str | None = None,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Followed:
    """Poll until the run's batch has finished, the run ended without naming one, or `timeout_s` passed."""
    deadline = clock() + timeout_s
    job_id: str | None = None
    polls = 0
    while True:
        asking_prefect = polls % PREFECT_EVERY == 0
        polls += 1
        if job_id is None:
            job_id = job_of_run(engine, flow_run_id, key=key, workspace=workspace)
            if job_id is None and asking_prefect:
                # A run's artifacts may name a job of another database (a stack of its own): only ours count.
                named = [j for j in deployments.jobs_named_by(flow_run_id) if read_progress(engine, j) is not None]
                job_id = named[0] if named else None
            if job_id is not None:
                line.note(f"Lote {job_id}")
        if job_id is not None and (progress := read_progress(engine, job_id)) is not None:
            line.update(progress)
            if progress.status in FINISHED_JOB_STATUSES:
                line.finish()
                return Followed(job_id=job_id, status=progress.status)
        elif asking_prefect:
            state = deployments.run_state(flow_run_id)
            # Read the database once more: the run may have recorded its job just before it ended.
            if (
                state is not None
                and state.final
                and job_of_run(engine, flow_run_id, key=key, workspace=workspace) is None
                and not deployments.jobs_named_by(flow_run_id)
            ):
                line.finish()
                why = f": {state.message}" if state.message else ""
                return Followed(job_id=None, problem=f"La ejecución terminó ({state.name}) sin un lote{why}")
        if clock() >= deadline:
            line.finish()
            return Followed(job_id=job_id, status=None, problem=f"El lote no terminó en {timeout_s:g} s")
        sleep(poll_s)
