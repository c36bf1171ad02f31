"""A realistic history of past batches for demos and notebooks, built through the domain's own use cases.

`seed_history` runs each batch the way the flow and the webhook do (create → start → claim → results, timeouts,
dispatch failures, retries), then moves the rows back in time so the history spans several days. Like every domain
function it never commits. `sample_history_database` is the one convenience that owns its transaction: it builds a
throw-away SQLite database for a notebook that finds no batches where it looks.
"""

from __future__ import annotations

import random
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from domain.analytics import count_jobs
from domain.batches import jobs
from domain.batches.dispatch import build_dispatch_request, hash_callback_secret, new_callback_secret
from domain.batches.results import ItemResult, record_batch_results
from domain.db import UnitOfWork, make_engine
from domain.models import Contact, ErrorType, JobStatus, Order, OutboxEvent, RobotJob, RobotJobItem, utcnow
from domain.orders.changes import create_order
from domain.outbox import mark_delivered
from sample_data.seed import DEMO_ORDERS, seed_demo

HISTORY_WORKSPACE = "Tienda Demo (historial)"
CALLBACK_URL = "http://127.0.0.1:8000/api/webhooks/robot-callback"
DISPATCH_FAILURE = (
    "No se pudo conectar con el servicio del robot (ConnectError); el lote no se envió. "
    "Revise que el robot esté en línea y reintente los pedidos fallidos."
)
TIMEOUT_REASON = "Tiempo de espera agotado: el robot no reportó todos los pedidos"

# What the robot reports for an order it did receive: (weight, status, error_type, message), as robot-protocol.md §2.
Outcome = tuple[int, str, str | None, str | None]
ROBOT_OUTCOMES: list[Outcome] = [
    (72, "success", None, None),
    (10, "error", "portal", "No se encontró el municipio"),
    (4, "error", "portal", "Login fallido en el portal de Coordinadora"),
    (5, "error", "validation", "Pedido ya en proceso"),
    (5, "error", "unknown", "Error fatal en el procesamiento del batch"),
    (4, "error", "timeout", "Tiempo de espera agotado en el portal de Coordinadora"),
]
# A retried order usually goes through: the reasons it failed were mostly transient.
RETRY_OUTCOMES: list[Outcome] = [(90, "success", None, None), (10, "error", "portal", "No se encontró el municipio")]


@dataclass
class _Clock:
    now: datetime

    def advance(self, rng: random.Random, low: float, high: float) -> datetime:
        self.now += timedelta(seconds=rng.uniform(low, high))
        return self.now


class _History:
    def __init__(self, session: Session, *, credentials_key: str, seed: int):
        self.session = session
        self.credentials_key = credentials_key
        self.rng = random.Random(seed)
        self.order_number = 5001
        self.tracking_number = 76004410000 + seed * 1000
        self.demo = seed_demo(session, credentials_key=credentials_key, name=HISTORY_WORKSPACE, orders=[])

    def add_orders(self, count: int, at: datetime) -> list[str]:
        """Fresh orders in the dispatch stage, drawn from the demo's realistic mix (some outside coverage)."""
        ids = []
        for cname, phone, email, document, address, city, dept, total, tags in self.rng.sample(DEMO_ORDERS, count):
            contact = Contact(
                workspace_id=self.demo.workspace_id,
                name=cname,
                phone=phone,
                email=email,
                id_document=document,
                created_at=at,
            )
            self.session.add(contact)
            self.session.flush()
            order = create_order(
                self.session,
                Order(
                    workspace_id=self.demo.workspace_id,
                    contact_id=contact.id,
                    pipeline_id=self.demo.pipeline_id,
                    stage_id=self.demo.dispatch_stage_id,
                    name=f"Pedido {self.order_number}",
                    total_value=Decimal(total),
                    shipping_address=address or None,
                    shipping_city=city or None,
                    shipping_department=dept or None,
                    tags=list(tags),
                    created_at=at,
                    updated_at=at,
                ),
            )
            self.order_number += 1
            ids.append(order.id)
        return ids

    def _outcome(self, table: list[Outcome]) -> tuple[str, str | None, str | None]:
        weights = [row[0] for row in table]
        _, status, error_type, message = self.rng.choices(table, weights=weights)[0]
        return status, error_type, message

    def run(self, created: jobs.JobCreated, created_at: datetime, kind: str) -> str:
        """Start, dispatch and finish one created job the way the flow and the robot would, from `created_at` on."""
        job_id = created.job.id
        self._backdate(job_id, created_at)
        if created.job.status != JobStatus.PENDING:  # every order was rejected by coverage: nothing to send
            return job_id
        clock = _Clock(created_at)
        job = jobs.start_job(self.session, job_id, flow_run_id=None, now=clock.advance(self.rng, 5, 30))
        secret = new_callback_secret()
        jobs.claim_dispatch(
            self.session, job_id, callback_secret_hash=hash_callback_secret(secret), now=clock.advance(self.rng, 2, 10)
        )
        if kind == "dispatch_failure":
            jobs.fail_job(
                self.session,
                job_id,
                reason=DISPATCH_FAILURE,
                error_type=ErrorType.DISPATCH,
                error_message=DISPATCH_FAILURE,
                dispatch_refused=True,
                now=clock.advance(self.rng, 5, 15),
            )
            return job_id
        request = build_dispatch_request(
            self.session,
            job_id,
            callback_url=CALLBACK_URL,
            callback_secret=secret,
            credentials_key=self.credentials_key,
        )
        jobs.mark_dispatch_accepted(self.session, job_id)
        item_ids = [order["itemId"] for order in request["orders"]]
        # A timed-out batch: the robot stops reporting halfway and the deadline closes the rest.
        reported = item_ids[: len(item_ids) // 2] if kind == "timeout" else item_ids
        table = RETRY_OUTCOMES if created.job.retry_of_job_id else ROBOT_OUTCOMES
        for item_id in reported:
            status, error_type, message = self._outcome(table)
            if status == "success":
                self.tracking_number += self.rng.randint(1, 40)
                result = ItemResult(item_id=item_id, status="success", tracking_number=str(self.tracking_number))
            else:
                result = ItemResult(item_id=item_id, status="error", error_type=error_type, error_message=message)
            # The robot fills the portal one order at a time: roughly half a minute each.
            record_batch_results(self.session, job_id, [result], now=clock.advance(self.rng, 15, 75))
        if kind == "timeout":
            jobs.fail_job(
                self.session,
                job_id,
                reason=TIMEOUT_REASON,
                error_type=ErrorType.TIMEOUT,
                error_message=jobs.TIMEOUT_MESSAGE,
                now=job.deadline_at,
            )
        return job_id

    def _backdate(self, job_id: str, created_at: datetime) -> None:
        """create_robot_job stamps 'now'; move the job, its items and its coverage rejections to `created_at`."""
        for statement in (
            update(RobotJob).where(col(RobotJob.id) == job_id).values(created_at=created_at, updated_at=created_at),
            update(RobotJobItem)
            .where(col(RobotJobItem.job_id) == job_id)
            .values(created_at=created_at, updated_at=created_at),
            update(RobotJobItem)
            .where(col(RobotJobItem.job_id) == job_id, col(RobotJobItem.robot_input).is_(None))
            .values(completed_at=created_at),
            update(RobotJob)
            .where(col(RobotJob.id) == job_id, col(RobotJob.finished_at).is_not(None))
            .values(finished_at=created_at),
        ):
            self.session.execute(statement.execution_options(synchronize_session=False))

    def settle_events(self) -> None:
        """The history is the past: its events were delivered long ago, so no runner acts on them today."""
        events = self.session.exec(
            select(OutboxEvent.event_id).where(
                OutboxEvent.workspace_id == self.demo.workspace_id, col(OutboxEvent.delivered_at).is_(None)
            )
        ).all()
        for event_id in events:
            mark_delivered(self.session, event_id)


def batch_kinds(batches: int) -> list[str]:
    """The plan of a history: mostly normal batches, a timeout every fourth from the third, one dispatch failure."""
    kinds = ["normal"] * batches
    for i in range(2, batches, 4):
        kinds[i] = "timeout"
    if batches >= 5:
        kinds[4] = "dispatch_failure"
    return kinds


def seed_history(
    session: Session, *, credentials_key: str, batches: int = 8, seed: int = 7, end: datetime | None = None
) -> list[str]:
    """Past batches of a new workspace, ending before `end` (default now), spread over several days; returns job ids.

    Each batch holds 5-9 fresh orders (a few outside coverage). The plan of `batch_kinds` adds timeouts and a dispatch
    failure; every batch that dispatched and had failures on odd positions, and the dispatch failure, is retried.
    """
    history = _History(session, credentials_key=credentials_key, seed=seed)
    rng = history.rng
    end = end or utcnow()
    # ~14 h between batches: a week of history for 8-12 batches, each one a few minutes long.
    start = end - timedelta(hours=14 * batches + 6)
    job_ids: list[str] = []
    for index, kind in enumerate(batch_kinds(batches)):
        created_at = start + timedelta(hours=14 * index, minutes=rng.uniform(0, 90))
        order_ids = history.add_orders(rng.randint(5, 9), created_at - timedelta(hours=rng.uniform(2, 12)))
        created = jobs.create_robot_job(
            session,
            workspace_id=history.demo.workspace_id,
            order_ids=order_ids,
            idempotency_key=f"history:{seed}:{index}",
        )
        job_ids.append(history.run(created, created_at, kind))
        job = jobs.get_job(session, created.job.id)
        if job.error_count and (index % 2 == 1 or kind == "dispatch_failure"):
            # The operator retries the failed orders a couple of hours later.
            retry = jobs.retry_failed_items(session, job.id)
            retry_at = (job.finished_at or created_at) + timedelta(hours=rng.uniform(1, 3))
            job_ids.append(history.run(retry, retry_at, "normal"))
    history.settle_events()
    return job_ids


def database_has_jobs(database_url: str) -> bool:
    """Whether the database at `database_url` holds any batch; False for a missing SQLite file or an empty schema."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).exists():  # don't let a look create an empty file
            return False
    engine = make_engine(database_url)
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            return count_jobs(uow.session) > 0
    finally:
        engine.dispose()


def sample_history_database(directory: str | Path | None = None, *, batches: int = 8, seed: int = 7) -> str:
    """A new SQLite database (in `directory`, else a temporary one) with the demo workspace and a history; its URL."""
    from cryptography.fernet import Fernet

    from domain.migrate import upgrade

    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="robotjobs-history-"))
    database_url = f"sqlite:///{folder / f'history-{secrets.token_hex(4)}.db'}"
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        key = Fernet.generate_key().decode()  # throw-away: this database's portal passwords are demo values
        with UnitOfWork(engine) as uow:
            seed_demo(uow.session, credentials_key=key)
            seed_history(uow.session, credentials_key=key, batches=batches, seed=seed)
            uow.commit()
    finally:
        engine.dispose()
    return database_url
