"""A fake WhatsApp provider on loopback, for tests and the demo: records messages, honours Idempotency-Key, and
fails or stalls on demand.

Run it: `python -m automations.fake_whatsapp --port 8200 [--token T]`, or in-process:
`with FakeWhatsApp() as fake: fake.base_url, fake.messages, fake.fail_next(1, status=500)`.

HTTP API
- `POST /v1/messages` — the provider endpoint (see automations/whatsapp.py). A repeated `Idempotency-Key` returns
  the first answer with `Idempotent-Replayed: true` and records nothing new. Failed attempts are not remembered.
- `GET /_fake/messages` → `{"messages": [...], "requests": <POSTs received>, "replays": <answered from a key>}`
- `POST /_fake/fail` `{"status": 500, "count": 1}` — the next `count` sends fail (`count: null` = until cleared;
  `count: 0` clears).
- `POST /_fake/delay` `{"seconds": 2.5}` — record, then wait this long before answering (to kill a caller mid-call).
- `POST /_fake/reset` — forget messages, keys, failures and delay.  `GET /healthz` → `{"ok": true}`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _State:
    def __init__(self, token: str | None):
        self.token = token
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.responses_by_key: dict[str, dict[str, Any]] = {}
        self.requests = 0
        self.replays = 0
        self.fail_status = 500
        self.fail_remaining: int | None = 0  # None: fail until cleared
        self.fail_retry_after: int | None = None  # seconds sent as Retry-After with each failure
        self.delay_seconds = 0.0


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeWhatsApp/1.0"
    state: _State  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the caller died waiting (the crash tests do this)
            pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def do_GET(self) -> None:  # http.server's naming
        state = self.state
        if self.path == "/healthz":
            return self._json(200, {"ok": True})
        if self.path == "/_fake/messages":
            with state.lock:
                return self._json(
                    200, {"messages": list(state.messages), "requests": state.requests, "replays": state.replays}
                )
        self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        state = self.state
        try:
            body = self._body()
        except ValueError:
            return self._json(400, {"error": {"message": "invalid JSON"}})
        if self.path == "/v1/messages":
            return self._send_message(body)
        if self.path == "/_fake/fail":
            with state.lock:
                state.fail_status = int(body.get("status", 500))
                state.fail_remaining = body.get("count", 1)
                state.fail_retry_after = body.get("retry_after")
            return self._json(200, {"ok": True})
        if self.path == "/_fake/delay":
            with state.lock:
                state.delay_seconds = float(body.get("seconds", 0))
            return self._json(200, {"ok": True})
        if self.path == "/_fake/reset":
            with state.lock:
                state.reset()
            return self._json(200, {"ok": True})
        self._json(404, {"error": "not found"})

    def _send_message(self, body: dict[str, Any]) -> None:
        state = self.state
        if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
            return self._json(401, {"error": {"message": "invalid token"}})
        key = self.headers.get("Idempotency-Key")
        with state.lock:
            state.requests += 1
            if key and key in state.responses_by_key:
                state.replays += 1
                return self._json(200, state.responses_by_key[key], {"Idempotent-Replayed": "true"})
            if state.fail_remaining is None or state.fail_remaining > 0:
                if state.fail_remaining:
                    state.fail_remaining -= 1
                extra = {"Retry-After": str(state.fail_retry_after)} if state.fail_retry_after is not None else None
                return self._json(state.fail_status, {"error": {"message": "fake provider failure"}}, extra)
            if not body.get("to") or body.get("type") not in ("template", "text"):
                return self._json(400, {"error": {"message": "'to' and type template|text are required"}})
            message_id = f"wamid.{secrets.token_hex(12)}"
            state.messages.append(
                {
                    "id": message_id,
                    "idempotency_key": key,
                    "to": body["to"],
                    "type": body["type"],
                    "template": body.get("template"),
                    "text": (body.get("text") or {}).get("body"),
                    "received_at": datetime.now(UTC).isoformat(),
                }
            )
            response = {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": message_id}],
            }
            if key:
                state.responses_by_key[key] = response
            delay = state.delay_seconds
        if delay:
            time.sleep(delay)  # the message is recorded: a caller killed now has sent it without knowing
        self._json(200, response)


class FakeWhatsApp:
    """The fake provider in a background thread of this process; a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self._state = _State(token)
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeWhatsApp:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-whatsapp", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeWhatsApp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return list(self._state.messages)

    @property
    def requests(self) -> int:
        return self._state.requests

    @property
    def replays(self) -> int:
        return self._state.replays

    def fail_next(self, count: int | None = 1, *, status: int = 500, retry_after: int | None = None) -> None:
        with self._state.lock:
            self._state.fail_status = status
            self._state.fail_remaining = count
            self._state.fail_retry_after = retry_after

    def set_delay(self, seconds: float) -> None:
        with self._state.lock:
            self._state.delay_seconds = seconds

    def reset(self) -> None:
        with self._state.lock:
            self._state.reset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake WhatsApp provider on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--token", default=None, help="Require 'Authorization: Bearer <token>'")
    args = parser.parse_args(argv)
    fake = FakeWhatsApp(host=args.host, port=args.port, token=args.token)
    print(f"fake WhatsApp provider on {fake.base_url}", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()


if __name__ == "__main__":
    main()
