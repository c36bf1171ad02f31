"""The typed run input a suspended batch run waits for (`submit-robot-job`, `retry-failed-items`, or the
reconciler's `orchestrate-robot-job`), shared by the flow and the resumer."""

from __future__ import annotations

from typing import Any

from prefect.input import RunInput
from pydantic import Field
from sqlmodel import Session

from domain.batches.jobs import JobResult, job_result
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
    def from_payload(cls, payload: dict[str, Any]) -> BatchCompleted:
        """From a `robot.batch.completed` outbox payload (extra keys such as flow_run_id are dropped)."""
        return cls.model_validate({name: payload[name] for name in cls.model_fields if payload.get(name) is not None})


def run_input_of(session: Session, job: RobotJob) -> BatchCompleted:
    """The one builder of a finished job's run input: the resume, the correction and the reconciler use it (only a
    job whose row is gone falls back to its event's payload, `BatchCompleted.from_payload`)."""
    return BatchCompleted.of(job_result(session, job))


def pause_key(job_id: str) -> str:
    """The suspend key of a job's flow run: one suspension per job, whatever reruns happen."""
    return f"robot-job-{job_id}"


def response_key(job_id: str) -> str:
    """Where Prefect stores the input a resume delivered (`<state name>-<pause key>-response`)."""
    return f"suspended-{pause_key(job_id)}-response"
