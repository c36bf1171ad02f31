"""The per-order result in one round trip (domain/batches/report_one.py): on PostgreSQL it records the plain case
with the full path's meaning, and answers None, changing nothing, for every case the full path must decide."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.batches.dispatch import hash_callback_secret
from domain.batches.jobs import fail_job, get_job
from domain.batches.report_one import FUNCTION, function_body, report_item_result, usable_by
from domain.batches.results import record_item_result
from domain.db import make_engine
from domain.events import BATCH_COMPLETED, FIELD_CHANGED, ROBOT_COORD_COMPLETED
from domain.models import ErrorType, Order, RobotJob, RobotJobItem
from tests.domain.results_helpers import err, events, ok

SECRET = hash_callback_secret("s3cret")  # the dispatched_job fixture's secret

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def postgres(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("the one-round-trip path exists on PostgreSQL only (SQLite: see the test below)")
    return engine


def _state(uow, job_id, item_id):
    with uow() as tx:
        job = get_job(tx.session, job_id)
        item = tx.session.get(RobotJobItem, item_id)
        order = tx.session.get(Order, item.order_id)
        return (
            (job.status, job.success_count, job.error_count),
            (item.status, item.resolved_by, item.tracking_number),
            (order.tracking_number, order.carrier),
            len(events(tx, ROBOT_COORD_COMPLETED)),
        )


def test_migrated_database_holds_this_codes_function(postgres):
    with postgres.connect() as connection:
        found = connection.execute(text("SELECT prosrc FROM pg_proc WHERE proname = :n"), {"n": FUNCTION}).scalar()
    assert found == function_body(postgres.dialect)


def test_a_success_is_recorded_with_the_order_shipped_and_its_events_once(postgres, uow, dispatched_job):
    job_id, items = dispatched_job()
    errors_before = _state(uow, job_id, items[0])[0][2]  # items the dispatch closed already (cities not covered)
    outcome = report_item_result(postgres, ok(items[0], "10107"), SECRET)
    assert outcome is not None and outcome.changed and outcome.item_status == "success"
    assert (outcome.job_id, outcome.job_status, outcome.job_finished, outcome.flow_run_id) == (
        job_id, "processing", False, "flow-run-1"
    )  # fmt: skip
    assert _state(uow, job_id, items[0]) == (("processing", 1, errors_before), ("success", "robot", "10107"),
                                             ("10107", "COORDINADORA"), 1)  # fmt: skip
    with uow() as tx:
        assert len(events(tx, FIELD_CHANGED)) == 2
    # The same report again, and a later error for it: the first terminal result wins, nothing moves.
    for again in (ok(items[0], "10107"), err(items[0])):
        repeated = report_item_result(postgres, again, SECRET)
        assert repeated is not None and not repeated.changed and repeated.item_status == "success"
    assert _state(uow, job_id, items[0])[0] == ("processing", 1, errors_before)
    with uow() as tx:
        assert len(events(tx, ROBOT_COORD_COMPLETED)) == 1


def test_the_last_result_finishes_the_job_and_queues_its_resume(postgres, uow, dispatched_job):
    job_id, items = dispatched_job()
    errors_before = _state(uow, job_id, items[0])[0][2]
    for n, item_id in enumerate(items):
        outcome = report_item_result(postgres, ok(item_id, f"7600{n}") if n else err(item_id), SECRET)
        assert outcome is not None and outcome.changed
    assert outcome.job_finished and outcome.job_status == "completed"
    with uow() as tx:
        job = get_job(tx.session, job_id)
        assert (job.status, job.success_count, job.error_count) == ("completed", len(items) - 1, errors_before + 1)
        [completed] = events(tx, BATCH_COMPLETED)
        assert completed.payload["success_count"] == len(items) - 1


@pytest.mark.parametrize("case", ["unknown item", "wrong secret", "finished job"])
def test_cases_the_full_path_decides_change_nothing(postgres, uow, dispatched_job, case):
    job_id, items = dispatched_job()
    if case == "finished job":
        with uow() as tx:
            assert fail_job(tx.session, job_id, reason="x", error_type=ErrorType.TIMEOUT, error_message="x")
            tx.commit()
    before = _state(uow, job_id, items[0])
    item_id = "itm_nobody" if case == "unknown item" else items[0]
    secret = hash_callback_secret("not-it") if case == "wrong secret" else SECRET
    assert report_item_result(postgres, ok(item_id, "10107"), secret) is None
    assert _state(uow, job_id, items[0]) == before


def _held_by_another_job(uow, job_id, item_id):
    """Give `item_id`'s order a pending item in another job: the function then raises RJ001 and rolls back."""
    with uow() as tx:
        order_id = tx.session.get(RobotJobItem, item_id).order_id
        other = RobotJob(workspace_id=get_job(tx.session, job_id).workspace_id, carrier="OTRA", total_items=1)
        tx.session.add(other)
        tx.session.flush()
        tx.session.add(RobotJobItem(job_id=other.id, order_id=order_id))
        tx.commit()


def test_an_order_another_job_holds_is_undone_and_left_to_the_full_path(postgres, uow, dispatched_job):
    job_id, items = dispatched_job()
    _held_by_another_job(uow, job_id, items[0])
    before = _state(uow, job_id, items[0])
    assert report_item_result(postgres, ok(items[0], "10107"), SECRET) is None
    assert _state(uow, job_id, items[0]) == before  # the function's transaction was rolled back
    with uow() as tx:
        assert record_item_result(tx.session, ok(items[0], "10107"), job_id=job_id).changed
        tx.commit()
    assert _state(uow, job_id, items[0])[2] == ("10107", "COORDINADORA")


def test_a_database_without_the_function_takes_the_full_path(postgres, uow, dispatched_job):
    job_id, items = dispatched_job()
    with postgres.begin() as connection:
        connection.exec_driver_sql(f"ALTER FUNCTION {FUNCTION} RENAME TO {FUNCTION}_aside")
    fresh = make_engine(postgres.url)  # which engines may use the function is decided once per engine
    try:
        assert report_item_result(fresh, ok(items[0]), SECRET) is None
        assert _state(uow, job_id, items[0])[1][0] == "pending"
    finally:
        fresh.dispose()
        with postgres.begin() as connection:
            connection.exec_driver_sql(f"ALTER FUNCTION {FUNCTION}_aside RENAME TO {FUNCTION}")


def _pooled_connections_in_transactions(engine):
    """Every connection idle in `engine`'s pool, checked out at once: whether each is back in transactions."""
    connections = [engine.connect() for _ in range(engine.pool.checkedin())]
    assert connections, "the pool holds no connection to look at"
    try:
        return [c.connection.dbapi_connection.autocommit is False for c in connections]
    finally:
        for connection in connections:
            connection.close()


def test_the_one_round_trip_leaves_the_pools_connections_in_transactions(postgres, uow, dispatched_job):
    # The call runs in autocommit on a connection of the engine's own pool (no second pool: a webhook worker's server
    # connections doubled with one); the full path and the after-commit work then check the same connections out.
    job_id, items = dispatched_job()
    fresh = make_engine(postgres.url.render_as_string(hide_password=False))
    try:
        _held_by_another_job(uow, job_id, items[1])  # RJ001: the call's own error path
        assert report_item_result(fresh, ok(items[0], "10107"), SECRET).changed
        assert report_item_result(fresh, ok(items[1], "10108"), SECRET) is None  # RJ001, rolled back
        assert report_item_result(fresh, ok("itm_nobody", "1"), SECRET) is None
        assert fresh.pool.checkedout() == 0
        assert _pooled_connections_in_transactions(fresh) == [True] * fresh.pool.checkedin()
        with fresh.connect() as connection:
            assert connection.get_isolation_level() == "READ COMMITTED"
    finally:
        fresh.dispose()
    assert _state(uow, job_id, items[0])[1] == ("success", "robot", "10107")
    assert _state(uow, job_id, items[1])[1][0] == "pending"


def test_a_connection_the_server_drops_raises_the_database_error_and_is_not_pooled_again(postgres, uow, dispatched_job):
    # The webhook spools a callback on a DBAPIError (webhook/callbacks.py): putting the connection back in
    # transactions must not replace that error with the driver's complaint about a closed connection.
    job_id, items = dispatched_job()
    fresh = make_engine(postgres.url.render_as_string(hide_password=False))
    try:
        assert report_item_result(fresh, ok(items[0], "10107"), SECRET).changed  # the pool holds one connection
        with fresh.connect() as connection:
            backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            connection.rollback()
        with postgres.connect() as admin:
            admin.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s)", {"pid": backend})
        with pytest.raises(DBAPIError):
            report_item_result(fresh, ok(items[1], "10108"), SECRET)
        assert report_item_result(fresh, ok(items[1], "10108"), SECRET).changed  # a fresh connection, recorded
        assert _pooled_connections_in_transactions(fresh) == [True] * fresh.pool.checkedin()
    finally:
        fresh.dispose()
    assert _state(uow, job_id, items[1])[1] == ("success", "robot", "10108")


def test_a_disconnect_marks_the_whole_pool_stale_as_sqlalchemy_does(postgres, uow, dispatched_job):
    # A restarted server leaves every pooled connection dead. SQLAlchemy's Connection, on a disconnect, marks all the
    # pool's connections of that generation stale (make_engine relies on it): the call must too, or each dead
    # connection fails one more callback (spooled, not lost, but no longer answered at once).
    job_id, items = dispatched_job()
    fresh = make_engine(postgres.url.render_as_string(hide_password=False))
    try:
        assert usable_by(fresh)  # asked now: its own query would meet the dead connection through SQLAlchemy
        held = [fresh.connect() for _ in range(3)]  # three connections in the pool
        backends = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in held]
        for connection in held:
            connection.rollback()
            connection.close()
        with postgres.connect() as admin:
            for backend in backends:
                admin.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s)", {"pid": backend})
        with pytest.raises(DBAPIError) as raised:
            report_item_result(fresh, ok(items[0], "10107"), SECRET)
        assert raised.value.connection_invalidated
        assert report_item_result(fresh, ok(items[0], "10107"), SECRET).changed  # not another dead connection
        assert report_item_result(fresh, ok(items[1], "10108"), SECRET).changed
    finally:
        fresh.dispose()
    assert _state(uow, job_id, items[1])[1] == ("success", "robot", "10108")


def test_sqlite_takes_the_full_path_without_a_query(tmp_path):
    # An empty SQLite file (no tables): any query would fail, so None here also says nothing was asked of it.
    sqlite = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert report_item_result(sqlite, ok("itm_any"), SECRET) is None
    finally:
        sqlite.dispose()


def test_a_server_that_refuses_connections_raises_sqlalchemy_s_operational_error(postgres, monkeypatch):
    import socket

    from sqlalchemy.exc import OperationalError

    from domain.batches import report_one

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens on it once closed
    down = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/robotjobs")
    monkeypatch.setitem(report_one._usable, down, True)  # as if the function had been found before the outage
    with pytest.raises(OperationalError):  # SQLAlchemy's, which the webhook spools on; not the driver's
        report_item_result(down, ok("itm_x"), SECRET)
    down.dispose()
