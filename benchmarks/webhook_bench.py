"""Sync vs gthread gunicorn workers under concurrent robot callbacks, with and without slow after-commit work.

Several robots (one per workspace) report per-order results at once, each result sent twice (the robot's duplicates).
Two scenarios:
- "no Prefect": PREFECT_API_URL unset, the relay's after-commit notifiers return at once: the request path alone;
- "slow Prefect": after every commit the relay publishes progress to a stub Prefect API on loopback that answers 503
  after `--prefect-latency-ms`: the after-response work occupies the worker (a sync worker can serve nothing else).

Run:  .venv/bin/python benchmarks/webhook_bench.py [--workspaces 6] [--orders 20] [--concurrency 16]
          [--prefect-latency-ms 100] [--database-url URL]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain import jobs  # noqa: E402
from domain.db import UnitOfWork, make_engine  # noqa: E402
from domain.dispatch import hash_callback_secret  # noqa: E402
from domain.migrate import upgrade  # noqa: E402
from domain.models import ItemStatus  # noqa: E402
from domain.seed import seed_demo  # noqa: E402
from tests.webhook.gunicorn_server import GunicornServer  # noqa: E402

CALLBACK = "/api/webhooks/robot-callback"
CONFIGS = [  # (label, worker_class, workers, threads)
    ("sync    w=4", "sync", 4, 1),
    ("gthread w=4 t=4", "gthread", 4, 4),
    ("gthread w=2 t=8", "gthread", 2, 8),
]


def slow_prefect(latency_s: float) -> ThreadingHTTPServer:
    """A stand-in Prefect API that answers 503 after a delay: what the after-commit work waits on."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            time.sleep(latency_s)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def seed_jobs(engine, workspaces: int, orders_per_workspace: int, key: str) -> list[tuple[str, str, list[str]]]:
    """One dispatched job per workspace: (job_id, secret, pending item ids)."""
    out = []
    orders = [
        (f"Cliente {n}", f"300{n:07d}", None, None, f"Calle {n} # 1-2", "Medellín", "Antioquia", 50000 + n, [])
        for n in range(orders_per_workspace)
    ]
    for n in range(workspaces):
        secret = f"bench-secret-{n}-{time.monotonic_ns()}"
        with UnitOfWork(engine) as tx:
            demo = seed_demo(tx.session, credentials_key=key, orders=orders, name=f"bench {n}")
            job = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id).job
            jobs.start_job(tx.session, job.id, flow_run_id=None)
            jobs.claim_dispatch(tx.session, job.id, callback_secret_hash=hash_callback_secret(secret))
            items = [v.item.id for v in jobs.get_job_view(tx.session, job.id).items if v.item.status == ItemStatus.PENDING]
            tx.commit()
        out.append((job.id, secret, items))
    return out


def drive(url: str, work: list[tuple[str, str, list[str]]], concurrency: int) -> dict:
    """Every item reported twice, robots interleaved; returns latency and status figures."""
    requests = []
    for _job_id, secret, items in work:
        for n, item_id in enumerate(items):
            body = f'{{"itemId":"{item_id}","status":"success","trackingNumber":"76{n:06d}"}}'.encode()
            requests += [(secret, body), (secret, body)]
    # Interleave robots like concurrent batches do: round-robin over workspaces.
    requests.sort(key=lambda r: hash(r[1]) % 997)
    latencies, statuses = [], []
    lock = threading.Lock()
    client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency))

    def send(request):
        secret, body = request
        started = time.perf_counter()
        try:
            status = client.post(
                url + CALLBACK,
                content=body,
                headers={"Content-Type": "application/json", "X-Callback-Secret": secret, "user-agent": "node"},
            ).status_code
        except httpx.HTTPError:
            status = 0
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            statuses.append(status)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(send, requests))
    wall = time.perf_counter() - started
    client.close()
    ordered = sorted(latencies)
    pick = lambda q: 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "requests": len(requests),
        "non_200": sum(1 for s in statuses if s != 200),
        "rps": len(requests) / wall,
        "p50": 1000 * statistics.median(latencies),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": 1000 * max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=6, help="concurrent robots (one job each)")
    parser.add_argument("--orders", type=int, default=20, help="orders per job")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
    parser.add_argument("--prefect-latency-ms", type=float, default=100.0, help="delay of the stub Prefect API")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    upgrade(database_url)
    engine = make_engine(database_url)
    key = Fernet.generate_key().decode()
    prefect = slow_prefect(args.prefect_latency_ms / 1000)
    scenarios = [
        ("no Prefect", ""),
        (f"slow Prefect ({args.prefect_latency_ms:.0f} ms, 503)", f"http://127.0.0.1:{prefect.server_address[1]}/api"),
    ]
    print(f"database: {engine.dialect.name}; {args.workspaces} robots × {args.orders} orders, each result sent twice; "
          f"concurrency {args.concurrency}")
    for scenario, prefect_url in scenarios:
        env = {"DATABASE_URL": database_url, "PREFECT_API_URL": prefect_url, "ROBOTJOBS_WEBHOOK_ACCESSLOG": "/dev/null"}
        print(f"\n{scenario}")
        print(f"{'workers':<18}{'requests':>9}{'non-200':>9}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
        for label, worker_class, workers, threads in CONFIGS:
            work = seed_jobs(engine, args.workspaces, args.orders, key)
            log_path = workdir / f"gunicorn-{len(prefect_url)}-{worker_class}-{workers}-{threads}.log"
            with GunicornServer(env=env, log_path=log_path, worker_class=worker_class, workers=workers, threads=threads) as server:
                drive(server.url, seed_jobs(engine, 1, 5, key), 4)  # warm up imports and connections
                figures = drive(server.url, work, args.concurrency)
            print(f"{label:<18}{figures['requests']:>9}{figures['non_200']:>9}{figures['rps']:>9.1f}"
                  f"{figures['p50']:>9.1f}{figures['p95']:>9.1f}{figures['p99']:>9.1f}{figures['max']:>9.1f}")
    prefect.shutdown()
    engine.dispose()
    print(f"\nlogs in {workdir}\nrerun: .venv/bin/python benchmarks/webhook_bench.py "
          + " ".join(shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
