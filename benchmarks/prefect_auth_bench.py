"""What the Prefect server's basic auth costs per API request: two servers on loopback (auth on, auth off), the same
request alternated between them N times after a warm-up; median and p90 of each.

Run:  .venv/bin/python -m benchmarks.prefect_auth_bench [--requests 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from stack.prefect_auth import auth_header
from stack.processes import start_prefect_server

WARM_UP = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    auth = "robotjobs:bench"
    with tempfile.TemporaryDirectory(prefix="auth-bench-") as tmp:
        on, on_url = start_prefect_server(Path(tmp) / "on", log_dir=Path(tmp) / "on", auth_string=auth)
        try:
            off, off_url = start_prefect_server(Path(tmp) / "off", log_dir=Path(tmp) / "off")
            try:
                targets = {
                    "auth on": (httpx.Client(headers=auth_header(auth)), on_url),
                    "auth off": (httpx.Client(), off_url),
                }
                times: dict[str, list[float]] = {name: [] for name in targets}
                for n in range(WARM_UP + args.requests):
                    for name, (client, url) in targets.items():  # alternated: both see the same machine load
                        started = time.perf_counter()
                        client.post(f"{url}/flows/filter", json={"limit": 1}).raise_for_status()
                        if n >= WARM_UP:
                            times[name].append((time.perf_counter() - started) * 1000)
            finally:
                off.stop()
        finally:
            on.stop()
    for name, values in times.items():
        values.sort()
        print(
            f"{name}: median {statistics.median(values):.2f} ms, p90 {values[int(len(values) * 0.9)]:.2f} ms "
            f"({len(values)} x POST /api/flows/filter)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
