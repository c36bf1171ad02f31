"""Creating robot jobs and their lifecycle: refusals write nothing, transitions are guarded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import func, select

from domain import outbox
from domain.batches import jobs
from domain.batches.results import ItemResult, record_batch_results
from domain.errors import ActiveJobExists, JobNotRetryable, NothingToDispatch, OrdersNotDispatchable
from domain.events import BATCH_COMPLETED
from domain.models import ErrorType, ItemStatus, JobStatus, Order, RobotJob, RobotJobItem, utcnow
from domain.settings import Settings


def _count(tx, model) -> int:
    return tx.session.exec(select(func.count()).select_from(model)).one()


def test_job_from_dispatch_stage_has_one_item_per_order_and_rejects_uncovered_cities(uow, demo):
    with uow() as tx:
        created = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id)
        tx.commit()
    job = created.job
    assert created.created and job.status == JobStatus.PENDING
    assert job.total_items == len(demo.order_ids)
    reasons = sorted(r.reason for r in created.rejected)
    assert reasons == sorted(
        [
            'Ciudad no encontrada en cobertura: "Buenavista" (CORD)',
            'Ciudad no encontrada en cobertura: "Villa de Leyva" (BOY)',
            "Ciudad TUMACO (NAR) no soporta recaudo contra-entrega (COD). "
            "Cambie el pedido a pago anticipado o use otra transportadora.",
            "Ciudad QUIBDO (CHOCO) no soporta recaudo contra-entrega (COD). "
            "Cambie el pedido a pago anticipado o use otra transportadora.",
            "Ciudad y departamento vacios",
        ]
    )
    with uow() as tx:
        items = tx.session.exec(select(RobotJobItem).where(RobotJobItem.job_id == job.id)).all()
        assert len({i.order_id for i in items}) == len(items) == len(demo.order_ids)
        rejected = [i for i in items if i.status == ItemStatus.ERROR]
        assert len(rejected) == 5 and all(i.robot_input is None and i.error_type == "validation" for i in rejected)
        assert jobs.get_job(tx.session, job.id).error_count == 5


def test_pedido_input_follows_the_derivation_rules(uow, demo):
    with uow() as tx:
        created = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id)
        view = jobs.get_job_view(tx.session, created.job.id)
    by_name = {v.contact.name: v.item.robot_input for v in view.items}
    elena = by_name["Elena Beltrán"]
    assert elena == {
        "identificacion": "1053802211", "nombres": "Elena", "apellidos": "Beltrán", "direccion": "calle 49f",
        "ciudad": "MANIZALES (CDAS)", "departamento": "CDAS", "celular": "3133477968",
        "email": "elena.beltran@gmail.com", "referencia": "Pedido 1042", "unidades": 1, "totalConIva": 139900,
        "valorDeclarado": 55000, "esRecaudoContraentrega": True, "peso": 0.08, "alto": 5.0, "largo": 10.0,
        "ancho": 5.0,
    }  # fmt: skip
    prepaid = by_name["Luisa Fernanda Ortiz"]  # tagged P/A
    assert prepaid["totalConIva"] == 0 and prepaid["esRecaudoContraentrega"] is False
    assert prepaid["ciudad"] == "BOGOTA (C/MARCA)" and prepaid["identificacion"] == "52987123"
    no_document = by_name["Andrés Felipe Gómez"]
    assert no_document["identificacion"] == "3006667788" and no_document["email"] == "sin@email.com"
    assert by_name["Laura Restrepo"]["esRecaudoContraentrega"] is False  # total 0: nothing to collect


def test_same_idempotency_key_returns_the_same_job(uow, demo):
    with uow() as tx:
        first = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, idempotency_key="op-1")
        tx.commit()
    with uow() as tx:
        again = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, idempotency_key="op-1")
        tx.commit()
        assert _count(tx, RobotJob) == 1
    assert not again.created and again.job.id == first.job.id
    assert sorted(r.reason for r in again.rejected) == sorted(r.reason for r in first.rejected)


def test_second_active_job_is_refused_and_writes_nothing(uow, demo):
    with uow() as tx:
        jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids[:2])
        tx.commit()
    with uow() as tx, pytest.raises(ActiveJobExists):
        jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids[2:4])
    with uow() as tx:
        assert _count(tx, RobotJob) == 1 and _count(tx, RobotJobItem) == 2


def test_one_active_job_is_enforced_by_the_database_too(uow, demo):
    with uow() as tx:
        jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids[:1])
        tx.commit()
    with uow() as tx:
        tx.session.add(RobotJob(workspace_id=demo.workspace_id, status=JobStatus.PROCESSING))
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            tx.session.flush()


@pytest.mark.parametrize("problem", ["archived", "closed", "tracking_number", "foreign"])
def test_orders_that_cannot_be_dispatched_are_refused_by_id(uow, demo, credentials_key, problem):
    from sample_data.seed import seed_demo

    with uow() as tx:
        if problem == "foreign":
            other = seed_demo(tx.session, credentials_key=credentials_key, name="Otra tienda", orders=[])
            target = demo.order_ids[0]
            workspace_id = other.workspace_id
        else:
            order = tx.session.get(Order, demo.order_ids[0])
            setattr(order, problem, "7600111" if problem == "tracking_number" else True)
            tx.session.add(order)
            target, workspace_id = order.id, demo.workspace_id
        tx.commit()
    with uow() as tx, pytest.raises(OrdersNotDispatchable) as refused:
        jobs.create_robot_job(tx.session, workspace_id=workspace_id, order_ids=[target, *demo.order_ids[1:3]])
    assert target in refused.value.details["problems"]
    with uow() as tx:
        assert _count(tx, RobotJob) == 0 and _count(tx, RobotJobItem) == 0


def test_empty_selection_is_refused(uow, demo):
    with uow() as tx, pytest.raises(NothingToDispatch):
        jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, stage_id=demo.stage_ids["Entregado"])


def test_a_job_whose_orders_are_all_rejected_fails_at_once(uow, demo):
    rejected_orders = [demo.order_ids[6], demo.order_ids[18]]  # Buenavista, empty city
    with uow() as tx:
        created = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, order_ids=rejected_orders)
        tx.commit()
        assert created.job.status == JobStatus.FAILED and created.job.error_count == 2
        assert len(outbox.events_of(tx.session, event_type=BATCH_COMPLETED)) == 1


def test_start_sets_the_deadline_from_the_batch_size_and_claim_happens_once(uow, demo):
    with uow() as tx:
        job = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids[:4]).job
        now = utcnow()
        started = jobs.start_job(tx.session, job.id, flow_run_id="fr-1", now=now)
        assert started.status == JobStatus.PROCESSING
        assert started.deadline_at == now + timedelta(seconds=4 * 30 + 300)
        again = jobs.start_job(tx.session, job.id, flow_run_id="fr-1", now=now + timedelta(hours=1))
        assert again.deadline_at == started.deadline_at
        assert jobs.claim_dispatch(tx.session, job.id, callback_secret_hash="a") is True
        assert jobs.claim_dispatch(tx.session, job.id, callback_secret_hash="b") is False
        tx.commit()
        assert jobs.get_job(tx.session, job.id).callback_secret_hash == "a"


def test_fail_job_closes_every_pending_item_and_never_overwrites_completed(uow, dispatched_job):
    job_id, items = dispatched_job(order_ids=None)
    with uow() as tx:
        record_batch_results(tx.session, job_id, [ItemResult(item_id=items[0], status="success", tracking_number="1")])
        assert jobs.fail_job(
            tx.session,
            job_id,
            reason="Tiempo agotado",
            error_type=ErrorType.TIMEOUT,
            error_message=jobs.TIMEOUT_MESSAGE,
        )
        tx.commit()
    with uow() as tx:
        view = jobs.get_job_view(tx.session, job_id)
        # Every item terminal: one created order makes the batch completed, the rest show the timeout.
        assert (view.job.status, view.job.failure_reason) == (JobStatus.COMPLETED, None)
        timed_out = [v.item for v in view.items if v.item.error_type == "timeout"]
        assert len(timed_out) == len(items) - 1
        assert all(i.error_message == jobs.TIMEOUT_MESSAGE for i in timed_out)
        assert view.job.success_count + view.job.error_count == view.job.total_items
        assert not jobs.fail_job(tx.session, job_id, reason="x", error_type="timeout", error_message="x")


def test_late_timeout_does_not_touch_a_completed_job(uow, dispatched_job):
    job_id, items = dispatched_job(order_ids=None)
    with uow() as tx:
        record_batch_results(
            tx.session,
            job_id,
            [ItemResult(item_id=i, status="success", tracking_number=f"T{n}") for n, i in enumerate(items)],
        )
        tx.commit()
    with uow() as tx:
        assert not jobs.fail_job(tx.session, job_id, reason="late", error_type="timeout", error_message="late")
        tx.commit()
        assert jobs.get_job(tx.session, job_id).status == JobStatus.COMPLETED


def test_jobs_past_deadline(uow, dispatched_job):
    job_id, _ = dispatched_job()
    with uow() as tx:
        deadline = jobs.get_job(tx.session, job_id).deadline_at
        assert jobs.jobs_past_deadline(tx.session, now=deadline - timedelta(seconds=1)) == []
        assert jobs.jobs_past_deadline(tx.session, now=deadline + timedelta(seconds=1)) == [job_id]


def test_retry_takes_only_the_failed_orders_and_twice_gives_one_job(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx, pytest.raises(JobNotRetryable):
        jobs.retry_failed_items(tx.session, job_id)
    with uow() as tx:
        results = [ItemResult(item_id=i, status="success", tracking_number=f"T{n}") for n, i in enumerate(items[2:])]
        results += [
            ItemResult(item_id=i, status="error", error_type="portal", error_message="No se encontró el municipio")
            for i in items[:2]
        ]
        record_batch_results(tx.session, job_id, results)
        tx.commit()
    with uow() as tx:
        failed_orders = set(
            tx.session.exec(
                select(RobotJobItem.order_id).where(RobotJobItem.job_id == job_id, RobotJobItem.status == "error")
            ).all()
        )
        retry = jobs.retry_failed_items(tx.session, job_id)
        tx.commit()
    with uow() as tx:
        again = jobs.retry_failed_items(tx.session, job_id)
        view = jobs.get_job_view(tx.session, retry.job.id)
    assert retry.created and not again.created and again.job.id == retry.job.id
    assert retry.job.retry_of_job_id == job_id
    assert {v.item.order_id for v in view.items} == failed_orders
    # once the retry shipped those orders, a late second click still returns the same retry job
    with uow() as tx:
        jobs.start_job(tx.session, retry.job.id, flow_run_id="fr-retry")
        record_batch_results(
            tx.session,
            retry.job.id,
            [
                ItemResult(item_id=v.item.id, status="success", tracking_number=f"R{n}")
                for n, v in enumerate(view.items)
                if v.item.status == "pending"
            ],
        )
        tx.commit()
    with uow() as tx:
        late = jobs.retry_failed_items(tx.session, job_id)
    assert not late.created and late.job.id == retry.job.id


def test_the_summary_mark_only_moves_forward_and_says_when_the_job_changed_since(uow, dispatched_job):
    job_id, _ = dispatched_job()
    with uow() as tx:
        newer = jobs.get_job(tx.session, job_id).updated_at
        older = newer - timedelta(seconds=5)
        # The publisher that read the job last marks first; the one that read an older state marks afterwards.
        assert jobs.mark_summary_published(tx.session, job_id, as_of=newer) is True
        assert jobs.mark_summary_published(tx.session, job_id, as_of=older) is False  # overtaken: publish again
        tx.commit()
    with uow() as tx:
        assert jobs.get_job(tx.session, job_id).summary_published_at == newer


def test_the_deadline_is_one_function_of_the_item_count_with_the_settings_defaults():
    now = utcnow()
    per_item, base = (
        Settings.model_fields[name].default for name in ("callback_seconds_per_item", "callback_base_seconds")
    )
    assert jobs.callback_deadline(now, 4) == now + timedelta(seconds=4 * per_item + base)
    assert jobs.callback_deadline(now, 2, seconds_per_item=10, base_seconds=5) == now + timedelta(seconds=25)
