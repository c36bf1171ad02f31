"""The typed run input a suspended batch run waits for (`submit-robot-job`, `retry-failed-items`, or the
reconciler's `orchestrate-robot-job`), shared by the flow and the resumer."""

from __future__ import annotations

from prefect.input import RunInput
from pydantic import Field

from domain.events import BatchEvent


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
    def from_event(cls, event: BatchEvent) -> BatchCompleted:
        """From the domain's batch event (`robot.batch.completed` or `.corrected`), when the job row is gone."""
        return cls(job_id=event.job_id, status=event.status, success_count=event.success_count,
                   error_count=event.error_count, total_items=event.total_items)  # fmt: skip


def pause_key(job_id: str) -> str:
    """The suspend key of a job's flow run: one suspension per job, whatever reruns happen."""
    return f"robot-job-{job_id}"


def response_key(job_id: str) -> str:
    """Where Prefect stores the input a resume delivered (`<state name>-<pause key>-response`)."""
    return f"suspended-{pause_key(job_id)}-response"
