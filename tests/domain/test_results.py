"""Recording results: first terminal result wins, counters exact under concurrency, nothing partial on failure."""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import event
from sqlmodel import func, select

from domain import outbox
from domain.batches.jobs import get_job, get_job_view
from domain.batches.results import (
    ItemResult,
    normalise_result,
    pedido_label,
    record_batch_results,
    record_item_result,
)
from domain.errors import ItemNotInJob, UnknownItem
from domain.events import BATCH_COMPLETED, FIELD_CHANGED, ROBOT_COORD_COMPLETED, RobotCoordCompleted
from domain.models import Order, OutboxEvent, RobotJob, RobotJobItem
from tests.domain.results_helpers import err, events, ok


def test_success_ships_the_order_and_fires_the_trigger_once(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        outcome = record_item_result(tx.session, ok(items[0], "10107"))
        tx.commit()
    assert outcome.changed and outcome.item_status == "success" and not outcome.job_finished
    with uow() as tx:
        item = tx.session.get(RobotJobItem, items[0])
        order = tx.session.get(Order, item.order_id)
        assert (order.tracking_number, order.carrier) == ("10107", "COORDINADORA")
        fields = sorted(e.payload["field"] for e in events(tx, FIELD_CHANGED))
        assert fields == ["carrier", "tracking_number"]
        [completed] = events(tx, ROBOT_COORD_COMPLETED)
        assert completed.payload["order"]["tracking_number"] == "10107"
        assert completed.payload["contact"]["name"] == "Elena Beltrán"
        assert completed.payload["item_id"] == items[0] and completed.consumer == outbox.AUTOMATIONS
        assert get_job(tx.session, job_id).success_count == 1


def test_error_changes_only_the_item(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        record_item_result(tx.session, err(items[0], "No se encontró el municipio", "portal"))
        tx.commit()
    with uow() as tx:
        item = tx.session.get(RobotJobItem, items[0])
        assert (item.status, item.error_type, item.error_message) == ("error", "portal", "No se encontró el municipio")
        assert tx.session.get(Order, item.order_id).tracking_number is None
        assert tx.session.exec(select(func.count()).select_from(OutboxEvent)).one() == 0
        assert get_job(tx.session, job_id).error_count == 1 + 5  # 5 rejected before dispatch


def test_duplicates_and_success_then_error_change_nothing(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        record_item_result(tx.session, ok(items[0]))
        tx.commit()
    for late in (ok(items[0], "other"), err(items[0])):
        with uow() as tx:
            outcome = record_item_result(tx.session, late)
            tx.commit()
        assert not outcome.changed and outcome.item_status == "success"
    with uow() as tx:
        job = get_job(tx.session, job_id)
        assert (job.success_count, job.error_count) == (1, 5)
        assert len(events(tx, ROBOT_COORD_COMPLETED)) == 1
        assert tx.session.get(RobotJobItem, items[0]).tracking_number == "7600123"


def test_unknown_item_and_item_of_another_job_are_refused(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx, pytest.raises(UnknownItem):
        record_item_result(tx.session, ok("itm_nope"))
    with uow() as tx, pytest.raises(ItemNotInJob):
        record_item_result(tx.session, ok(items[0]), job_id="another-job")
    with uow() as tx, pytest.raises(ItemNotInJob):
        record_batch_results(tx.session, job_id, [ok(items[0]), ok("itm_of_someone_else")])
    with uow() as tx:
        assert tx.session.get(RobotJobItem, items[0]).status == "pending"


def test_the_last_result_completes_the_job_once(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        outcome = record_batch_results(tx.session, job_id, [ok(i, f"T{n}") for n, i in enumerate(items)])
        tx.commit()
    assert outcome.job_finished and outcome.job_status == "completed" and outcome.changed_count == len(items)
    with uow() as tx:
        again = record_batch_results(tx.session, job_id, [err(i) for i in items])
        tx.commit()
        assert not again.job_finished and again.changed_count == 0
        [done] = events(tx, BATCH_COMPLETED)
        assert done.payload["status"] == "completed" and done.payload["flow_run_id"] == "flow-run-1"


def test_all_errors_fail_the_job(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        outcome = record_batch_results(
            tx.session, job_id, [err(i, "Login fallido en el portal de Coordinadora", "portal") for i in items]
        )
        tx.commit()
    assert outcome.job_status == "failed"
    with uow() as tx:
        assert get_job(tx.session, job_id).failure_reason


def test_a_batch_repeating_an_item_counts_it_once(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        outcome = record_batch_results(tx.session, job_id, [ok(items[0], "A"), err(items[0]), ok(items[1], "B")])
        tx.commit()
    assert [o.changed for o in outcome.outcomes] == [True, False, True]
    with uow() as tx:
        assert get_job(tx.session, job_id).success_count == 2


def test_a_report_shipped_in_parts_ships_each_order_and_fires_each_trigger_once(uow, dispatched_job, monkeypatch):
    monkeypatch.setattr("domain.batches.results.SHIP_PART", 3)  # the demo's orders span several parts
    job_id, items = dispatched_job()
    assert len(items) > 2 * 3
    with uow() as tx:
        outcome = record_batch_results(tx.session, job_id, [ok(i, f"76{n:05d}") for n, i in enumerate(items)])
        tx.commit()
    assert outcome.changed_count == len(items) and outcome.job_status == "completed"
    with uow() as tx:
        completed = events(tx, ROBOT_COORD_COMPLETED)
        assert sorted(e.payload["item_id"] for e in completed) == sorted(items)
        by_item = {e.payload["item_id"]: e.payload["order"]["tracking_number"] for e in completed}
        for n, item_id in enumerate(items):
            order = tx.session.get(Order, tx.session.get(RobotJobItem, item_id).order_id)
            assert order.tracking_number == by_item[item_id] == f"76{n:05d}"


def test_fifty_threads_posting_the_same_result_make_one_transition(uow, dispatched_job):
    job_id, items = dispatched_job()
    barrier = threading.Barrier(50)
    changed, errors = [], []

    def post():
        try:
            barrier.wait()
            with uow() as tx:
                outcome = record_item_result(tx.session, ok(items[0]))
                tx.commit()
            changed.append(outcome.changed)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and changed.count(True) == 1 and len(changed) == 50
    with uow() as tx:
        assert get_job(tx.session, job_id).success_count == 1
        assert len(events(tx, ROBOT_COORD_COMPLETED)) == 1


def test_many_items_duplicates_and_reorders_at_once_keep_counters_exact(uow, dispatched_job):
    job_id, items = dispatched_job()
    rng = random.Random(7)
    posts = []
    for n, item in enumerate(items):
        first = ok(item, f"T{n}") if n % 3 else err(item, "No se encontró el municipio", "portal")
        posts += [first, first, err(item)]  # duplicate + the fatal path's re-report
    rng.shuffle(posts)
    errors = []

    def worker(chunk):
        for result in chunk:
            try:
                with uow() as tx:
                    record_item_result(tx.session, result)
                    tx.commit()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(posts[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with uow() as tx:
        view = get_job_view(tx.session, job_id)
        job = view.job
        successes = sum(1 for v in view.items if v.item.status == "success")
        failures = sum(1 for v in view.items if v.item.status == "error")
        assert (job.success_count, job.error_count) == (successes, failures)
        assert job.success_count + job.error_count == job.total_items and job.status == "completed"
        assert len(events(tx, BATCH_COMPLETED)) == 1
        assert len(events(tx, ROBOT_COORD_COMPLETED)) == successes


def test_failure_between_item_write_and_event_write_leaves_nothing(uow, dispatched_job, monkeypatch):
    job_id, items = dispatched_job()
    real_add = outbox.add_events

    def failing_add(session, events):
        # The order's field.changed rows and robot.coord.completed are written by one INSERT: fail it.
        if any(isinstance(new.event, RobotCoordCompleted) for new in events):
            raise RuntimeError("injected")
        return real_add(session, events)

    monkeypatch.setattr(outbox, "add_events", failing_add)
    # The batch path writes in steps on both databases (a per-order callback on PostgreSQL is one statement: there
    # is no "between" to fail in; test_failure_at_commit_leaves_nothing covers it).
    with uow() as tx, pytest.raises(RuntimeError, match="injected"):
        record_batch_results(tx.session, job_id, [ok(items[0])])
        tx.commit()
    monkeypatch.undo()
    with uow() as tx:
        item = tx.session.get(RobotJobItem, items[0])
        assert item.status == "pending"
        assert tx.session.get(Order, item.order_id).tracking_number is None
        assert get_job(tx.session, job_id).success_count == 0
        assert tx.session.exec(select(func.count()).select_from(OutboxEvent)).one() == 0


def test_failure_at_commit_leaves_nothing(uow, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:

        def boom(session):
            raise RuntimeError("commit failed")

        event.listen(tx.session, "before_commit", boom)
        record_item_result(tx.session, ok(items[0]))
        with pytest.raises(RuntimeError):
            tx.commit()
    with uow() as tx:
        assert tx.session.get(RobotJobItem, items[0]).status == "pending"
        assert tx.session.exec(select(func.count()).select_from(OutboxEvent)).one() == 0


def test_unusual_fields_are_normalised_not_refused():
    long = (
        "locator.click: Timeout 30000ms exceeded.\n=========================== logs ===========================\n" * 60
    )
    odd = normalise_result(item_id="itm_x", status="error", error_type="playwright", error_message=long)
    assert odd.error_type == "unknown" and odd.error_message.startswith("[errorType del robot: playwright] locator")
    assert len(odd.error_message) == 1000 and odd.error_message.endswith("[mensaje truncado]")
    blank = normalise_result(item_id="itm_x", status="success", tracking_number="  ")
    assert blank.status == "success" and blank.tracking_number is None
    assert normalise_result(item_id="itm_x", status="success", tracking_number=" 76001 ").tracking_number == "76001"
    assert normalise_result(item_id="itm_x", status="error").error_type == "unknown"
    assert normalise_result(item_id="itm_x", status="error", error_type=" Portal ").error_type == "portal"


def test_a_result_has_one_shape_per_status_however_built_and_an_unknown_pedido_is_labelled_not_refused():
    success = ItemResult(item_id="itm_x", status="success", error_type="portal", error_message="x")
    assert (success.tracking_number, success.error_type, success.error_message) == (None, None, None)
    error = ItemResult(item_id="itm_x", status="error", tracking_number="76001")
    assert (error.tracking_number, error.error_type) == (None, "unknown")
    assert pedido_label(None) == pedido_label("") == "número de pedido desconocido"
    assert pedido_label("76001") == "76001"


def test_a_per_order_success_withdraws_the_order_from_an_unsent_job_then_ships_it_once(uow, dispatched_job):
    # Another active, undispatched job (another carrier's: one active job per workspace and carrier) holds the order:
    # on PostgreSQL the one-statement path leaves this case to `_ship_orders`, which withdraws the item first.
    job_id, items = dispatched_job()
    with uow() as tx:
        order_id = tx.session.get(RobotJobItem, items[0]).order_id
        workspace_id = get_job(tx.session, job_id).workspace_id
        other = RobotJob(workspace_id=workspace_id, carrier="OTRA", total_items=1)
        tx.session.add(other)
        tx.session.flush()
        held = RobotJobItem(job_id=other.id, order_id=order_id)
        tx.session.add(held)
        tx.commit()
        other_id, held_id = other.id, held.id
    with uow() as tx:
        outcome = record_item_result(tx.session, ok(items[0], "10107"), job_id=job_id)
        tx.commit()
    assert outcome.changed and outcome.item_status == "success"
    with uow() as tx:
        withdrawn = tx.session.get(RobotJobItem, held_id)
        assert (withdrawn.status, withdrawn.error_type, withdrawn.resolved_by) == ("error", "withdrawn", "robotjobs")
        assert get_job(tx.session, other_id).error_count == 1
        order = tx.session.get(Order, order_id)
        assert (order.tracking_number, order.carrier) == ("10107", "COORDINADORA")
        [completed] = events(tx, ROBOT_COORD_COMPLETED)
        assert completed.payload["item_id"] == items[0] and completed.payload["order"]["tracking_number"] == "10107"
        assert get_job(tx.session, job_id).success_count == 1
