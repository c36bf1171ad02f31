"""What gunicorn itself costs per callback: the webhook's worker model serving a WSGI app that does nothing.

The same keep-alive senders as benchmarks/webhook_bench.py post the same per-order bodies to gunicorn, started with
the worker model webhook/gunicorn.conf.py picks on PostgreSQL (gthread 4 × 4), serving `app` below: it reads the
body and answers 200 with a body the size of the webhook's acknowledgement, touching no database. Per round: req/s,
latency, the workers' CPU per request and where the machine's CPU went per request (`webhook_bench.machine_split`).
The workers' CPU per request is the part of the webhook's CPU per callback that is gunicorn's (HTTP parsing, the
poller and the thread pool, writing the answer), which no change in our code can remove (BENCHMARKS.md round 17).

Run:  .venv/bin/python -m benchmarks.gunicorn_floor [--senders 32] [--requests 4000] [--rounds 3]
          [--worker-class gthread] [--workers 4] [--threads 4]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.webhook_bench import cpu_split, drive, gunicorn_defaults, machine_split, row
from stack.processes import ManagedProcess, base_env, free_port

# The webhook's acknowledgement of one success (webhook/callbacks.py `ack_body`), the same size.
ACK = (
    b'{"jobId":"00000000-0000-0000-0000-000000000000","jobFinished":false,"jobStatus":"processing",'
    b'"changed":["00000000-0000-0000-0000-000000000000"],"unchanged":[],"results":[{"itemId":'
    b'"00000000-0000-0000-0000-000000000000","changed":true,"itemStatus":"success"}],"duplicateDelivery":false}\n'
)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Read the body, answer the acknowledgement's bytes: gunicorn's work and nothing else."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ACK)))])
    return [ACK]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4000, help="per round (default 4000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker-class", default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    model = gunicorn_defaults("postgresql+psycopg://robotjobs@127.0.0.1/robotjobs")
    model.update({k: v for k, v in vars(args).items() if k in model and v is not None})
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="gunicorn-floor-")) / "gunicorn.log"
    command = [str(Path(sys.executable).with_name("gunicorn")), "--bind", f"127.0.0.1:{port}",
               "--worker-class", model["worker_class"], "--workers", str(model["workers"]),
               "--threads", str(model["threads"]), "--keep-alive", "5", "benchmarks.gunicorn_floor:app"]  # fmt: skip
    calls = [(f"{n:08d}-0000-0000-0000-000000000000", "secret", f"76{n:08d}") for n in range(args.requests)]
    print(f"gunicorn {model['worker_class']} workers={model['workers']} threads={model['threads']}, an app that "
          f"does nothing; {args.senders} keep-alive senders, {args.requests} requests per round")  # fmt: skip
    print(f"{'':<34}{'calls':>7}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    server = ManagedProcess("gunicorn", command, env=base_env(), log_path=log_path).start()
    try:
        server.wait_http_ok(f"http://127.0.0.1:{port}/")
        assert server.pid is not None  # started
        drive(port, calls[: args.senders * 20], args.senders)  # every worker and thread warm
        per_request = []
        for n in range(1, args.rounds + 1):
            before = cpu_split(server.pid, None)
            figures = drive(port, calls, args.senders)
            cpu = {key: value - before[key] for key, value in cpu_split(server.pid, None).items()}
            per_request.append(1000 * cpu["webhook"] / len(calls))
            print(row(f"gunicorn, nothing else #{n}", figures))
            print(f"{'':<34}{machine_split(cpu, len(calls), 'senders', 'gunicorn')}")
    finally:
        server.stop()
    print("rerun: .venv/bin/python -m benchmarks.gunicorn_floor " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    print(f"gunicorn's own CPU per request: {statistics.median(per_request):.2f} ms (median of {args.rounds} rounds; "
          f"each {', '.join(f'{value:.2f}' for value in per_request)})")  # fmt: skip


if __name__ == "__main__":
    main()
