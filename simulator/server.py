"""The simulator's HTTP surface (stdlib ThreadingHTTPServer on loopback) and `start_simulator` for tests.

Routes: `POST /api/crear-pedidos-batch` (the robot protocol), `GET /_sim/state`, `GET|POST /_sim/config`
(POST merges a partial JSON object of `SimConfig` fields), `POST /_sim/release` (held orders report now) and
`POST /_sim/reset` (forget batches and records).
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import ValidationError

from simulator.robot import Answer, SimRobot
from simulator.scenarios import SimConfig

log = logging.getLogger("simulator.server")
DISPATCH_PATH = "/api/crear-pedidos-batch"


class _Handler(BaseHTTPRequestHandler):
    server: _SimServer
    server_version = "robot-simulator"

    def do_GET(self) -> None:
        robot = self.server.robot
        if self.path == "/_sim/state":
            self._send(Answer.json(200, robot.state()))
        elif self.path == "/_sim/config":
            self._send(Answer.json(200, robot.config.public()))
        else:
            self._send(Answer.json(404, {"success": False, "error": "Not found"}))

    def do_POST(self) -> None:
        robot = self.server.robot
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == DISPATCH_PATH:
            self._send(robot.dispatch(raw))
        elif self.path == "/_sim/config":
            try:
                changes = json.loads(raw or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                self._send(Answer.json(200, robot.configure(changes).public()))
            except (ValueError, ValidationError) as exc:  # pydantic's ValidationError is a ValueError
                self._send(Answer.json(400, {"success": False, "error": str(exc)}))
        elif self.path == "/_sim/release":
            robot.release()
            self._send(Answer.json(200, {"success": True}))
        elif self.path == "/_sim/reset":
            robot.reset()
            self._send(Answer.json(200, {"success": True}))
        else:
            self._send(Answer.json(404, {"success": False, "error": "Not found"}))

    def _send(self, answer: Answer) -> None:
        if answer.drop:  # a reset: RST instead of an answer (SO_LINGER 0)
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError as exc:  # the caller stopped waiting (its timeout came before this late answer)
            self.close_connection = True
            log.info("answer not delivered: %s", exc)

    def log_message(self, format: str, *args: object) -> None:  # request lines only; bodies hold credentials
        log.info("%s %s", self.address_string(), format % args)


class _SimServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], robot: SimRobot) -> None:
        self.robot = robot
        super().__init__(address, _Handler)


class SimulatorHandle:
    """A simulator running in a background thread: `.url`, `.robot`, `.configure()`, `.state()`, `.stop()`."""

    def __init__(self, server: _SimServer, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread
        self.robot = server.robot
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"

    def configure(self, **changes: object) -> SimConfig:
        return self.robot.configure(changes)

    def state(self) -> dict:
        return self.robot.state()

    def reset(self) -> None:
        self.robot.reset()

    def release(self) -> None:
        self.robot.release()

    def stop(self) -> None:
        self.robot.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_server(host: str = "127.0.0.1", port: int = 0, config: SimConfig | None = None) -> _SimServer:
    return _SimServer((host, port), SimRobot(config or SimConfig()))


def start_simulator(
    port: int = 0, *, host: str = "127.0.0.1", config: SimConfig | None = None, **config_fields: object
) -> SimulatorHandle:
    """Start a simulator in a daemon thread; `config_fields` are SimConfig fields (e.g. delay=0.05)."""
    if config_fields:
        config = SimConfig.model_validate({**(config or SimConfig()).model_dump(), **config_fields})
    server = make_server(host, port, config)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="robot-simulator", daemon=True
    )
    thread.start()
    return SimulatorHandle(server, thread)


def unused_loopback_url() -> str:
    """A loopback URL where nothing listens (the "robot unreachable" scenario)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
