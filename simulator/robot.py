"""The simulated robot's behaviour behind `POST /api/crear-pedidos-batch`: validation, the jobId cache, the
per-workspace lock, sequential background processing and the record that `GET /_sim/state` exposes.

Never stored or exposed: the portal password and the callbackSecret (only the portal username is kept).
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

from simulator import callbacks
from simulator.callbacks import compact_json
from simulator.scenarios import (
    OrderScenario,
    Report,
    Scenario,
    SimConfig,
    empty_city_result,
    fatal_result,
    order_result,
    order_scenario,
)

log = logging.getLogger("simulator.robot")

REQUIRED_FIELDS = ("workspaceId", "credentials", "callbackUrl", "jobId", "orders")
CREDENTIAL_FIELDS = ("username", "password")
ORDER_FIELDS = ("itemId", "orderId", "pedidoInput")
# `ciudad` is absent on purpose: an empty or missing city is a validation callback, not a 400.
PEDIDO_FIELDS = (
    "identificacion",
    "nombres",
    "apellidos",
    "direccion",
    "departamento",
    "celular",
    "email",
    "referencia",
    "unidades",
    "totalConIva",
    "valorDeclarado",
    "esRecaudoContraentrega",
    "peso",
    "alto",
    "largo",
    "ancho",
)
REPORT_MAX_RESULTS = 5000  # webhook/schemas.py: a batch report carries at most 5,000 results
BUSY = "Ya hay un batch en proceso para este workspace"
ALL_CITIES_INVALID = "Todos los pedidos tienen ciudad inválida"
ACCEPTED = "Batch aceptado, procesando..."
EARLY_WAIT_S = 60.0


class MalformedBody(Exception):
    """The body crashes the robot's handler (Express answers its HTML error page with 500)."""


class MissingField(Exception):
    """A required field is absent (400 `Campo requerido: <field>`)."""


@dataclass
class Answer:
    """An HTTP answer of the simulated robot (`drop`: reset the connection instead of answering)."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    drop: bool = False

    @classmethod
    def json(cls, status: int, data: dict) -> Answer:
        return cls(status, compact_json(data).encode("utf-8"))

    @classmethod
    def html_error(cls, message: str) -> Answer:
        page = (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n'
            f"<body>\n<pre>{html.escape(message)}</pre>\n</body>\n</html>\n"
        )
        return cls(500, page.encode("utf-8"), "text/html; charset=utf-8")


def _missing(value: object) -> bool:
    return value is None or value == "" or value == []


def validate_dispatch(body: object) -> None:
    """Check the dispatch as the robot does; raise MalformedBody or MissingField."""
    if not isinstance(body, dict):
        raise MalformedBody("TypeError: Cannot read properties of undefined (reading 'workspaceId')")
    for name in REQUIRED_FIELDS:
        if _missing(body.get(name)):
            raise MissingField(name)
    if not isinstance(body["credentials"], dict) or not isinstance(body["orders"], list):
        raise MalformedBody("TypeError: body.orders.filter is not a function")
    for name in CREDENTIAL_FIELDS:
        if _missing(body["credentials"].get(name)):
            raise MissingField(f"credentials.{name}")
    for order in body["orders"]:
        if not isinstance(order, dict) or not isinstance(order.get("pedidoInput") or {}, dict):
            raise MalformedBody("TypeError: Cannot read properties of null (reading 'pedidoInput')")
        for name in ORDER_FIELDS:
            if _missing(order.get(name)):
                raise MissingField(name)
        for name in PEDIDO_FIELDS:
            if order["pedidoInput"].get(name) is None:  # "" and 0 are legitimate values (e.g. apellidos)
                raise MissingField(name)


def has_city(order: dict) -> bool:
    return bool(str(order["pedidoInput"].get("ciudad") or "").strip())


class SimRobot:
    """The robot's in-memory state and behaviour; one instance per simulator server."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._generation = 0
        self.reset()

    def release(self) -> None:
        """Let every held order (scenario `held`) report its result now."""
        self._released.set()

    def reset(self) -> None:
        """Forget every batch, the jobId cache and the records (the configuration stays); batches still held are
        dropped without calling back."""
        with self._lock:
            self._generation += 1
            self._released.set()  # wake the held batches of the old generation: they see it changed and stop
            self._released = threading.Event()
            self._accepted: dict[str, dict] = {}
            self._busy: set[str] = set()
            self.posts: Counter[str] = Counter()
            self.dispatches: list[dict] = []
            self.batches: dict[str, dict] = {}
            self.callbacks: list[dict] = []

    def configure(self, changes: dict) -> SimConfig:
        """Merge a partial configuration (raises pydantic.ValidationError); applies to later dispatches."""
        with self._lock:
            self.config = SimConfig.model_validate({**self.config.model_dump(), **changes})
            return self.config

    def stop(self) -> None:
        self._stopping.set()

    def state(self) -> dict:
        with self._lock:
            lost = [c for c in self.callbacks if c["httpStatus"] is None or not 200 <= c["httpStatus"] < 300]
            return {
                "config": self.config.public(),
                "posts": dict(self.posts),
                "dispatches": list(self.dispatches),
                "batches": [dict(batch) for batch in self.batches.values()],
                "callbacks": list(self.callbacks),
                "callbacksSent": len(self.callbacks),
                "callbacksLost": len(lost),
                "busyWorkspaces": sorted(self._busy),
            }

    # -- dispatch -------------------------------------------------------------------------------------------

    def dispatch(self, raw: bytes) -> Answer:
        """Answer one `POST /api/crear-pedidos-batch`, starting the batch when accepted."""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._record(None, Answer.html_error(f"SyntaxError: {exc}"))
        job_id = body.get("jobId") if isinstance(body, dict) else None
        try:
            validate_dispatch(body)
        except MalformedBody as exc:
            return self._record(body, Answer.html_error(str(exc)))
        except MissingField as exc:
            return self._record(body, Answer.json(400, {"success": False, "error": f"Campo requerido: {exc}"}))
        config = self.config
        if config.dispatch_status is not None:
            return self._record(body, self._forced_answer(config.dispatch_status))

        workspace = body["workspaceId"]
        with_city = [order for order in body["orders"] if has_city(order)]
        start = False
        with self._lock:
            if job_id in self._accepted:
                answer = Answer.json(200, self._accepted[job_id])
            elif workspace in self._busy:
                answer = Answer.json(409, {"success": False, "error": BUSY})
            elif not with_city:
                answer = Answer.json(400, {"success": False, "error": ALL_CITIES_INVALID})
            else:
                answer = Answer.json(200, {"success": True, "jobId": job_id, "message": ACCEPTED})
                self._accepted[job_id] = json.loads(answer.body)
                start = True
                self._busy.add(workspace)
                self.batches[job_id] = {
                    "jobId": job_id,
                    "workspaceId": workspace,
                    "username": body["credentials"]["username"],
                    "orders": len(body["orders"]),
                    "state": "running",
                }
        self._record(body, answer)
        if answer.status == 400:  # all cities empty: the robot still reports each order
            for order in body["orders"]:
                self._deliver(body, empty_city_result(order["itemId"]), config)
        elif start:
            self._start(body, config)
            # A cold start: the robot works while its answer is late, maybe later than the caller waits.
            if config.answer_delay:
                self._stopping.wait(config.answer_delay)
            if config.drop_answer:
                return Answer(answer.status, answer.body, drop=True)
        return answer

    def _forced_answer(self, status: int) -> Answer:
        if status >= 500:
            return Answer(status, Answer.html_error("Error: Internal Server Error").body, "text/html; charset=utf-8")
        if status == 409:
            return Answer.json(409, {"success": False, "error": BUSY})
        return Answer.json(status, {"success": False, "error": f"Error simulado (HTTP {status})"})

    def _record(self, body: object, answer: Answer) -> Answer:
        job_id = body.get("jobId") if isinstance(body, dict) else None
        orders = body.get("orders") if isinstance(body, dict) else None
        with self._lock:
            if job_id is not None:
                self.posts[str(job_id)] += 1
            self.dispatches.append(
                {
                    "jobId": job_id,
                    "workspaceId": body.get("workspaceId") if isinstance(body, dict) else None,
                    "orders": len(orders) if isinstance(orders, list) else None,
                    "status": answer.status,
                    "at": time.time(),  # when the robot received it (latency benchmark: click → robot)
                }
            )
        return answer

    # -- processing -----------------------------------------------------------------------------------------

    def _start(self, body: dict, config: SimConfig) -> None:
        early = threading.Event()
        if config.early_callbacks == 0 or config.report == Report.batch:
            early.set()
        worker = threading.Thread(
            target=self._process, args=(body, config, early), name=f"sim-batch-{body['jobId']}", daemon=True
        )
        worker.start()
        # The production robot sometimes calls back before its 200 reaches the dispatcher (robot-protocol.md §2).
        early.wait(EARLY_WAIT_S)

    def _process(self, body: dict, config: SimConfig, early: threading.Event) -> None:
        """Process the batch's orders one by one, calling back after each, then the signed report if asked."""
        job_id, orders = body["jobId"], body["orders"]
        with self._lock:
            generation, released = self._generation, self._released
        first: dict[str, dict] = {}  # the first result per item: what the signed batch report carries
        sent = 0

        def emit(result: dict, times: int = 1) -> None:
            nonlocal sent
            first.setdefault(result["itemId"], result)
            if config.report == Report.batch:
                return
            for _ in range(2 if config.duplicate_callbacks else times):
                self._deliver(body, result, config)
                sent += 1
                if sent >= config.early_callbacks:
                    early.set()

        try:
            for order in orders:
                if not has_city(order):
                    emit(empty_city_result(order["itemId"]))
            successes = 0
            for order in filter(has_city, orders):
                if config.scenario == Scenario.fatal and successes >= config.fatal_after:
                    break
                if self._stopping.wait(config.delay):
                    return
                scenario = order_scenario(config, order)
                if scenario == OrderScenario.held:
                    while not released.wait(0.1):
                        if self._stopping.is_set():
                            return
                    if generation != self._generation:  # reset meanwhile: this batch belongs to an old test
                        return
                result = order_result(scenario, order["itemId"])
                if result is None:
                    continue
                successes += result["status"] == "success"
                emit(result, times=2 if scenario == OrderScenario.duplicate else 1)
            if config.scenario == Scenario.fatal:  # the robot's catch-all re-reports the whole batch
                for order in orders:
                    emit(fatal_result(order["itemId"]))
            if config.report in (Report.batch, Report.both) and not self._stopping.is_set():
                results = list(first.values())
                for start in range(0, len(results), REPORT_MAX_RESULTS):  # the webhook takes ≤ 5,000 per report
                    delivery = callbacks.send_batch_report(
                        body["callbackUrl"],
                        job_id,
                        results[start : start + REPORT_MAX_RESULTS],
                        secret=config.webhook_secret or "",
                        timeout=config.callback_timeout,
                    )
                    self._log_callback(job_id, "batch", None, delivery)
        except Exception:  # a crashed worker must still free the workspace
            log.exception("batch %s crashed", job_id)
        finally:
            early.set()
            with self._lock:
                self._busy.discard(body["workspaceId"])
                if job_id in self.batches:  # not forgotten by a reset meanwhile
                    self.batches[job_id]["state"] = "done"

    def _deliver(self, body: dict, result: dict, config: SimConfig) -> None:
        delivery = callbacks.send_order_result(
            body["callbackUrl"],
            result,
            callback_secret=body.get("callbackSecret"),
            timeout=config.callback_timeout,
        )
        self._log_callback(body["jobId"], "order", result, delivery)

    def _log_callback(self, job_id: str, kind: str, result: dict | None, delivery: callbacks.Delivery) -> None:
        with self._lock:
            self.callbacks.append(
                {
                    "jobId": job_id,
                    "kind": kind,
                    "itemId": result["itemId"] if result else None,
                    "status": result["status"] if result else None,
                    "httpStatus": delivery.status,
                    "error": delivery.error,
                    "at": time.time(),  # once the webhook answered (latency benchmark: last result → Completed)
                }
            )
