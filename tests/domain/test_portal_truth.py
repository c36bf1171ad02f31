"""The portal's truth wins: a robot success beats every closure robotjobs made, and a retry never ships twice."""

from __future__ import annotations

import pytest
from sqlmodel import select

from domain.batches.dispatch import build_dispatch_request, hash_callback_secret
from domain.batches.jobs import (
    TIMEOUT_MESSAGE,
    claim_dispatch,
    create_robot_job,
    fail_job,
    get_job,
    retry_failed_items,
    start_job,
)
from domain.batches.results import normalise_result, record_batch_results, record_item_result
from domain.batches.summary import batch_summary, render_summary_text
from domain.errors import OrdersNotDispatchable
from domain.events import BATCH_CORRECTED, ROBOT_COORD_COMPLETED
from domain.models import ErrorType, Order, RobotJobItem
from tests.domain.results_helpers import err, events, ok


def _time_out(uow, job_id):
    with uow() as tx:
        assert fail_job(
            tx.session, job_id, reason=TIMEOUT_MESSAGE, error_type=ErrorType.TIMEOUT, error_message=TIMEOUT_MESSAGE
        )
        tx.commit()


def test_a_late_success_overturns_our_timeout_and_corrects_the_job(uow, dispatched_job):
    job_id, items = dispatched_job()
    _time_out(uow, job_id)
    with uow() as tx:
        job = get_job(tx.session, job_id)
        assert (job.status, job.success_count, job.error_count) == ("failed", 0, job.total_items)
    with uow() as tx:
        outcome = record_item_result(tx.session, ok(items[0], "10107"))
        tx.commit()
    assert outcome.changed and outcome.item_status == "success" and outcome.job_status == "completed"
    assert outcome.job_corrected and not outcome.job_finished
    with uow() as tx:
        job = get_job(tx.session, job_id)
        assert (job.status, job.success_count, job.error_count) == ("completed", 1, job.total_items - 1)
        assert job.failure_reason is None
        item = tx.session.get(RobotJobItem, items[0])
        assert (item.status, item.resolved_by, item.error_type, item.tracking_number) == (
            "success",
            "robot",
            None,
            "10107",
        )
        order = tx.session.get(Order, item.order_id)
        assert (order.tracking_number, order.carrier) == ("10107", "COORDINADORA")
        assert len(events(tx, ROBOT_COORD_COMPLETED)) == 1
        assert len(events(tx, BATCH_CORRECTED)) == 1
        summary = batch_summary(tx.session, job_id)
        assert summary.job_status == "completed" and [s.tracking_number for s in summary.successes] == ["10107"]
    # The robot's later error for the same order changes nothing: its own first report wins.
    with uow() as tx:
        again = record_item_result(tx.session, err(items[0]))
        tx.commit()
    assert not again.changed and again.item_status == "success"


def test_a_robot_error_replaces_our_closure_reason_without_moving_counters(uow, dispatched_job):
    job_id, items = dispatched_job()
    _time_out(uow, job_id)
    with uow() as tx:
        before = get_job(tx.session, job_id).error_count
        outcome = record_item_result(tx.session, err(items[0]))
        tx.commit()
    assert outcome.changed
    with uow() as tx:
        job = get_job(tx.session, job_id)
        assert (job.status, job.success_count, job.error_count) == ("failed", 0, before)
        item = tx.session.get(RobotJobItem, items[0])
        assert (item.error_type, item.resolved_by, item.error_message) == (
            "unknown",
            "robot",
            err(items[0]).error_message,
        )
    # Once the robot itself said error, its later success is a second report: the first one stands.
    with uow() as tx:
        assert not record_item_result(tx.session, ok(items[0])).changed
        tx.commit()


def test_a_refused_dispatch_is_overturned_by_the_portal(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        fail_job(
            tx.session,
            job_id,
            reason="HTTP 500",
            error_type=ErrorType.DISPATCH,
            error_message="HTTP 500",
            dispatch_refused=True,
        )
        tx.commit()
    with uow() as tx:
        batch = record_batch_results(tx.session, job_id, [ok(i, f"76{n}") for n, i in enumerate(items)])
        tx.commit()
    assert batch.changed_count == len(items) and batch.job_status == "completed"
    with uow() as tx:
        job = get_job(tx.session, job_id)
        assert job.success_count == len(items) and job.error_count == job.total_items - len(items)
        assert len(events(tx, ROBOT_COORD_COMPLETED)) == len(items)


def test_a_success_without_pedido_number_is_a_created_order(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        outcome = record_item_result(tx.session, normalise_result(item_id=items[0], status="success"))
        tx.commit()
    assert outcome.changed and outcome.item_status == "success"
    with uow() as tx:
        item = tx.session.get(RobotJobItem, items[0])
        order = tx.session.get(Order, item.order_id)
        assert (item.tracking_number, order.tracking_number, order.carrier) == (None, None, "COORDINADORA")
        [completed] = events(tx, ROBOT_COORD_COMPLETED)
        assert completed.payload["order"]["tracking_number"] == ""
        text = render_summary_text(batch_summary(tx.session, job_id))
        assert "número de pedido desconocido" in text
        # Never sent again, although the order has no tracking number.
        with pytest.raises(OrdersNotDispatchable, match="ya fue creado en el portal"):
            create_robot_job(
                tx.session, workspace_id=get_job(tx.session, job_id).workspace_id, order_ids=[item.order_id]
            )


def _finish_with_errors(uow, job_id, items):
    with uow() as tx:
        record_batch_results(tx.session, job_id, [err(i) for i in items[:2]])
        tx.commit()
    _time_out(uow, job_id)


def test_a_retry_never_holds_an_order_created_meanwhile(uow, dispatched_job):
    job_id, items = dispatched_job()
    _time_out(uow, job_id)
    with uow() as tx:
        record_item_result(tx.session, normalise_result(item_id=items[0], status="success"))
        tx.commit()
    with uow() as tx:
        retry = retry_failed_items(tx.session, job_id)
        tx.commit()
    with uow() as tx:
        shipped_order = tx.session.get(RobotJobItem, items[0]).order_id
        held = set(tx.session.exec(select(RobotJobItem.order_id).where(RobotJobItem.job_id == retry.job.id)))
        assert shipped_order not in held and len(held) == retry.job.total_items > 0


def test_a_late_success_withdraws_the_unsent_retry_item(uow, dispatched_job, credentials_key):
    job_id, items = dispatched_job()
    _finish_with_errors(uow, job_id, items)
    with uow() as tx:
        retry = retry_failed_items(tx.session, job_id)
        tx.commit()
    # items[2] was closed by our timeout; the robot now says it created it, before the retry was sent.
    with uow() as tx:
        record_item_result(tx.session, ok(items[2], "55501"))
        tx.commit()
    with uow() as tx:
        order_id = tx.session.get(RobotJobItem, items[2]).order_id
        [held] = tx.session.exec(
            select(RobotJobItem).where(RobotJobItem.job_id == retry.job.id, RobotJobItem.order_id == order_id)
        ).all()
        assert (held.status, held.error_type, held.resolved_by) == ("error", "withdrawn", "robotjobs")
        retry_job = get_job(tx.session, retry.job.id)
        # Closed so far: the coverage rejections (again) and the withdrawn item.
        assert (retry_job.status, retry_job.error_count) == ("pending", len(retry.rejected) + 1)
        start_job(tx.session, retry.job.id, flow_run_id="run-2")
        claim_dispatch(tx.session, retry.job.id, callback_secret_hash=hash_callback_secret("x"))
        request = build_dispatch_request(
            tx.session,
            retry.job.id,
            callback_url="http://127.0.0.1/cb",
            callback_secret="x",
            credentials_key=credentials_key,
        )
        assert held.id not in {o["itemId"] for o in request["orders"]}
        tx.rollback()


def test_a_late_success_after_the_retry_was_sent_is_flagged_not_fired_twice(uow, dispatched_job):
    job_id, items = dispatched_job()
    _finish_with_errors(uow, job_id, items)
    with uow() as tx:
        retry = retry_failed_items(tx.session, job_id)
        start_job(tx.session, retry.job.id, flow_run_id="run-2")
        claim_dispatch(tx.session, retry.job.id, callback_secret_hash=hash_callback_secret("x"))
        tx.commit()
    with uow() as tx:
        order_id = tx.session.get(RobotJobItem, items[2]).order_id
        retry_item = tx.session.exec(
            select(RobotJobItem.id).where(RobotJobItem.job_id == retry.job.id, RobotJobItem.order_id == order_id)
        ).one()
    with uow() as tx:
        record_item_result(tx.session, ok(items[2], "55501"))
        tx.commit()
    with uow() as tx:
        # Already sent: it cannot be withdrawn; the possible duplicate shows in the retry's summary.
        assert tx.session.get(RobotJobItem, retry_item).status == "pending"
        retry_summary = batch_summary(tx.session, retry.job.id)
        [flagged] = [line for line in retry_summary.pending + retry_summary.rejected if line.item_id == retry_item]
        assert flagged.possible_duplicate and "55501" in flagged.possible_duplicate
    with uow() as tx:
        record_item_result(tx.session, ok(retry_item, "55502"))
        tx.commit()
    with uow() as tx:
        # Two orders on the portal, one trigger, the first pedido number kept on the order; both lines flagged.
        assert tx.session.get(Order, order_id).tracking_number == "55501"
        fired = [e for e in events(tx, ROBOT_COORD_COMPLETED) if e.aggregate_id == order_id]
        assert len(fired) == 1
        for summary_job in (job_id, retry.job.id):
            summary = batch_summary(tx.session, summary_job)
            [line] = [s for s in summary.successes if s.order_id == order_id]
            assert "55501" in line.possible_duplicate and "55502" in line.possible_duplicate
            assert "posible duplicado" in render_summary_text(summary)


def test_a_job_with_nothing_failed_cannot_be_retried_after_correction(uow, dispatched_job):
    job_id, items = dispatched_job()
    _time_out(uow, job_id)
    with uow() as tx:
        record_batch_results(tx.session, job_id, [ok(i, f"9{n}") for n, i in enumerate(items)])
        tx.commit()
    with uow() as tx:
        # Only the coverage rejections are left; their orders are still retryable (they were never sent).
        retry = retry_failed_items(tx.session, job_id)
        held = set(tx.session.exec(select(RobotJobItem.order_id).where(RobotJobItem.job_id == retry.job.id)))
        shipped = {tx.session.get(RobotJobItem, i).order_id for i in items}
        assert not held & shipped
        tx.rollback()
