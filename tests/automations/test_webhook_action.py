"""The webhook action: JSON POST with the rendered message, and a guard that refuses loopback/private addresses
before connecting unless settings allow them. Traffic only ever goes to loopback here."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from automations.webhook_action import WebhookTargetRefused, check_target


class Receiver:
    """A loopback HTTP server that records POSTs (a stand-in for a Slack incoming webhook)."""

    def __init__(self):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.5/hook",
        "https://10.255.1.2:8443/x",
        "http://192.168.1.20/",
        "http://172.16.4.4/",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "http://[::1]:9000/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:9000/",
        "http://2130706433/",  # 127.0.0.1 as one number
    ],
)
def test_guard_refuses_private_and_loopback_addresses(url):
    with pytest.raises(WebhookTargetRefused):
        check_target(url, allow_private=False)


def test_guard_allows_public_addresses_and_opt_in_private_ones():
    check_target("https://8.8.8.8/hook", allow_private=False)  # only checked, never called
    check_target("http://10.0.0.5/hook", allow_private=True)
    with pytest.raises(WebhookTargetRefused):
        check_target("ftp://8.8.8.8/", allow_private=True)


def webhook_automation(automation, url):
    return automation(
        trigger_type="robot.coord.completed",
        actions=[
            {
                "type": "webhook",
                "url": url,
                "message": "Pedido {{orden.nombre}} despachado, guía {{orden.tracking_number}}",
            },
            {"type": "create_task", "title": "después del webhook"},
        ],
    )


def test_runner_refuses_loopback_webhook_unless_allowed(
    shop, make_order, robot_completed, automation, drain, db, receiver, settings
):
    automation_id = webhook_automation(automation, receiver.url)
    robot_completed(make_order(), "C-1")

    drain()

    [execution] = db.executions(automation_id)
    runs = db.runs(execution.id)
    assert execution.status == "failed"
    assert [r.status for r in runs] == ["failed", "skipped"]
    assert "privada o local" in runs[0].error
    assert receiver.requests == []  # refused before connecting

    allowed = settings.model_copy(update={"webhook_action_allow_private": True})
    robot_completed(make_order(), "C-2")
    drain(settings_=allowed)

    [request] = receiver.requests
    assert request["json"] == {"text": "Pedido Pedido 1042 despachado, guía C-2"}
    assert request["headers"]["Idempotency-Key"].endswith(f":{automation_id}:0")
    assert sorted(e.status for e in db.executions(automation_id)) == ["failed", "succeeded"]


def test_runner_refuses_private_network_webhook_without_connecting(
    shop, make_order, robot_completed, automation, drain, db
):
    automation_id = webhook_automation(automation, "http://10.0.0.5:9/hook")
    robot_completed(make_order(), "C-1")
    drain()
    [execution] = db.executions(automation_id)
    run = db.runs(execution.id)[0]
    assert run.status == "failed" and "10.0.0.5" in run.error and "privada o local" in run.error
    assert run.duration_ms < 1000  # the guard answered; no 10 s connect timeout was waited for
