"""Automation fixtures: a small workspace (two pipelines), the fake WhatsApp provider on loopback, runner settings,
and helpers that write trigger events through domain functions and drain the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlmodel import select

from automations.fake_whatsapp import FakeWhatsApp
from automations.runner import RunStats, run_once
from domain import outbox
from domain.automations.models import AutomationActionRun, AutomationExecution, Task
from domain.automations.rules import save_automation
from domain.events import RobotCoordCompleted
from domain.models import Contact, Order, OutboxEvent, Pipeline, Stage, Workspace
from domain.orders.changes import create_order, order_context, update_order
from domain.settings import get_settings

WHATSAPP_TOKEN = "test-whatsapp-token"


@dataclass
class Shop:
    workspace_id: str
    pipeline_id: str
    stages: dict[str, str]  # name → id, pipeline "Ventas"
    other_pipeline_id: str
    other_stage_id: str


@pytest.fixture
def shop(uow) -> Shop:
    with uow() as tx:
        s = tx.session
        workspace = Workspace(name="Tienda Manizales")
        s.add(workspace)
        s.flush()
        sales = Pipeline(workspace_id=workspace.id, name="Ventas")
        post = Pipeline(workspace_id=workspace.id, name="Postventa")
        s.add_all([sales, post])
        s.flush()
        stages = {}
        for position, name in enumerate(["Por despachar", "Despachado", "Entregado", "X", "Y"]):
            stage = Stage(pipeline_id=sales.id, name=name, position=position)
            s.add(stage)
            s.flush()
            stages[name] = stage.id
        other = Stage(pipeline_id=post.id, name="Abierto")
        s.add(other)
        s.flush()
        tx.commit()
        return Shop(workspace.id, sales.id, stages, post.id, other.id)


@pytest.fixture
def make_order(uow, shop):
    def make(
        *,
        name="Pedido 1042",
        contact_name="Elena Beltrán",
        phone="+57 313 347 7968",
        email="elena@example.com",
        city="MANIZALES",
        total=Decimal("139900"),
        stage="Por despachar",
    ) -> str:
        with uow() as tx:
            contact = Contact(workspace_id=shop.workspace_id, name=contact_name, phone=phone, email=email)
            tx.session.add(contact)
            tx.session.flush()
            order = create_order(
                tx.session,
                Order(
                    workspace_id=shop.workspace_id,
                    contact_id=contact.id,
                    pipeline_id=shop.pipeline_id,
                    stage_id=shop.stages[stage],
                    name=name,
                    total_value=total,
                    shipping_address="calle 49f",
                    shipping_city=city,
                    shipping_department="CDAS",
                ),
            )
            tx.commit()
            return order.id

    return make


@pytest.fixture
def robot_completed(uow):
    """Write what the domain writes when the robot reports success: the tracking update, then the trigger event."""

    def emit(order_id: str, tracking_number: str) -> str:
        with uow() as tx:
            update_order(tx.session, order_id, changes={"tracking_number": tracking_number, "carrier": "COORDINADORA"})
            order = tx.session.get(Order, order_id)
            completed = RobotCoordCompleted(
                job_id="job-1", item_id=f"itm_{order_id[:8]}", **order_context(tx.session, order)
            )
            event = outbox.add_event(tx.session, completed, workspace_id=order.workspace_id)
            tx.commit()
            return event.event_id

    return emit


@pytest.fixture
def automation(uow, shop):
    def save(**data) -> str:
        with uow() as tx:
            saved = save_automation(tx.session, workspace_id=shop.workspace_id, data={"name": "auto", **data})
            tx.commit()
            return saved.id

    return save


@pytest.fixture
def fake_whatsapp():
    with FakeWhatsApp(token=WHATSAPP_TOKEN) as fake:
        yield fake


@pytest.fixture
def settings(database_url, fake_whatsapp):
    return get_settings(
        database_url=database_url,
        whatsapp_base_url=fake_whatsapp.base_url,
        whatsapp_token=WHATSAPP_TOKEN,
        webhook_action_allow_private=False,
        automations_enabled=True,
        automation_retry_budget_s=2.0,  # the blip tests stay fast; production keeps 30 s
    )


@pytest.fixture
def drain(engine, settings):
    """Run batches until no event is due; returns the summed stats."""

    def run(*, worker_id: str = "test-runner", settings_=None, max_batches: int = 50) -> RunStats:
        total = RunStats()
        for _ in range(max_batches):
            stats = run_once(engine, settings_ or settings, worker_id=worker_id, limit=10)
            if stats.claimed == 0:
                return total
            for key, value in stats.model_dump().items():
                setattr(total, key, getattr(total, key) + value)
        raise AssertionError("the outbox did not drain")

    return run


class Db:
    def __init__(self, uow):
        self._uow = uow

    def all(self, model, *where, order_by=None):
        with self._uow() as tx:
            query = select(model).where(*where)
            if order_by is not None:
                query = query.order_by(order_by)
            return list(tx.session.exec(query))

    def get(self, model, key):
        with self._uow() as tx:
            return tx.session.get(model, key)

    def executions(self, automation_id=None):
        where = [AutomationExecution.automation_id == automation_id] if automation_id else []
        return self.all(AutomationExecution, *where, order_by=AutomationExecution.depth)

    def runs(self, execution_id):
        return self.all(
            AutomationActionRun,
            AutomationActionRun.execution_id == execution_id,
            order_by=AutomationActionRun.action_index,
        )

    def tasks(self):
        return self.all(Task)

    def undelivered(self):
        return self.all(OutboxEvent, OutboxEvent.delivered_at.is_(None), OutboxEvent.consumer == outbox.AUTOMATIONS)


@pytest.fixture
def db(uow) -> Db:
    return Db(uow)
