"""Fixtures for the simulator tests: a real simulator and a tiny real callback receiver, both on loopback."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from simulator.server import start_simulator


@dataclass
class Received:
    headers: list[tuple[str, str]]
    raw: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.raw.decode("utf-8"))

    @property
    def header_map(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers}


@dataclass
class Receiver:
    """Records every POST (headers and raw body) and answers `status`."""

    url: str = ""
    status: int = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict]:
        with self.lock:
            return [r.json for r in self.received]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} callbacks, got {len(self.received)}")


@pytest.fixture
def receiver():
    recorder = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with recorder.lock:
                recorder.received.append(Received(list(self.headers.items()), raw))
            self.send_response(recorder.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/robot-callback"
    yield recorder
    server.shutdown()
    server.server_close()


@pytest.fixture
def simulator():
    handle = start_simulator(delay=0.01)
    yield handle
    handle.stop()


def pedido(n: int, **overrides) -> dict:
    data = {
        "identificacion": "1053000000",
        "nombres": "Elena",
        "apellidos": "Beltrán",
        "direccion": "calle 49f",
        "ciudad": "MANIZALES (CDAS)",
        "departamento": "CDAS",
        "celular": "3133477968",
        "email": "e@example.com",
        "referencia": f"REF-{n}",
        "unidades": 1,
        "totalConIva": 139900,
        "valorDeclarado": 55000,
        "esRecaudoContraentrega": True,
        "peso": 0.08,
        "alto": 5,
        "largo": 5,
        "ancho": 10,
    }
    data.update(overrides)
    return data


def make_batch(
    callback_url: str, count: int = 2, *, workspace: str = "ws-1", secret: str | None = "s3cret", **per_order
) -> dict:
    """A valid dispatch body; per_order maps an order index to pedidoInput overrides."""
    body = {
        "workspaceId": workspace,
        "credentials": {"username": "portal-user", "password": "portal-pass-XYZ"},
        "callbackUrl": callback_url,
        "jobId": f"job-{uuid.uuid4().hex[:8]}",
        "orders": [
            {
                "itemId": f"item-{uuid.uuid4().hex}",
                "orderId": f"order-{n}",
                "pedidoInput": pedido(n, **per_order.get(f"o{n}", {})),
            }
            for n in range(count)
        ],
    }
    if secret is not None:
        body["callbackSecret"] = secret
    return body


def wait_idle(handle, timeout: float = 10.0) -> dict:
    """Wait until no batch is running; return the state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = handle.state()
        if all(batch["state"] == "done" for batch in state["batches"]):
            return state
        time.sleep(0.01)
    raise AssertionError("simulator still busy")
