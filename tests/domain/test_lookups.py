"""What operators type in the forms: workspaces and stages by name or id, batches by «<workspace> #<n>»."""

from __future__ import annotations

import pytest

from domain.batches import jobs
from domain.batches.lookups import (
    batch_ref,
    job_of_run,
    recent_retryable,
    resolve_batch,
    resolve_stage,
    resolve_workspace,
)
from domain.errors import UnknownJob, UnknownStage, UnknownWorkspace
from domain.models import ItemStatus, JobStatus, RobotJob, RobotJobItem
from sample_data.seed import seed_demo


def test_a_workspace_by_name_or_id_and_a_wrong_name_lists_the_valid_ones(uow, demo, credentials_key):
    with uow() as tx:
        seed_demo(tx.session, credentials_key=credentials_key, name="Tienda Norte", orders=[])
        tx.commit()
    with uow() as tx:
        assert resolve_workspace(tx.session, "  tienda demo ").id == demo.workspace_id
        assert resolve_workspace(tx.session, demo.workspace_id).id == demo.workspace_id
        with pytest.raises(UnknownWorkspace) as wrong:
            resolve_workspace(tx.session, "Tienda Sur")
    assert str(wrong.value) == "Workspace desconocido: «Tienda Sur». Workspaces válidos: «Tienda Demo», «Tienda Norte»"


def test_two_workspaces_of_the_same_name_ask_for_the_id(uow, demo, credentials_key):
    with uow() as tx:
        seed_demo(tx.session, credentials_key=credentials_key, orders=[])
        tx.commit()
    with uow() as tx, pytest.raises(UnknownWorkspace, match="Hay 2 workspaces llamados «Tienda Demo»: indique su id"):
        resolve_workspace(tx.session, "Tienda Demo")


def test_a_stage_by_name_or_id_empty_is_the_dispatch_stage(uow, demo, credentials_key):
    with uow() as tx:
        other = seed_demo(tx.session, credentials_key=credentials_key, name="Otra", orders=[])
        tx.commit()
    with uow() as tx:
        assert resolve_stage(tx.session, demo.workspace_id, "") is None
        assert resolve_stage(tx.session, demo.workspace_id, "por despachar") == demo.stage_ids["Por despachar"]
        assert resolve_stage(tx.session, demo.workspace_id, demo.stage_ids["Nuevo"]) == demo.stage_ids["Nuevo"]
        # Another workspace's stage is not this one's.
        with pytest.raises(UnknownStage) as wrong:
            resolve_stage(tx.session, demo.workspace_id, other.stage_ids["Nuevo"])
    assert str(wrong.value).endswith(
        "Etapas válidas: «Nuevo», «Confirmado», «Por despachar», «Despachado», «Entregado»"
    )


def _finished_job(tx, workspace_id: str, *, run: str) -> RobotJob:
    created = jobs.create_robot_job(tx.session, workspace_id=workspace_id, flow_run_id=run)
    job = created.job
    tx.session.query(RobotJobItem).filter(RobotJobItem.job_id == job.id).update({"status": ItemStatus.ERROR})
    tx.session.query(RobotJob).filter(RobotJob.id == job.id).update({"status": JobStatus.COMPLETED})
    return job


def test_batches_are_numbered_per_workspace_and_found_by_reference_id_or_prefix(uow, demo):
    with uow() as tx:
        first = _finished_job(tx, demo.workspace_id, run="run-1")
        second = _finished_job(tx, demo.workspace_id, run="run-2")
        tx.commit()
    with uow() as tx:
        assert batch_ref(tx.session, tx.session.get(RobotJob, second.id)).label == "Tienda Demo #2"
        assert resolve_batch(tx.session, "Tienda Demo #1").job_id == first.id
        assert resolve_batch(tx.session, "tienda demo#2").job_id == second.id
        assert resolve_batch(tx.session, second.id).job_id == second.id
        assert resolve_batch(tx.session, second.id[:8]).label == "Tienda Demo #2"
        assert job_of_run(tx.session, "run-1").id == first.id and job_of_run(tx.session, "nope") is None
        assert recent_retryable(tx.session) == ["Tienda Demo #2", "Tienda Demo #1"]
        with pytest.raises(UnknownJob) as wrong:
            resolve_batch(tx.session, "Tienda Demo #3")
    assert str(wrong.value) == (
        "Lote desconocido: «Tienda Demo #3». Lotes recientes con pedidos fallidos: «Tienda Demo #2», «Tienda Demo #1»"
    )


def test_the_run_creating_a_job_is_recorded_at_once_and_a_key_keeps_the_first_run(uow, demo):
    with uow() as tx:
        created = jobs.create_robot_job(
            tx.session, workspace_id=demo.workspace_id, idempotency_key="run:a", flow_run_id="a"
        )
        again = jobs.create_robot_job(
            tx.session, workspace_id=demo.workspace_id, idempotency_key="run:a", flow_run_id="b"
        )
        tx.commit()
    assert created.job.flow_run_id == "a" and created.job.status == JobStatus.PENDING
    assert not again.created and again.job.id == created.job.id and again.job.flow_run_id == "a"
