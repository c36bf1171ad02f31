"""What operators type in a form, resolved to ids: a workspace or a stage by name (or id), a batch by its reference.

A batch's reference is `<workspace name> #<n>`: the n-th batch (robot job) created in that workspace, counted from
1. It is the name the batch's flow run carries in the Prefect UI, so an operator copies it from the runs list; the
job id, or a unique prefix of it of at least 8 characters, is accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from domain.errors import UnknownJob, UnknownStage, UnknownWorkspace
from domain.models import CarrierConfig, ItemStatus, Pipeline, RobotJob, RobotJobItem, Stage, Workspace

# How many recent batches a wrong reference lists.
RECENT_BATCHES = 10
MIN_ID_PREFIX = 8
_REFERENCE = re.compile(r"^(?P<workspace>.+?)\s*#\s*(?P<number>\d+)$")


@dataclass(frozen=True)
class BatchRef:
    job_id: str
    workspace_id: str
    workspace_name: str
    number: int

    @property
    def label(self) -> str:
        return f"{self.workspace_name} #{self.number}"


def _listed(names: list[str]) -> str:
    return ", ".join(f"«{name}»" for name in names) or "ninguno"


def resolve_workspace(session: Session, reference: str) -> Workspace:
    """A workspace by id or by name (case and surrounding spaces ignored); a wrong one lists the valid names."""
    reference = reference.strip()
    workspace = session.get(Workspace, reference) if reference else None
    if workspace is not None:
        return workspace
    found = list(session.exec(select(Workspace).where(func.lower(Workspace.name) == reference.lower())))
    if len(found) == 1:
        return found[0]
    names = sorted(set(session.exec(select(Workspace.name))))
    if found:
        raise UnknownWorkspace(
            f"Hay {len(found)} workspaces llamados «{reference}»: indique su id ({', '.join(w.id for w in found)})",
            workspace=reference,
        )
    raise UnknownWorkspace(
        f"Workspace desconocido: «{reference}». Workspaces válidos: {_listed(names)}", workspace=reference
    )


def resolve_stage(session: Session, workspace_id: str, reference: str) -> str | None:
    """A stage of the workspace's pipelines by id or name; empty: None (the workspace's dispatch stage)."""
    reference = reference.strip()
    if not reference:
        return None
    stages = list(
        session.exec(
            select(Stage)
            .join(Pipeline, col(Pipeline.id) == col(Stage.pipeline_id))
            .where(col(Pipeline.workspace_id) == workspace_id)
            .order_by(col(Stage.position))
        )
    )
    matchers: tuple[Callable[[Stage], bool], ...] = (
        lambda s: s.id == reference,
        lambda s: s.name.lower() == reference.lower(),
    )
    for match in matchers:
        found = [s for s in stages if match(s)]
        if len(found) == 1:
            return found[0].id
    raise UnknownStage(
        f"Etapa desconocida en este workspace: «{reference}». Etapas válidas: {_listed([s.name for s in stages])}",
        stage=reference,
    )


def dispatch_stage_name(session: Session, workspace_id: str) -> str | None:
    config = session.exec(select(CarrierConfig).where(CarrierConfig.workspace_id == workspace_id)).first()
    stage = session.get(Stage, config.dispatch_stage_id) if config and config.dispatch_stage_id else None
    return stage.name if stage else None


def batch_ref(session: Session, job: RobotJob) -> BatchRef:
    """The readable reference of a batch: `<workspace> #<n>`."""
    number = session.exec(
        select(func.count())
        .select_from(RobotJob)
        .where(
            RobotJob.workspace_id == job.workspace_id,
            (RobotJob.created_at < job.created_at)
            | ((RobotJob.created_at == job.created_at) & (RobotJob.id <= job.id)),
        )
    ).one()
    return BatchRef(job.id, job.workspace_id, session.get_one(Workspace, job.workspace_id).name, number)


def resolve_batch(session: Session, reference: str) -> BatchRef:
    """A batch by `<workspace> #<n>`, its id or a unique id prefix; a wrong one lists the recent retryable ones."""
    reference = reference.strip()
    job = session.get(RobotJob, reference) if reference else None
    if job is None and len(reference) >= MIN_ID_PREFIX:
        found = list(session.exec(select(RobotJob).where(col(RobotJob.id).startswith(reference)).limit(2)))
        job = found[0] if len(found) == 1 else None
    if job is None and (parsed := _REFERENCE.match(reference)):
        try:
            workspace = resolve_workspace(session, parsed["workspace"])
        except UnknownWorkspace:
            workspace = None
        if workspace is not None and int(parsed["number"]) >= 1:
            job = session.exec(
                select(RobotJob)
                .where(RobotJob.workspace_id == workspace.id)
                .order_by(col(RobotJob.created_at), col(RobotJob.id))
                .offset(int(parsed["number"]) - 1)
                .limit(1)
            ).first()
    if job is not None:
        return batch_ref(session, job)
    raise UnknownJob(
        f"Lote desconocido: «{reference}». Lotes recientes con pedidos fallidos: {_listed(recent_retryable(session))}",
        job_id=reference,
    )


def recent_retryable(session: Session, *, limit: int = RECENT_BATCHES) -> list[str]:
    """References of the most recent batches with failed orders, newest first."""
    failed = (
        select(RobotJobItem.id)
        .where(RobotJobItem.job_id == RobotJob.id, RobotJobItem.status == ItemStatus.ERROR)
        .exists()
    )
    jobs = session.exec(select(RobotJob).where(failed).order_by(col(RobotJob.created_at).desc()).limit(limit))
    return [batch_ref(session, job).label for job in jobs]


def job_of_run(session: Session, flow_run_id: str) -> RobotJob | None:
    """The batch a flow run created or took over (`robot_jobs.flow_run_id`)."""
    return session.exec(select(RobotJob).where(RobotJob.flow_run_id == flow_run_id)).first()
