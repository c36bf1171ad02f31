"""From a recorded robot result (domain.batches.results) to the automation's effects: the trigger this project
serves."""

from __future__ import annotations

from cryptography.fernet import Fernet

from domain.automations.rules import save_automation
from domain.batches import jobs
from domain.batches.dispatch import build_dispatch_request, hash_callback_secret
from domain.batches.results import ItemResult, record_item_result
from domain.models import Order, RobotJobItem
from sample_data.seed import seed_demo


def test_recorded_success_moves_the_order_and_messages_the_customer_once(uow, drain, db, fake_whatsapp):
    key = Fernet.generate_key().decode()
    with uow() as tx:
        demo = seed_demo(tx.session, credentials_key=key, orders=None)
        automation = save_automation(
            tx.session,
            workspace_id=demo.workspace_id,
            data={
                "name": "Despacho confirmado",
                "trigger_type": "robot.coord.completed",
                "trigger_config": {"pipeline_id": demo.pipeline_id},
                "actions": [
                    {"type": "change_stage", "stage_id": demo.stage_ids["Despachado"]},
                    {
                        "type": "send_whatsapp_template",
                        "template_name": "pedido_despachado",
                        "parameters": ["{{contacto.nombre}}", "{{orden.tracking_number}}", "{{orden.total_formato}}"],
                    },
                ],
            },
        )
        created = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids[:2])
        jobs.start_job(tx.session, created.job.id, flow_run_id="flow-run-1")
        jobs.claim_dispatch(tx.session, created.job.id, callback_secret_hash=hash_callback_secret("s"))
        request = build_dispatch_request(
            tx.session, created.job.id, callback_url="http://127.0.0.1/cb", callback_secret="s", credentials_key=key
        )
        tx.commit()
    item_id = request["orders"][0]["itemId"]
    for _ in range(2):  # the robot's fatal path re-reports: the first terminal result wins, no second trigger
        with uow() as tx:
            record_item_result(tx.session, ItemResult(item_id=item_id, status="success", tracking_number="10107"))
            tx.commit()

    drain()

    order_id = db.get(RobotJobItem, item_id).order_id
    assert db.get(Order, order_id).stage_id == demo.stage_ids["Despachado"]
    [message] = fake_whatsapp.messages
    assert message["to"] == "573133477968"
    assert [p["text"] for p in message["template"]["components"][0]["parameters"]] == [
        "Elena Beltrán",
        "10107",
        "$139.900",
    ]
    [execution] = db.executions(automation.id)
    assert execution.status == "succeeded" and execution.order_id == order_id
    assert db.undelivered() == []
