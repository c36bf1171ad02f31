"""Exactly once per (event, automation): a runner that dies mid-batch and is replaced, and two runners at once,
never send a WhatsApp message twice or repeat a database effect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from automations.actions import Effects
from automations.runner import run_forever, run_once
from automations.webhook_action import WebhookSender
from automations.whatsapp import WhatsAppClient
from domain.models import Order
from tests.automations.conftest import WHATSAPP_TOKEN

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Crash(BaseException):
    """Stands for the process dying: no `except Exception` in the runner catches it, nothing is cleaned up."""


class CrashingWhatsApp(WhatsAppClient):
    """A real client to the fake provider that 'dies' before the request, or after the provider took it."""

    def __init__(self, base_url, *, after_send: bool):
        super().__init__(base_url, WHATSAPP_TOKEN)
        self.after_send = after_send

    def send(self, body, *, idempotency_key):
        if self.after_send:
            super().send(body, idempotency_key=idempotency_key)
        raise Crash()


def wait_until(predicate, *, timeout=30.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def three_actions(automation, shop):
    return automation(
        trigger_type="robot.coord.completed",
        actions=[
            {"type": "create_task", "title": "antes {{orden.tracking_number}}"},
            {
                "type": "send_whatsapp_template",
                "template_name": "pedido_despachado",
                "parameters": ["{{orden.tracking_number}}"],
            },
            {"type": "change_stage", "stage_id": shop.stages["Despachado"]},
        ],
    )


@pytest.mark.parametrize("after_send", [False, True], ids=["crash-before-the-call", "crash-after-the-provider-took-it"])
def test_crash_after_claiming_the_action_then_redelivery_sends_once(
    after_send, engine, settings, shop, make_order, robot_completed, automation, drain, db, fake_whatsapp
):
    automation_id = three_actions(automation, shop)
    order_id = make_order()
    robot_completed(order_id, "C-77")
    crashing = Effects(
        whatsapp=CrashingWhatsApp(fake_whatsapp.base_url, after_send=after_send),
        webhook=WebhookSender(allow_private=False),
    )

    with pytest.raises(Crash):
        run_once(engine, settings, worker_id="dies", lease_seconds=1, effects=crashing)

    [execution] = db.executions(automation_id)
    assert execution.status == "running"
    assert [r.status for r in db.runs(execution.id)] == ["succeeded", "started", "pending"]
    assert len(fake_whatsapp.messages) == (1 if after_send else 0)

    time.sleep(1.2)  # the dead runner's lease expires
    drain(worker_id="replacement")

    [message] = fake_whatsapp.messages
    assert message["idempotency_key"] == f"{execution.event_id}:{automation_id}:1"
    assert fake_whatsapp.replays == (1 if after_send else 0)  # the repeat carried the same key
    [execution] = db.executions(automation_id)
    runs = db.runs(execution.id)
    assert execution.status == "succeeded"
    assert [(r.status, r.attempts) for r in runs] == [("succeeded", 1), ("succeeded", 2), ("succeeded", 1)]
    assert [t.title for t in db.tasks()] == ["antes C-77"]
    assert db.get(Order, order_id).stage_id == shop.stages["Despachado"]
    assert db.undelivered() == []


def _runner_process(database_url, fake_whatsapp, worker_id):
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WHATSAPP_BASE_URL": fake_whatsapp.base_url,
        "WHATSAPP_TOKEN": WHATSAPP_TOKEN,
        "AUTOMATIONS_ENABLED": "true",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "automations.runner",
            "--worker-id",
            worker_id,
            "--lease-seconds",
            "2",
            "--poll-interval",
            "0.1",
            "--batch-size",
            "10",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read() if process.stdout else ""


def test_runner_process_killed_mid_batch_and_restarted_sends_every_message_once(
    database_url, shop, make_order, robot_completed, automation, db, fake_whatsapp
):
    automation_id = three_actions(automation, shop)
    orders = [make_order(name=f"Pedido {n}") for n in range(3)]
    for n, order_id in enumerate(orders):
        robot_completed(order_id, f"C-{n}")
    fake_whatsapp.set_delay(30)  # the provider takes the first message and keeps the runner waiting

    first = _runner_process(database_url, fake_whatsapp, "first")
    try:
        wait_until(lambda: len(fake_whatsapp.messages) == 1, what="the first message to reach the provider")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        _stop(first)
    fake_whatsapp.set_delay(0)

    second = _runner_process(database_url, fake_whatsapp, "second")
    try:
        wait_until(
            lambda: (
                not db.undelivered()
                and len(db.executions(automation_id)) == 3
                and all(e.status == "succeeded" for e in db.executions(automation_id))
            ),
            what="the restarted runner to finish",
        )
    finally:
        output = _stop(second)
    assert second.returncode == 0, output

    messages = fake_whatsapp.messages
    assert len(messages) == 3
    assert len({m["idempotency_key"] for m in messages}) == 3
    assert fake_whatsapp.replays == 1  # the message in flight when the runner died was repeated, not resent
    assert sorted(t.title for t in db.tasks()) == ["antes C-0", "antes C-1", "antes C-2"]
    assert all(db.get(Order, o).stage_id == shop.stages["Despachado"] for o in orders)


def test_two_runners_at_once_do_every_effect_once(
    engine, settings, shop, make_order, robot_completed, automation, db, fake_whatsapp
):
    automation_id = three_actions(automation, shop)
    orders = [make_order(name=f"Pedido {n}") for n in range(16)]
    for n, order_id in enumerate(orders):
        robot_completed(order_id, f"C-{n}")
    fake_whatsapp.set_delay(0.02)  # keep each runner busy long enough for the other to take events too

    stop = threading.Event()
    errors: list[BaseException] = []

    def runner(worker_id):
        try:
            run_forever(engine, settings, worker_id=worker_id, limit=3, poll_interval=0.05, stop=stop)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(f"runner-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_until(
            lambda: (
                not db.undelivered()
                and sum(e.status == "succeeded" for e in db.executions(automation_id)) == len(orders)
            ),
            what="both runners",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []

    executions = db.executions(automation_id)
    assert len(executions) == len(orders)
    assert {e.worker_id for e in executions} == {"runner-0", "runner-1"}  # both really worked
    messages = fake_whatsapp.messages
    assert len(messages) == len(orders) == fake_whatsapp.requests  # not even a deduplicated repeat
    assert len({m["idempotency_key"] for m in messages}) == len(orders)
    assert len(db.tasks()) == len(orders)
    assert all(db.get(Order, o).stage_id == shop.stages["Despachado"] for o in orders)
