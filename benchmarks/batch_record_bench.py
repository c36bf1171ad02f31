"""How much a 1,000-item batch report costs: statements sent and wall time, on SQLite or PostgreSQL.

Run:  .venv/bin/python benchmarks/batch_record_bench.py [--items 1000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from cryptography.fernet import Fernet
from sqlalchemy import event

from domain import jobs
from domain.db import UnitOfWork, make_engine
from domain.migrate import upgrade
from domain.results import ItemResult, record_batch_results
from domain.seed import seed_demo


def synthetic_orders(count: int) -> list[tuple]:
    return [
        (f"Cliente {n}", f"300{n:07d}", None, None, f"Calle {n} # 1-2", "Medellín", "Antioquia", 50000 + n, [])
        for n in range(count)
    ]


def count_statements(engine):
    counter = {"n": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):
        counter["n"] += 1

    return counter


def run(database_url: str, items: int) -> dict:
    upgrade(database_url)
    engine = make_engine(database_url)
    key = Fernet.generate_key().decode()
    with UnitOfWork(engine) as tx:
        demo = seed_demo(tx.session, credentials_key=key, orders=synthetic_orders(items), name="bench")
        job = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id).job
        jobs.start_job(tx.session, job.id, flow_run_id=None)
        tx.commit()
    with UnitOfWork(engine) as tx:
        item_ids = [v.item.id for v in jobs.get_job_view(tx.session, job.id).items]
    results = [ItemResult(item_id=i, status="success", tracking_number=f"76{n:08d}") for n, i in enumerate(item_ids)]
    counter = count_statements(engine)
    started = time.perf_counter()
    with UnitOfWork(engine) as tx:
        outcome = record_batch_results(tx.session, job.id, results)
        tx.commit()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {"items": items, "statements": counter["n"], "seconds": round(elapsed, 3), "status": outcome.job_status}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    figures = run(url, args.items)
    print(f"database: {url.split('@')[-1]}")
    print(f"{figures['items']} results recorded in one transaction: {figures['statements']} statements sent, "
          f"{figures['seconds']} s, job {figures['status']}")
    print("rerun: .venv/bin/python benchmarks/batch_record_bench.py --items", args.items)


if __name__ == "__main__":
    main()
