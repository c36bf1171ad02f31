"""The proof of the durable inbox: PostgreSQL stopped for 20 s while robots report 200 per-order results through
gunicorn (4 workers). Every result is in the database afterwards, none twice, and no callback was answered 5xx.

PostgreSQL only by nature (a server of the test's own, `private_postgres`: never the machine's shared one); the
SQLite pass skips it (tests/webhook/test_replay.py covers an in-process outage on both databases).
Figures are printed at the end (run with -s to see them):
    ROBOTJOBS_TEST_DATABASE=postgresql+psycopg://... .venv/bin/python -m pytest -s tests/webhook/test_outage.py
"""

from __future__ import annotations

import json
import secrets
import statistics
import threading
import time
from collections import Counter
from datetime import datetime

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlmodel import select

from domain import outbox
from domain.batches import jobs
from domain.batches.dispatch import hash_callback_secret
from domain.db import UnitOfWork, make_engine
from domain.events import BATCH_COMPLETED, ROBOT_COORD_COMPLETED
from domain.migrate import upgrade
from domain.models import CallbackDeadLetter, RobotJobItem, WebhookReceipt
from sample_data.seed import DEMO_ORDERS, seed_demo
from tests.conftest import TEST_DATABASE
from tests.webhook.gunicorn_server import GunicornServer, free_port
from tests.webhook.helpers import CALLBACK, robot_body

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(TEST_DATABASE == "sqlite", reason="stops a PostgreSQL server: the PostgreSQL pass runs it"),
]

ROBOTS = 4
RESULTS_PER_ROBOT = 50  # 200 results in all
RE_REPORTED = 5  # per robot, at the end: the fatal path's error for orders already reported as success
SEND_INTERVAL_S = 0.7  # each robot's pace: ~35 s of sending, so the outage falls in the middle
OUTAGE_STARTS_S = 5
OUTAGE_S = 20
# Orders of the demo set the coverage check accepts (the others are refused before dispatch).
DISPATCHABLE = [order for n, order in enumerate(DEMO_ORDERS) if n not in (6, 8, 11, 12, 18)]


def _seed(url: str) -> list[dict]:
    engine = make_engine(url)
    batches = []
    try:
        for robot in range(ROBOTS):
            secret = secrets.token_urlsafe(32)
            with UnitOfWork(engine) as uow:
                demo = seed_demo(
                    uow.session,
                    credentials_key=Fernet.generate_key().decode(),
                    name=f"Tienda {robot}",
                    orders=(DISPATCHABLE * 2)[:RESULTS_PER_ROBOT],
                )
                job = jobs.create_robot_job(uow.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids).job
                jobs.start_job(uow.session, job.id, flow_run_id=f"run-{robot}")
                assert jobs.claim_dispatch(uow.session, job.id, callback_secret_hash=hash_callback_secret(secret))
                items = uow.session.exec(
                    select(RobotJobItem.id, RobotJobItem.status)
                    .where(RobotJobItem.job_id == job.id)
                    .order_by(RobotJobItem.created_at, RobotJobItem.id)
                ).all()
                uow.commit()
            assert [status for _, status in items] == ["pending"] * RESULTS_PER_ROBOT
            batches.append({"job_id": job.id, "secret": secret, "items": [item_id for item_id, _ in items]})
    finally:
        engine.dispose()
    return batches


def _results_of(batch: dict) -> list[dict]:
    """Every 5th order fails on the portal, the others succeed; then the fatal path re-reports the first successes."""
    results = []
    for n, item_id in enumerate(batch["items"]):
        if n % 5 == 4:
            results.append(
                {
                    "itemId": item_id,
                    "status": "error",
                    "errorType": "portal",
                    "errorMessage": "No se encontró el municipio",
                }
            )
        else:
            results.append({"itemId": item_id, "status": "success", "trackingNumber": f"76{n:04d}"})
    successes = [r["itemId"] for r in results if r["status"] == "success"][:RE_REPORTED]
    results += [
        {
            "itemId": item_id,
            "status": "error",
            "errorType": "unknown",
            "errorMessage": "Error fatal en el procesamiento del batch",
        }
        for item_id in successes
    ]
    return results


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def test_postgresql_down_for_20_s_while_robots_report(private_postgres, tmp_path):
    url = private_postgres.create_database("robotjobs_outage")
    upgrade(url)
    batches = _seed(url)
    spool_dir = tmp_path / "spool"
    env = {
        "DATABASE_URL": url,
        "WEBHOOK_SPOOL_DIR": str(spool_dir),
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",  # Prefect down too: resumes fail quietly
    }
    answers: list[tuple[int, float]] = []  # (status, seconds since start)
    failures: list[str] = []
    lock = threading.Lock()

    with GunicornServer(env=env, log_path=tmp_path / "gunicorn.log", workers=4, ready_timeout_s=120) as server:
        started = time.monotonic()

        def robot(batch: dict) -> None:
            # The robot: one POST per order, one at a time, no retry, no timeout of its own (60 s here).
            with httpx.Client(timeout=60) as client:
                for result in _results_of(batch):
                    try:
                        response = client.post(
                            server.url + CALLBACK,
                            content=robot_body(result),
                            headers={
                                "Content-Type": "application/json",
                                "X-Callback-Secret": batch["secret"],
                                "user-agent": "node",
                            },
                        )
                        with lock:
                            answers.append((response.status_code, time.monotonic() - started))
                    except httpx.HTTPError as exc:
                        with lock:
                            failures.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(SEND_INTERVAL_S)

        threads = [threading.Thread(target=robot, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        time.sleep(OUTAGE_STARTS_S)
        private_postgres.stop()
        stopped_at = time.monotonic() - started
        time.sleep(OUTAGE_S)
        private_postgres.start()
        back_at, back_wall = time.monotonic() - started, time.time()
        for thread in threads:
            thread.join(timeout=180)
        sent_until = time.monotonic() - started
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = httpx.get(server.url + "/readyz", timeout=10).json()
            if ready["spool"]["entries"] == 0 and not ready["spool"]["replaying"]:
                break
            time.sleep(0.2)
        logs = [json.loads(line) for line in server.logs().splitlines() if line.startswith('{"ts"')]

    statuses = Counter(status for status, _ in answers)
    assert failures == [] and sum(statuses.values()) == ROBOTS * (RESULTS_PER_ROBOT + RE_REPORTED)
    assert set(statuses) <= {200, 202}, statuses  # no 5xx, and nothing refused
    assert statuses[202] > 0  # the outage was hit
    assert ready["spool"]["entries"] == 0 and ready["spool"]["held"] == 0 and ready["status"] == "ok"
    assert list(spool_dir.glob("*.req")) == []

    engine = make_engine(url)
    try:
        with UnitOfWork(engine, readonly=True) as uow:
            total_successes = 0
            for batch in batches:
                expected = {r["itemId"]: r for r in _results_of(batch)[:RESULTS_PER_ROBOT]}
                found = jobs.get_job(uow.session, batch["job_id"])
                successes = sum(1 for r in expected.values() if r["status"] == "success")
                total_successes += successes
                assert (found.status, found.success_count, found.error_count) == (
                    "completed",
                    successes,
                    RESULTS_PER_ROBOT - successes,
                )
                for item_id, result in expected.items():
                    item = uow.session.get(RobotJobItem, item_id)
                    # The first report wins, also over a fatal re-report that queued behind it in the spool.
                    assert item.status == result["status"], (item_id, item.status, result)
                    if result["status"] == "success":
                        assert item.tracking_number == result["trackingNumber"]
                assert len(outbox.events_of(uow.session, event_type=BATCH_COMPLETED, aggregate_id=batch["job_id"])) == 1
            completed = outbox.events_of(uow.session, event_type=ROBOT_COORD_COMPLETED)
            assert len(completed) == total_successes == len({event.aggregate_id for event in completed})
            assert uow.session.exec(select(CallbackDeadLetter)).all() == []
            receipts = uow.session.exec(select(WebhookReceipt).where(WebhookReceipt.webhook_id.like("spool:%"))).all()
            assert len(receipts) == statuses[202]  # each spooled request applied once
    finally:
        engine.dispose()

    spooled = [line for line in logs if line.get("event") == "callback_spooled"]
    replayed = [line for line in logs if line.get("event") == "spool_entry_replayed"]
    rounds = [line for line in logs if line.get("event") == "spool_replay_round"]
    assert len(spooled) == statuses[202] == len(replayed)
    assert Counter(line["outcome"] for line in replayed) == {"recorded": statuses[202]}
    write_ms = [line["ms"] for line in spooled]
    rates = [line["per_second"] for line in rounds if line.get("per_second") and line.get("recorded", 0) >= 10]
    last_replayed = max(datetime.fromisoformat(line["ts"]).timestamp() for line in replayed)
    print(
        f"\noutage figures: {sum(statuses.values())} callbacks from {ROBOTS} robots; PostgreSQL stopped at "
        f"{stopped_at:.1f} s, back at {back_at:.1f} s; answers {dict(statuses)}; spool write p50 "
        f"{statistics.median(write_ms):.1f} ms p99 {_percentile(write_ms, 0.99):.1f} ms; replay rounds "
        f"{len(rounds)}, largest round rate {max(rates, default=float('nan')):.0f}/s; spool empty "
        f"{last_replayed - back_wall:.1f} s after PostgreSQL was back; longest wait in the spool "
        f"{max(line['age_s'] for line in replayed):.1f} s; last callback sent at {sent_until:.1f} s"
    )
