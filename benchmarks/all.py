"""Every benchmark, one after the other, each printing its figures and its rerun command.

Run:  .venv/bin/python -m benchmarks.all [--database-url URL] [--no-prefect]     (or: make bench)
PostgreSQL: the URL's server, or by default a private PostgreSQL per benchmark; SQLite: a fresh file.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="a PostgreSQL URL; default: a private PostgreSQL")
    parser.add_argument("--no-prefect", action="store_true", help="skip the webhook runs with a Prefect server up")
    args = parser.parse_args()
    postgres = ["--database-url", args.database_url] if args.database_url else []
    runs = [
        ["benchmarks.webhook_bench", *postgres, *([] if args.no_prefect else ["--prefect"])],
        ["benchmarks.webhook_bench", "--database-url", "sqlite"],
        ["benchmarks.gunicorn_floor"],
        ["benchmarks.report_one_bench", *postgres],
        ["benchmarks.results_flush_bench", *postgres],
        ["benchmarks.batch_record_bench", *postgres, "--webhook"],
        ["benchmarks.batch_record_bench", "--database-url", "sqlite"],
        ["benchmarks.claim_bench", *postgres],
        ["benchmarks.artifact_update_bench"],
        ["benchmarks.latency_bench"],
        ["benchmarks.flow_memory_bench", *postgres],
    ]
    failed = 0
    for run in runs:
        print(f"\n=== python -m {' '.join(run)}", flush=True)
        failed |= subprocess.call([sys.executable, "-m", *run]) != 0
    return failed


if __name__ == "__main__":
    sys.exit(main())
