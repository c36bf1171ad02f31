"""End to end, through the real processes: a batch from the operator's submit to the summary artifacts."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

from domain.batches.jobs import ALL_FAILED_REASON
from domain.db import UnitOfWork
from domain.events import BATCH_COMPLETED, ROBOT_COORD_COMPLETED
from domain.models import Workspace
from tests.e2e.helpers import (
    events,
    items,
    items_artifact,
    job_of,
    jobs_of,
    orchestration_run_of,
    retry,
    seed_workspace,
    submit,
    summary_artifact,
    table_rows,
    wait_flow_final,
    wait_for,
    wait_job_finished,
)

pytestmark = pytest.mark.e2e


def run_batch(stack, count=3):
    workspace_id, order_ids = seed_workspace(stack, count)
    submitted = submit(workspace_id, order_ids)
    job = job_of(stack, workspace_id)
    assert job.flow_run_id == str(submitted.id)  # the run the operator started is the batch
    run = wait_flow_final(submitted.id, timeout_s=60)
    return wait_job_finished(stack, job.id, timeout_s=5), run, order_ids


def workspace_name(stack, workspace_id: str) -> str:
    with UnitOfWork(stack.engine, readonly=True) as uow:
        return uow.session.get(Workspace, workspace_id).name


def runs_of_job(job_id: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job_id}"])))


def test_all_success(stack, sim):
    job, run, _ = run_batch(stack)

    assert (job.status, job.success_count, job.error_count, job.total_items) == ("completed", 3, 0, 3)
    assert all(i.status == "success" and i.tracking_number for i in items(stack, job.id))
    assert run.state.is_completed(), run.state
    assert sim.state()["posts"] == {job.id: 1}
    summary = summary_artifact(job.id)
    assert "✅ 3 pedido(s) creado(s):" in summary.data and "MANIZALES (CDAS)" in summary.data
    rows = table_rows(items_artifact(job.id))
    assert sorted(r["estado"] for r in rows) == ["creado"] * 3
    assert len(events(stack, ROBOT_COORD_COMPLETED)) >= 3


def test_mixed_results(stack, sim):
    workspace_id, order_ids = seed_workspace(stack, 3)
    sim.configure(order_scenarios={order_ids[1]: "invalid_city"})
    submit(workspace_id, order_ids)
    job = job_of(stack, workspace_id)
    run = wait_flow_final(orchestration_run_of(stack, job.id))
    job = wait_job_finished(stack, job.id, timeout_s=5)

    assert (job.status, job.success_count, job.error_count) == ("completed", 2, 1)
    by_order = {i.order_id: i for i in items(stack, job.id)}
    assert by_order[order_ids[1]].error_message == "No se encontró el municipio"
    assert run.state.is_completed()
    summary = summary_artifact(job.id).data
    assert "✅ 2 pedido(s) creado(s):" in summary and "❌ Pedidos rechazados:" in summary
    assert "No se encontró el municipio" in summary
    assert sorted(r["estado"] for r in table_rows(items_artifact(job.id))) == ["creado", "creado", "error"]


def test_all_failed_fails_the_job_and_the_run(stack, sim):
    sim.configure(scenario="login_failure")
    job, run, _ = run_batch(stack)

    assert (job.status, job.success_count, job.error_count) == ("failed", 0, 3)
    assert job.failure_reason == ALL_FAILED_REASON
    assert {i.error_message for i in items(stack, job.id)} == {"Login fallido en el portal de Coordinadora"}
    assert run.state.is_failed() and ALL_FAILED_REASON in run.state.message
    assert "✅ 0 pedido(s) creado(s):" in summary_artifact(job.id).data


def test_callbacks_before_the_200(stack, sim):
    sim.configure(early_callbacks=3)  # every result arrives before the dispatch gets its answer
    job, run, _ = run_batch(stack)

    assert (job.status, job.success_count) == ("completed", 3)
    assert run.state.is_completed()
    assert sim.state()["posts"] == {job.id: 1}
    assert job.dispatch_state == "accepted"
    assert summary_artifact(job.id) is not None
    # The resume met a run that was still running (never suspended): retried, then delivered once it finished.
    wait_for(
        lambda: all(e.delivered_at for e in events(stack, BATCH_COMPLETED, job.id)),
        timeout_s=15,
        what="the resume event to be delivered",
    )


def test_duplicates_and_fatal_re_report(stack, sim):
    # Two successes, then the robot's fatal path re-reports every order as error; every callback twice.
    sim.configure(scenario="fatal", fatal_after=2, duplicate_callbacks=True)
    job, run, order_ids = run_batch(stack)

    assert (job.status, job.success_count, job.error_count) == ("completed", 2, 1)
    statuses = sorted(i.status for i in items(stack, job.id))
    assert statuses == ["error", "success", "success"]
    assert len(sim.state()["callbacks"]) == 2 * (2 + 3)
    # The success→error re-report did not undo the successes, and each success fired its trigger once.
    assert len(events(stack, ROBOT_COORD_COMPLETED, None)) >= 2
    fired = [e for e in events(stack, ROBOT_COORD_COMPLETED) if e.payload.get("job_id") == job.id]
    assert len(fired) == 2
    assert run.state.is_completed()
    assert "Error fatal en el procesamiento del batch" in summary_artifact(job.id).data


def test_one_run_per_batch_chosen_by_names_named_and_tagged(stack, sim):
    workspace_id, _ = seed_workspace(stack, 3)
    name = workspace_name(stack, workspace_id)
    submitted = submit(name, [], stage="por despachar")  # the form's names, in any case
    run = wait_flow_final(submitted.id)
    job = wait_job_finished(stack, job_of(stack, workspace_id).id, timeout_s=5)

    assert (job.status, job.success_count, job.flow_run_id) == ("completed", 3, str(submitted.id))
    assert run.state.is_completed(), run.state
    assert run.name == f"{name} #1 · 3 pedidos"
    assert {f"workspace:{name}", f"job:{job.id}"} <= set(run.tags)
    # No second run on the click → robot path: the batch's only run is the one the operator started.
    assert [r.id for r in runs_of_job(job.id)] == [submitted.id]
    assert sim.state()["posts"] == {job.id: 1}


def test_a_wrong_name_fails_the_run_at_once_listing_the_valid_ones(stack, sim):
    workspace_id, _ = seed_workspace(stack, 1)
    name = workspace_name(stack, workspace_id)
    wrong_workspace = wait_flow_final(submit("Tienda Que No Existe", []).id)
    wrong_stage = wait_flow_final(submit(name, [], stage="Bodega").id)

    assert wrong_workspace.state.is_failed()
    assert "Workspace desconocido: «Tienda Que No Existe». Workspaces válidos:" in wrong_workspace.state.message
    assert f"«{name}»" in wrong_workspace.state.message
    assert wrong_stage.state.is_failed()
    assert (
        "Etapa desconocida en este workspace: «Bodega». Etapas válidas: «Nuevo», «Confirmado»"
        in wrong_stage.state.message
    )
    assert jobs_of(stack, workspace_id) == []


def test_an_operator_key_repeated_reports_the_first_runs_batch_and_sends_nothing(stack, sim):
    workspace_id, order_ids = seed_workspace(stack, 2)
    first = submit(workspace_id, order_ids, idempotency_key="clic-1")
    second = wait_flow_final(submit(workspace_id, order_ids, idempotency_key="clic-1").id)
    run = wait_flow_final(first.id)

    [job] = jobs_of(stack, workspace_id)
    assert job.flow_run_id == str(first.id) and run.state.is_completed()
    assert second.state.is_completed(), second.state  # reported the existing batch, and ended
    assert sim.state()["posts"] == {job.id: 1}


def test_retry_chosen_by_reference_is_its_own_run(stack, sim):
    workspace_id, order_ids = seed_workspace(stack, 3)
    name = workspace_name(stack, workspace_id)
    sim.configure(order_scenarios={order_ids[1]: "invalid_city"})
    first_run = submit(workspace_id, order_ids)
    wait_flow_final(first_run.id)
    sim.configure(order_scenarios={})

    wrong = retry("Lote que no existe")
    assert (
        wrong.state.is_failed()
        and "Lote desconocido: «Lote que no existe». Lotes recientes con pedidos fallidos:" in wrong.state.message
        and f"«{name} #1»" in wrong.state.message
    )
    retried = retry(f"{name} #1")
    [first, second] = jobs_of(stack, workspace_id)
    assert retried.state.is_completed(), retried.state
    assert (second.retry_of_job_id, second.flow_run_id, second.total_items) == (first.id, str(retried.id), 1)
    assert retried.name == f"{name} #2 · reintento de #1 · 1 pedido"
    assert wait_job_finished(stack, second.id, timeout_s=5).success_count == 1
