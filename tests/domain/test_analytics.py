"""Analytics over a small hand-built history whose every number is known, and the generated demo history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from domain import analytics
from domain.batches import jobs
from domain.batches.results import ItemResult, record_batch_results
from domain.models import ErrorType, Order, OutboxEvent, RobotJob, RobotJobItem
from sample_data.history import batch_kinds, database_has_jobs, seed_history

DAY1 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)

# Indexes into DEMO_ORDERS (sample_data/seed.py).
ELENA_MANIZALES, CARLOS_MEDELLIN, LUISA_BOGOTA, JHON_CALI, MARIA_BARRANQUILLA = 0, 1, 2, 3, 4
DELIA_BUENAVISTA, DIEGO_MANIZALES, GLORIA_MEDELLIN, FREDY_NO_CITY = 6, 14, 15, 18


def _backdate(session, job_id, at):
    session.execute(update(RobotJob).where(RobotJob.id == job_id).values(created_at=at))


def _dispatch(session, job_id, at) -> dict[str, str]:
    """Start and claim a job at `at`; returns {order_id: item_id} of the items sent to the robot."""
    jobs.start_job(session, job_id, flow_run_id=None, now=at)
    assert jobs.claim_dispatch(session, job_id, callback_secret_hash="h", now=at)
    items = session.exec(
        select(RobotJobItem).where(RobotJobItem.job_id == job_id, col(RobotJobItem.robot_input).is_not(None))
    ).all()
    return {item.order_id: item.id for item in items}


def _ok(item_id, tracking):
    return ItemResult(item_id=item_id, status="success", tracking_number=tracking)


def _err(item_id, error_type, message):
    return ItemResult(item_id=item_id, status="error", error_type=error_type, error_message=message)


@pytest.fixture
def small_history(uow, demo):
    """
    A (day 1): Elena ✓, Carlos ✓, Luisa ✗ portal, Jhon ✗ unknown, Delia ✗ validation (coverage) → 2/5, completed.
    B (day 1, retry of A): Luisa ✓, Jhon ✗ timeout, Delia ✗ validation again → 1/3, closed by the deadline
    (completed: the robot created one order).
    C (day 2): Diego, Gloria ✗ dispatch (robot unreachable), Fredy ✗ validation (no city) → 0/3, failed.
    D (day 2): María, created and never started → pending.
    """
    o = demo.order_ids
    with uow() as tx:
        s = tx.session
        a = jobs.create_robot_job(
            s,
            workspace_id=demo.workspace_id,
            order_ids=[o[i] for i in (ELENA_MANIZALES, CARLOS_MEDELLIN, LUISA_BOGOTA, JHON_CALI, DELIA_BUENAVISTA)],
        ).job.id
        _backdate(s, a, DAY1)
        sent = _dispatch(s, a, DAY1)
        record_batch_results(s, a, [_ok(sent[o[ELENA_MANIZALES]], "1001")], now=DAY1 + timedelta(seconds=30))
        record_batch_results(s, a, [_ok(sent[o[CARLOS_MEDELLIN]], "1002")], now=DAY1 + timedelta(seconds=60))
        record_batch_results(
            s,
            a,
            [_err(sent[o[LUISA_BOGOTA]], "portal", "No se encontró el municipio")],
            now=DAY1 + timedelta(seconds=90),
        )
        record_batch_results(
            s,
            a,
            [_err(sent[o[JHON_CALI]], "unknown", "Error fatal en el procesamiento del batch")],
            now=DAY1 + timedelta(seconds=120),
        )

        b = jobs.retry_failed_items(s, a).job.id
        at_b = DAY1 + timedelta(hours=2)
        _backdate(s, b, at_b)
        sent = _dispatch(s, b, at_b)
        record_batch_results(s, b, [_ok(sent[o[LUISA_BOGOTA]], "1003")], now=at_b + timedelta(seconds=45))
        assert jobs.fail_job(
            s,
            b,
            reason="Tiempo agotado",
            error_type=ErrorType.TIMEOUT,
            error_message=jobs.TIMEOUT_MESSAGE,
            now=at_b + timedelta(seconds=600),
        )

        c = jobs.create_robot_job(
            s,
            workspace_id=demo.workspace_id,
            order_ids=[o[i] for i in (DIEGO_MANIZALES, GLORIA_MEDELLIN, FREDY_NO_CITY)],
        ).job.id
        _backdate(s, c, DAY2)
        _dispatch(s, c, DAY2)
        assert jobs.fail_job(
            s,
            c,
            reason="Robot caído",
            error_type=ErrorType.DISPATCH,
            error_message="Robot caído",
            dispatch_refused=True,
            now=DAY2 + timedelta(seconds=5),
        )

        d = jobs.create_robot_job(s, workspace_id=demo.workspace_id, order_ids=[o[MARIA_BARRANQUILLA]]).job.id
        _backdate(s, d, DAY2 + timedelta(hours=1))
        tx.commit()
    return {"A": a, "B": b, "C": c, "D": d}


def test_jobs_overview_counts_rates_and_retry_links(uow, demo, small_history):
    h = small_history
    with uow() as tx:
        rows = analytics.jobs_overview(tx.session, workspace_id=demo.workspace_id)
        assert analytics.count_jobs(tx.session) == 4
    assert [r.job_id for r in rows] == [h["A"], h["B"], h["C"], h["D"]]
    a, b, c, d = rows
    assert (a.status, a.total_items, a.success_count, a.error_count, a.pending_count) == ("completed", 5, 2, 3, 0)
    assert a.success_rate == pytest.approx(0.4)
    assert a.created_at == DAY1 and a.seconds_to_finish == 120 and not a.is_retry
    assert (b.status, b.total_items, b.success_count, b.error_count) == ("completed", 3, 1, 2)
    assert b.is_retry and b.retry_of_job_id == h["A"] and b.seconds_to_finish == 600
    assert (c.status, c.success_count, c.error_count, c.success_rate) == ("failed", 0, 3, 0.0)
    assert (d.status, d.pending_count, d.success_rate) == ("pending", 1, None)
    assert d.dispatched_at is None and d.finished_at is None


def test_item_facts_one_row_per_item_with_category_place_and_timing(uow, demo, small_history):
    o, h = demo.order_ids, small_history
    with uow() as tx:
        facts = analytics.item_facts(tx.session)
        only_a = analytics.item_facts(tx.session, job_ids=[h["A"]])
        other_workspace = analytics.item_facts(tx.session, workspace_id="nope")
    assert len(facts) == 12 and len(only_a) == 5 and other_workspace == []
    by = {(f.job_id, f.order_id): f for f in facts}

    elena = by[h["A"], o[ELENA_MANIZALES]]
    assert (elena.status, elena.tracking_number, elena.error_category) == ("success", "1001", None)
    assert (elena.city, elena.department, elena.seconds_to_result) == ("MANIZALES (CDAS)", "CDAS", 30)

    delia = by[h["A"], o[DELIA_BUENAVISTA]]
    assert delia.error_category == "validation" and delia.rejected_before_dispatch
    assert (delia.city, delia.department, delia.seconds_to_result, delia.dispatched_at) == (
        "BUENAVISTA (CORD)",
        "CORD",
        None,
        None,
    )

    jhon_retry = by[h["B"], o[JHON_CALI]]
    assert (jhon_retry.error_category, jhon_retry.is_retry, jhon_retry.retry_of_job_id) == ("timeout", True, h["A"])
    assert jhon_retry.seconds_to_result == 600 and jhon_retry.error_message == jobs.TIMEOUT_MESSAGE

    fredy = by[h["C"], o[FREDY_NO_CITY]]
    assert (fredy.city, fredy.department, fredy.error_category) == (
        analytics.NO_CITY,
        analytics.NO_DEPARTMENT,
        "validation",
    )
    assert by[h["C"], o[GLORIA_MEDELLIN]].error_category == "dispatch"
    assert by[h["D"], o[MARIA_BARRANQUILLA]].status == "pending"


def test_success_by_department_and_city(uow, small_history):
    with uow() as tx:
        departments = {r.key: r for r in analytics.success_by(tx.session, "department")}
        cities = {r.key: r for r in analytics.success_by(tx.session, "city")}
    totals = lambda r: (r.total, r.success, r.error, r.pending)  # noqa: E731
    assert totals(departments["CDAS"]) == (2, 1, 1, 0) and departments["CDAS"].success_rate == 0.5
    assert totals(departments["ANT"]) == (2, 1, 1, 0)
    assert totals(departments["C/MARCA"]) == (2, 1, 1, 0)
    assert totals(departments["VALLE"]) == (2, 0, 2, 0)
    assert totals(departments["CORD"]) == (2, 0, 2, 0)
    assert totals(departments[analytics.NO_DEPARTMENT]) == (1, 0, 1, 0)
    assert totals(departments["ATL"]) == (1, 0, 0, 1) and departments["ATL"].success_rate is None
    assert sum(r.total for r in departments.values()) == 12
    assert totals(cities["MEDELLIN (ANT)"]) == (2, 1, 1, 0)
    assert totals(cities["BUENAVISTA (CORD)"]) == (2, 0, 2, 0)
    with pytest.raises(ValueError):
        analytics.success_by(tx.session, "country")


def test_success_over_time_groups_by_batch_day(uow, small_history):
    with uow() as tx:
        days = analytics.success_over_time(tx.session)
    assert [(d.key, d.total, d.success, d.error, d.pending) for d in days] == [
        ("2025-03-03", 8, 3, 5, 0),
        ("2025-03-04", 4, 0, 3, 1),
    ]
    assert days[0].success_rate == pytest.approx(3 / 8)


def test_error_reasons_by_category_and_message(uow, small_history):
    with uow() as tx:
        reasons = analytics.error_reasons(tx.session)
    counts = {(r.category, r.error_message): r.count for r in reasons}
    assert counts == {
        ("validation", 'Ciudad no encontrada en cobertura: "Buenavista" (CORD)'): 2,
        ("validation", "Ciudad y departamento vacios"): 1,
        ("dispatch", "Robot caído"): 2,
        ("portal", "No se encontró el municipio"): 1,
        ("unknown", "Error fatal en el procesamiento del batch"): 1,
        ("timeout", jobs.TIMEOUT_MESSAGE): 1,
    }
    assert reasons[0].count == 2 and sum(r.share for r in reasons) == pytest.approx(1)


def test_retry_outcomes(uow, small_history):
    with uow() as tx:
        (retry,) = analytics.retry_outcomes(tx.session)
    assert (retry.job_id, retry.retry_of_job_id) == (small_history["B"], small_history["A"])
    assert (retry.retried_items, retry.recovered, retry.still_failed, retry.pending) == (3, 1, 2, 0)
    assert retry.recovery_rate == pytest.approx(1 / 3)


def test_error_category_of_odd_values():
    assert analytics.error_category("success", None) is None
    assert analytics.error_category("error", None) == "unknown"
    assert analytics.error_category("error", "weird") == "unknown"
    assert analytics.error_category("error", "portal") == "portal"


# --- the generated history (sample_data/history.py) -------------------------------------------------------------------


def test_seed_history_builds_finished_batches_through_the_use_cases(uow, engine, database_url, credentials_key):
    assert not database_has_jobs(database_url)
    end = datetime(2025, 6, 1, 12, tzinfo=UTC)
    with uow() as tx:
        job_ids = seed_history(tx.session, credentials_key=credentials_key, batches=8, seed=7, end=end)
        tx.commit()
    assert database_has_jobs(database_url)
    with uow() as tx:
        rows = analytics.jobs_overview(tx.session)
        facts = analytics.item_facts(tx.session)
        workspace_id = rows[0].workspace_id
        pending_events = tx.session.exec(
            select(OutboxEvent).where(OutboxEvent.workspace_id == workspace_id, col(OutboxEvent.delivered_at).is_(None))
        ).all()
        shipped = tx.session.exec(select(Order).where(col(Order.tracking_number).is_not(None))).all()

    assert [r.job_id for r in rows] == job_ids  # returned in creation order
    originals = [r for r in rows if not r.is_retry]
    assert len(originals) == 8 and any(r.is_retry for r in rows)
    assert all(r.status in ("completed", "failed") and r.pending_count == 0 for r in rows)
    assert all(r.success_count + r.error_count == r.total_items for r in rows)
    assert all(r.created_at < end for r in rows)
    assert (rows[-1].created_at - rows[0].created_at) >= timedelta(days=3)
    # The plan: timeouts and a dispatch failure on the batches batch_kinds names.
    kinds = batch_kinds(8)
    for row, kind in zip(originals, kinds, strict=True):
        if kind != "normal":  # closed by us: completed only if the robot created something before
            assert row.status == ("completed" if row.success_count else "failed"), kind
            assert row.error_count > 0, kind
    categories = {f.error_category for f in facts}
    assert {"validation", "portal", "timeout", "unknown", "dispatch"} <= categories
    assert sum(f.status == "success" for f in facts) == len(shipped)  # successes shipped through the order path
    assert all(f.seconds_to_result is None or f.seconds_to_result >= 0 for f in facts)
    assert pending_events == []  # the past's events are delivered: no runner acts on them today


def test_seed_history_is_reproducible(uow, credentials_key):
    end = datetime(2025, 6, 1, 12, tzinfo=UTC)
    shapes = []
    for _ in range(2):
        with uow() as tx:
            ids = seed_history(tx.session, credentials_key=credentials_key, batches=5, seed=3, end=end)
            tx.commit()
        with uow() as tx:
            rows = analytics.jobs_overview(tx.session, workspace_id=jobs.get_job(tx.session, ids[0]).workspace_id)
        shapes.append([(r.status, r.total_items, r.success_count, r.error_count, r.created_at) for r in rows])
    assert shapes[0] == shapes[1]
