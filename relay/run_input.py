"""The typed run input a suspended batch run waits for (`submit-robot-job`, `retry-failed-items`, or the
reconciler's `orchestrate-robot-job`), shared by the flow and the resumer."""

from __future__ import annotations

from prefect.input import RunInput
from pydantic import Field
from sqlmodel import Session

from domain.batches.jobs import JobResult, job_result
from domain.events import BatchEvent
from domain.models import RobotJob


class BatchCompleted(RunInput):
    """Every item of the job is terminal: the flow may finish (it re-reads the job from the database)."""

    job_id: str = Field(description="Trabajo de robot que terminó.")
    status: str = Field(description="Estado del trabajo al terminar: completed o failed.")
    success_count: int = Field(default=0, description="Pedidos creados por el robot.")
    error_count: int = Field(default=0, description="Pedidos con error.")
    total_items: int = Field(default=0, description="Pedidos del lote.")
    timed_out: bool = Field(
        default=False,
        description="El plazo del lote venció: el reconciliador cerró como error (timeout) los pedidos sin resultado.",
    )
    timed_out_items: int = Field(default=0, description="Pedidos cerrados por el plazo, sin resultado del robot.")

    @classmethod
    def of(cls, result: JobResult) -> BatchCompleted:
        fields = {name: getattr(result, name) for name in cls.model_fields if hasattr(result, name)}
        return cls(**fields, timed_out=result.timed_out_items > 0)

    @classmethod
    def from_event(cls, event: BatchEvent) -> BatchCompleted:
        """From the domain's batch event (`robot.batch.completed` or `.corrected`), when the job row is gone."""
        return cls(job_id=event.job_id, status=event.status, success_count=event.success_count,
                   error_count=event.error_count, total_items=event.total_items)  # fmt: skip


def run_input_of(session: Session, job: RobotJob) -> BatchCompleted:
    """The one builder of a finished job's run input: the resume, the correction and the reconciler use it (only a
    job whose row is gone falls back to its event, `BatchCompleted.from_event`)."""
    return BatchCompleted.of(job_result(session, job))


def pause_key(job_id: str) -> str:
    """The suspend key of a job's flow run: one suspension per job, whatever reruns happen."""
    return f"robot-job-{job_id}"


def response_key(job_id: str) -> str:
    """Where Prefect stores the input a resume delivered (`<state name>-<pause key>-response`)."""
    return f"suspended-{pause_key(job_id)}-response"
