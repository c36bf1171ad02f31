"""A finished job's flow run made to agree with the database once that run has ended.

The database is the truth: a late robot success can turn a `failed` job into `completed` after its run ended
`Failed`, and a run can crash or be failed by Prefect's own timer while the robot goes on. Then the run's final
state is set (forced) to what the job says, with a Spanish message operators read in the Prefect UI.
"""

from __future__ import annotations

from uuid import UUID

from prefect.client.schemas.objects import State, StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Completed, Failed

from domain.models import JobStatus

CORRECTED_MESSAGE = "Lote corregido: el robot reportó pedidos creados después del cierre"
INTERRUPTED_MESSAGE = (
    "Lote completado: la ejecución se interrumpió y el reconciliador cerró el lote con los resultados del robot"
)


def read_run_state(client, flow_run_id: str | None) -> State | None:
    """The run's current state; None when the job has no run or this Prefect server does not know it."""
    if not flow_run_id:
        return None
    try:
        return client.read_flow_run(UUID(flow_run_id)).state
    except ObjectNotFound:
        return None


def agreeing_state(state: State, job_status: str, failure_reason: str | None) -> State | None:
    """The final state the run should have instead of `state`, or None when it already agrees (or is cancelled:
    an operator's cancel stays as it is)."""
    if job_status == JobStatus.COMPLETED and state.type == StateType.FAILED:
        return Completed(message=CORRECTED_MESSAGE)
    if job_status == JobStatus.COMPLETED and state.type == StateType.CRASHED:
        return Completed(message=INTERRUPTED_MESSAGE)
    if job_status == JobStatus.FAILED and state.type == StateType.CRASHED:
        return Failed(message=f"Lote fallido: {failure_reason or 'sin motivo registrado'}")
    return None


def agree_run_state(client, flow_run_id: str, state: State, job_status: str, failure_reason: str | None) -> str | None:
    """Force the ended run's state to agree with the job; the new state's name, or None if nothing changed."""
    wanted = agreeing_state(state, job_status, failure_reason)
    if wanted is None:
        return None
    client.set_flow_run_state(UUID(flow_run_id), wanted, force=True)
    return wanted.name
