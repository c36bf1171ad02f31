"""Property: whatever sequence of robot results, duplicates, re-reports, our own closures, retries and late
successes arrives, the batch bookkeeping keeps its invariants.

- every job's counters equal the counts derived from its items;
- one `robot.coord.completed` per order the robot created, never two, and none for an order never created;
- a robot-reported result is absorbing: nothing changes an item once the robot itself decided it;
- a robot success is never lost: an item the robot reported created is `success` whatever we decided before;
- a job's status agrees with its items (active ⇔ some item pending; completed ⇔ a success; failed otherwise);
- no order is ever sent in a job while it has a success elsewhere (withdrawn before its dispatch).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlmodel import select

from domain.batches.dispatch import hash_callback_secret
from domain.batches.jobs import (
    TIMEOUT_MESSAGE,
    claim_dispatch,
    create_robot_job,
    fail_job,
    retry_failed_items,
    start_job,
)
from domain.batches.results import normalise_result, record_batch_results, record_item_result
from domain.errors import JobNotRetryable
from domain.events import ROBOT_COORD_COMPLETED
from domain.models import ErrorType, ItemStatus, OutboxEvent, RobotJob, RobotJobItem
from sample_data.seed import seed_demo

ORDERS = 4  # dispatchable orders of the batch (the demo's first ones pass coverage)

robot_result = st.tuples(
    st.just("result"),
    st.integers(min_value=0, max_value=ORDERS - 1),  # which order
    st.sampled_from(["success", "error"]),
    st.sampled_from(["761", "762", "", None]),  # pedido number; empty/None: created without a readable number
    st.booleans(),  # to the latest job holding the order (True) or to the first one (a late or duplicate report)
)
step = st.one_of(
    robot_result,
    st.tuples(st.just("timeout")),
    st.tuples(st.just("retry")),
    st.tuples(st.just("dispatch_retry")),
    st.tuples(st.just("batch"), st.lists(robot_result, min_size=1, max_size=4)),
)


class World:
    def __init__(self, uow, credentials_key, n: int):
        self.uow = uow
        with uow() as tx:
            demo = seed_demo(tx.session, credentials_key=credentials_key, name=f"Prop {n}")
            created = create_robot_job(tx.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids[:ORDERS])
            job = created.job
            assert job.total_items == ORDERS and not created.rejected
            self.workspace_id, self.order_ids = demo.workspace_id, demo.order_ids[:ORDERS]
            self.jobs = [job.id]
            tx.commit()
        self._dispatch(self.jobs[0])
        self.robot_said: dict[str, str] = {}  # item id → the robot's first report that landed ("success"/"error")
        self.created: set[str] = set()  # orders the robot reported created (any job)

    def _dispatch(self, job_id: str) -> None:
        with self.uow() as tx:
            start_job(tx.session, job_id, flow_run_id=None)
            claim_dispatch(tx.session, job_id, callback_secret_hash=hash_callback_secret("s"))
            tx.commit()

    def item_of(self, order_index: int, latest: bool) -> str | None:
        """The item the robot would report for that order: only items that were sent to the robot."""
        order_id = self.order_ids[order_index]
        with self.uow() as tx:
            rows = tx.session.exec(
                select(RobotJobItem.id, RobotJob.dispatch_state)
                .join(RobotJob, RobotJob.id == RobotJobItem.job_id)
                .where(RobotJobItem.order_id == order_id, RobotJobItem.robot_input.is_not(None))
                .order_by(RobotJob.created_at)
            ).all()
        sent = [item_id for item_id, state in rows if state != "not_dispatched"]
        if not sent:
            return None
        return sent[-1] if latest else sent[0]

    def report(self, results: list[tuple], *, per_order: bool = False) -> None:
        """`per_order`: one result as the existing robot sends it, through `record_item_result` (on PostgreSQL,
        for an active job, the one-statement path); otherwise a batch report."""
        by_job: dict[str, list] = {}
        for _, order_index, status, tracking, latest in results:
            item_id = self.item_of(order_index, latest)
            if item_id is None:
                continue
            with self.uow() as tx:
                job_id = tx.session.get(RobotJobItem, item_id).job_id
            by_job.setdefault(job_id, []).append(
                normalise_result(
                    item_id=item_id,
                    status=status,
                    tracking_number=tracking,
                    error_type="portal",
                    error_message="No se encontró el municipio",
                )
            )
        for job_id, batch in by_job.items():
            with self.uow() as tx:
                before = {
                    i.id: (i.status, i.resolved_by)
                    for i in tx.session.exec(select(RobotJobItem).where(RobotJobItem.job_id == job_id))
                }
                if per_order and len(batch) == 1:
                    record_item_result(tx.session, batch[0], job_id=job_id)
                else:
                    record_batch_results(tx.session, job_id, batch)
                tx.commit()
            for result in batch:  # the model: the robot's first report lands unless the robot already spoke
                status, resolved_by = before[result.item_id]
                if result.item_id not in self.robot_said and resolved_by != "robot":
                    self.robot_said[result.item_id] = result.status
                    before[result.item_id] = (result.status, "robot")
                    if result.status == "success":
                        with self.uow() as tx:
                            self.created.add(tx.session.get(RobotJobItem, result.item_id).order_id)

    def time_out(self) -> None:
        with self.uow() as tx:
            fail_job(
                tx.session,
                self.jobs[-1],
                reason=TIMEOUT_MESSAGE,
                error_type=ErrorType.TIMEOUT,
                error_message=TIMEOUT_MESSAGE,
            )
            tx.commit()

    def retry(self) -> None:
        with self.uow() as tx:
            try:
                created = retry_failed_items(tx.session, self.jobs[-1], idempotency_key=f"retry-{len(self.jobs)}")
            except JobNotRetryable:
                return
            tx.commit()
        if created.created:
            self.jobs.append(created.job.id)

    def dispatch_retry(self) -> None:
        if len(self.jobs) > 1:
            self._dispatch(self.jobs[-1])

    def check(self) -> None:
        with self.uow() as tx:
            items = tx.session.exec(select(RobotJobItem).where(RobotJobItem.order_id.in_(self.order_ids))).all()
            jobs = {j.id: j for j in tx.session.exec(select(RobotJob).where(RobotJob.id.in_(self.jobs)))}
            fired = Counter(
                e.aggregate_id
                for e in tx.session.exec(
                    select(OutboxEvent).where(
                        OutboxEvent.event_type == ROBOT_COORD_COMPLETED,
                        OutboxEvent.aggregate_id.in_(self.order_ids),
                    )
                )
            )
        for job_id, job in jobs.items():
            mine = [i for i in items if i.job_id == job_id]
            assert job.success_count == sum(1 for i in mine if i.status == ItemStatus.SUCCESS), job_id
            assert job.error_count == sum(1 for i in mine if i.status == ItemStatus.ERROR), job_id
            pending = any(i.status == ItemStatus.PENDING for i in mine)
            assert (job.status in ("pending", "processing")) == pending, (job.status, pending)
            if not pending:
                assert job.status == ("completed" if job.success_count else "failed")
        for item in items:
            if item.id in self.robot_said:  # absorbing, and a robot success is never lost
                assert (item.status, item.resolved_by) == (self.robot_said[item.id], "robot")
            if item.resolved_by == "robotjobs" and item.error_type == ErrorType.WITHDRAWN:
                assert item.order_id in self.created
        shipped = {i.order_id for i in items if i.status == ItemStatus.SUCCESS}
        assert shipped == self.created
        assert fired == Counter({order_id: 1 for order_id in shipped})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_bookkeeping_invariants_hold_for_any_sequence(uow, credentials_key, steps):
    world = World(uow, credentials_key, n=id(steps))
    note(f"steps: {steps}")
    for s in steps:
        kind = s[0]
        if kind == "result":
            world.report([s], per_order=True)
        elif kind == "batch":
            world.report(s[1])
        elif kind == "timeout":
            world.time_out()
        elif kind == "retry":
            world.retry()
        elif kind == "dispatch_retry":
            world.dispatch_retry()
        world.check()
