"""relay's Prefect calls against a small loopback Prefect API: one client per process (reused, rebuilt after an
error, basic auth sent), and the progress artifact updated by id (one call per publication, looked up again when gone,
nothing sent for a state already published)."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prefect.client.schemas.objects import Artifact, ArtifactCollection
from prefect.settings import (
    PREFECT_API_AUTH_STRING,
    PREFECT_API_REQUEST_TIMEOUT,
    PREFECT_API_URL,
    PREFECT_CLIENT_MAX_RETRIES,
    get_current_settings,
    temporary_settings,
)
from sqlmodel import select

from domain.batches.results import ItemResult, record_item_result
from domain.db import UnitOfWork
from domain.models import RobotJob, RobotJobItem
from relay import progress, run_log
from relay.prefect_api import fail_fast_settings, prefect_client
from relay.run_log import log_in_run, send_run_logs


class FakePrefectApi:
    """The artifact and log endpoints relay uses; records (method, path, Authorization, connection port) per call."""

    def __init__(self):
        self.calls: list[tuple[str, str, str | None, int]] = []
        self.artifacts: dict[str, dict] = {}  # id -> artifact json
        self.fail_next: int | None = None  # status of the next answer
        self.log_failures: list[int] = []  # statuses of the next answers to POST /logs/, in order
        self.logs: list[dict] = []  # every log line received
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, body=None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                path = self.path.split("?")[0].removeprefix("/api")
                api.calls.append((self.command, path, self.headers.get("Authorization"), self.client_address[1]))
                if api.fail_next:
                    status, api.fail_next = api.fail_next, None
                    return self._answer(status, {"detail": "no"})
                if path == "/artifacts/latest/filter":
                    key = body["artifacts"]["key"]["any_"][0]
                    found = [a for a in api.artifacts.values() if a["key"] == key]
                    return self._answer(
                        200,
                        [
                            ArtifactCollection(id=uuid.uuid4(), key=key, latest_id=found[-1]["id"]).model_dump(
                                mode="json"
                            )
                        ]
                        if found
                        else [],
                    )
                if path == "/artifacts/" and self.command == "POST":
                    artifact = Artifact(**body).model_dump(mode="json")
                    api.artifacts[artifact["id"]] = artifact
                    return self._answer(201, artifact)
                if path.startswith("/artifacts/") and self.command == "PATCH":
                    artifact = api.artifacts.get(path.split("/")[2])
                    if artifact is None:
                        return self._answer(404, {"detail": "Artifact not found."})
                    artifact.update(body)
                    return self._answer(204)
                if path == "/logs/":
                    if api.log_failures:
                        return self._answer(api.log_failures.pop(0), {"detail": "busy"})
                    api.logs.extend(body)
                    return self._answer(201)
                return self._answer(404, {"detail": "Not Found"})

            do_GET = do_POST = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, method, path):
        """Calls of `method` to `path` (PATCH: to any artifact under it)."""
        return [
            c for c in self.calls if c[0] == method and (c[1] == path or method == "PATCH" and c[1].startswith(path))
        ]


@pytest.fixture
def fake_api():
    api = FakePrefectApi()
    with temporary_settings(updates={PREFECT_API_URL: api.url, PREFECT_API_AUTH_STRING: "admin:s3cret"}):
        yield api
    api.server.shutdown()
    api.server.server_close()


def _progress(api):
    (artifact,) = api.artifacts.values()
    return artifact["data"], artifact["description"]


def test_one_client_per_process_reused_rebuilt_after_a_server_error_with_basic_auth(fake_api):
    run = str(uuid.uuid4())
    assert send_run_logs(run, [(20, "uno")]) and send_run_logs(run, [(20, "dos")])
    with prefect_client(timeout_s=5.0) as first, prefect_client(timeout_s=5.0) as again:
        assert first is again
    fake_api.fail_next = 500
    assert send_run_logs(run, [(20, "tres")])  # the 500 dropped the client; the second attempt used a new one
    with prefect_client(timeout_s=5.0) as after:
        assert after is not first
    logs = fake_api.of("POST", "/logs/")
    token = base64.b64encode(b"admin:s3cret").decode()
    assert {auth for _, _, auth, _ in logs} == {f"Basic {token}"}
    ports = [port for *_, port in logs]
    assert len(ports) == 4 and ports[0] == ports[1] == ports[2]  # kept alive: one connection until the 500
    assert ports[3] != ports[0]  # the rebuilt client opened its own


class _RunLogger(logging.LoggerAdapter):
    """A run's logger as Prefect builds it (its ids in `extra`), keeping the records instead of queueing them."""

    def __init__(self, flow_run_id: str):
        super().__init__(logging.getLogger("test.run"), {"flow_run_id": flow_run_id, "task_run_id": "t"})
        self.records: list[tuple[str, dict]] = []

    def log(self, level, msg, *args, **kwargs):
        self.records.append((msg, {**self.extra, **(kwargs.get("extra") or {})}))


def test_a_line_for_another_run_is_sent_at_once_through_a_busy_server(fake_api, monkeypatch):
    """The reconciler writing in a job's run: sent in its own call, retried past 503s, not left to the log worker;
    its own run's console keeps it (not sent to the API from there). A line for the current run stays on its logger."""
    current, other = str(uuid.uuid4()), str(uuid.uuid4())
    run_logger = _RunLogger(current)
    monkeypatch.setattr(run_log, "_current_run_logger", lambda: run_logger)
    monkeypatch.setattr(run_log, "RETRY_PAUSE_S", 0.01)
    fake_api.log_failures = [503, 503, 503]

    log_in_run(logging.getLogger("flows.reconcile"), logging.INFO, "Lote x: se reanuda", flow_run_id=other)

    assert [(line["flow_run_id"], line["message"], line["name"]) for line in fake_api.logs] == [
        (other, "Lote x: se reanuda", "flows.reconcile")
    ]
    assert len(fake_api.of("POST", "/logs/")) == 4  # three busy answers, then taken
    assert run_logger.records == [
        ("Lote x: se reanuda", {"flow_run_id": current, "task_run_id": "t", "send_to_api": False})
    ]

    log_in_run(logging.getLogger("flows.reconcile"), logging.INFO, "Lote x: aquí", flow_run_id=current)
    assert run_logger.records[-1] == ("Lote x: aquí", {"flow_run_id": current, "task_run_id": "t"})
    assert len(fake_api.logs) == 1


def test_fail_fast_settings_are_the_base_with_no_retries_and_the_timeout():
    """Copied section by section (no re-read of env, .env and profiles), yet the same as Prefect's own update."""
    base = get_current_settings()
    ours = fail_fast_settings(base, 7.5)
    assert (ours.client.max_retries, ours.api.request_timeout) == (0, 7.5)
    assert (base.client.max_retries, base.api.request_timeout) != (0, 7.5)  # the base is left as it was
    prefects = base.copy_with_update(updates={PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: 7.5})
    assert ours.model_dump() == prefects.model_dump()


def test_a_client_is_not_shared_across_a_fork(fake_api):
    with prefect_client() as parent:
        pass
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child answers whether it got the parent's client
        with prefect_client() as child:
            os.write(write, b"same" if child is parent else b"new")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 10) == b"new"


def test_progress_updates_by_id_and_skips_a_state_already_published(fake_api, engine, started_job):
    progress._published.clear()
    assert progress.publish_progress(engine, started_job) == 0.0  # created: 1 lookup, 1 create
    assert progress.publish_progress(engine, started_job) == 0.0  # id looked up once: 1 lookup + 1 update
    assert progress.publish_progress(engine, started_job) == 0.0  # same state: no call at all
    with UnitOfWork(engine) as uow:
        item_id = uow.session.exec(select(RobotJobItem.id).where(RobotJobItem.job_id == started_job)).first()
        record_item_result(uow.session, ItemResult(item_id=item_id, status="success"), job_id=started_job)
        uow.commit()
    percent = progress.publish_progress(engine, started_job)  # by id: one PATCH, no lookup
    assert percent > 0
    assert _progress(fake_api) == (percent, f"Pedidos procesados: 1 de {round(100 / percent)} (1 creados, 0 con error)")
    assert (
        len(fake_api.of("POST", "/artifacts/latest/filter")),
        len(fake_api.of("POST", "/artifacts/")),
        len(fake_api.of("PATCH", "/artifacts/")),
    ) == (2, 1, 2)


def test_progress_says_whether_it_wrote_the_artifact(fake_api, engine, started_job):
    """What a progress holder renews its claim on (relay/progress.py ProgressPublisher): a write, not a failure."""
    progress._published.clear()
    assert progress.publish_progress_changed(engine, started_job)  # created
    assert progress.publish_progress_changed(engine, started_job)  # looked up and updated: the id is known now
    assert not progress.publish_progress_changed(engine, started_job)  # the same state: nothing sent
    with UnitOfWork(engine) as uow:
        item_id = uow.session.exec(select(RobotJobItem.id).where(RobotJobItem.job_id == started_job)).first()
        record_item_result(uow.session, ItemResult(item_id=item_id, status="success"), job_id=started_job)
        uow.commit()
    fake_api.fail_next = 500
    assert not progress.publish_progress_changed(engine, started_job)  # a new state, but Prefect failed
    assert progress.publish_progress_changed(engine, started_job)  # the next read writes it


def test_a_holders_written_progress_is_also_the_counts_line_in_the_jobs_run(fake_api, engine, started_job):
    """Callbacks that recorded only successes queue no run-log flush (webhook/app.py): the counts reach the run's
    logs with the holder's publication, once per state written, but for the final one (the finishing callback's
    resume logs it); the flow's own publication logs nothing."""
    run_id = str(uuid.uuid4())
    with UnitOfWork(engine) as uow:
        the_job = uow.session.get(RobotJob, started_job)
        the_job.flow_run_id, total = run_id, the_job.total_items
        uow.commit()
    progress._published.clear()
    progress.publish_progress(engine, started_job)  # the flow's, after the dispatch: the artifact, no line
    assert fake_api.logs == []
    with UnitOfWork(engine) as uow:
        item_id = uow.session.exec(select(RobotJobItem.id).where(RobotJobItem.job_id == started_job)).first()
        record_item_result(uow.session, ItemResult(item_id=item_id, status="success"), job_id=started_job)
        uow.commit()
    assert progress.publish_progress_changed(engine, started_job)
    assert not progress.publish_progress_changed(engine, started_job)  # the same state: no second line
    line = f"Lote {started_job}: resultados recibidos: 1 de {total} (1 creados, 0 con error)"
    assert [(sent["flow_run_id"], sent["message"], sent["name"]) for sent in fake_api.logs] == [
        (run_id, line, "robotjobs.webhook")
    ]
    with UnitOfWork(engine) as uow:  # every other item: the job is done
        for item_id in uow.session.exec(
            select(RobotJobItem.id).where(RobotJobItem.job_id == started_job, RobotJobItem.status == "pending")
        ).all():
            record_item_result(uow.session, ItemResult(item_id=item_id, status="success"), job_id=started_job)
        uow.commit()
    assert progress.publish_progress_changed(engine, started_job)  # the artifact says 100 %
    assert len(fake_api.logs) == 1  # the final counts are the finishing callback's line (AfterCommitWork.finish)


def test_progress_emits_no_prefect_event(fake_api, engine, started_job, monkeypatch):
    """Prefect's own `create_artifact`/`update_artifact` emit an event per call (and start an events worker thread
    in the webhook worker for it); the progress artifact is written without."""
    import prefect.events.utilities

    emitted: list[str] = []
    monkeypatch.setattr(prefect.events.utilities, "emit_event", lambda event, **_: emitted.append(event))
    progress._published.clear()
    progress.publish_progress(engine, started_job)  # created
    progress._published.clear()
    progress._published[started_job] = (uuid.UUID(next(iter(fake_api.artifacts))), None)  # by id
    progress.publish_progress(engine, started_job)
    assert len(fake_api.of("POST", "/artifacts/")) == 1 and len(fake_api.of("PATCH", "/artifacts/")) == 1
    assert emitted == []


def test_progress_looks_the_artifact_up_again_when_its_id_is_gone(fake_api, engine, started_job):
    progress._published.clear()
    progress.publish_progress(engine, started_job)
    progress.publish_progress(engine, started_job)  # remembers the id
    fake_api.artifacts.clear()  # deleted in the UI
    progress._published[started_job] = (progress._published[started_job][0], None)  # a state to publish again
    assert progress.publish_progress(engine, started_job) == 0.0  # 404 on the id: lookup, then created anew
    assert len(fake_api.artifacts) == 1 and len(fake_api.of("POST", "/artifacts/")) == 2
