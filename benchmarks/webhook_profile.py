"""Where a gunicorn worker's time goes during per-order callbacks: py-spy over every worker, and CPU seconds.

Seeds `jobs` dispatched jobs of `orders` each on a private PostgreSQL, starts the webhook (webhook/gunicorn.conf.py,
4 sync workers) — with `--prefect` beside a real `prefect server start` (progress on) — and records a speedscope
profile of all workers (`py-spy record --subprocesses --idle`) while `senders` keep-alive connections report every
item once. Prints throughput and latency, the CPU seconds the workers and the Prefect server spent meanwhile, and the
rerun command. Read the profile with https://www.speedscope.app/ or any speedscope reader.

Run:  .venv/bin/python -m benchmarks.webhook_profile [--prefect] [--scenario 16:4:200] [--out /tmp/webhook.json]
      [--on-cpu]   (only samples holding the GIL: where the workers' CPU goes, not their waits)
Needs py-spy (the `bench` extra).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks.common import children, database, rss_mb, seed_jobs
from benchmarks.webhook_bench import callbacks_of, drive, gunicorn_defaults, warm_up
from tests.webhook.gunicorn_server import GunicornServer


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / 100


def tree(pid: int) -> list[int]:
    return [pid] + [p for child in children(pid) for p in tree(child)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefect", action="store_true", help="run beside a real Prefect server (progress on)")
    parser.add_argument("--scenario", default="16:4:200", help="senders:jobs:orders_per_job")
    parser.add_argument("--out", default=None, help="speedscope file (default: a temporary folder)")
    parser.add_argument(
        "--on-cpu",
        action="store_true",
        help="only samples of threads holding the GIL (py-spy --gil, 100 Hz): the workers' CPU, not their waits",
    )
    args = parser.parse_args()
    senders, jobs_count, orders = (int(x) for x in args.scenario.split(":"))
    workdir = Path(tempfile.mkdtemp(prefix="webhook-profile-"))
    out = args.out or str(workdir / "webhook.speedscope.json")
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    with database(None, name="profile") as url, ExitStack() as stack:
        env = {
            "DATABASE_URL": url,
            "PREFECT_API_URL": "",
            # gunicorn.conf.py's default (off), unless asked for: "-" was the default before round 5
            "ROBOTJOBS_WEBHOOK_ACCESSLOG": os.environ.get("ROBOTJOBS_WEBHOOK_ACCESSLOG", ""),
        }
        server_pids: list[int] = []
        if args.prefect:
            from stack.processes import prefect_env, start_prefect_server

            home = workdir / "prefect"
            server, api_url = start_prefect_server(home, log_dir=workdir)
            stack.callback(server.stop)
            env = {**prefect_env(home, api_url), **env, "PREFECT_API_URL": api_url}
            server_pids = tree(server.pid)
        work = seed_jobs(url, jobs_count, orders, tag="profile")
        log_path = workdir / "gunicorn.log"
        model = gunicorn_defaults(url)
        with GunicornServer(env=env, log_path=log_path, ready_timeout_s=180, all_workers=True, **model) as gunicorn:
            # Warm as webhook_bench does: with one warm job only the worker that finished it had resumed one, and
            # the others' compiling filled the profile.
            warm_up(url, gunicorn.port, model, prefect=args.prefect)
            sampling = ["--gil", "-r", "100"] if args.on_cpu else ["--idle", "-r", "40"]
            spy = subprocess.Popen([py_spy, "record", "-p", str(gunicorn.process.pid), "--subprocesses", *sampling,
                                    "-f", "speedscope", "-o", out],
                                   stdout=subprocess.DEVNULL, stderr=open(workdir / "py-spy.log", "w"))  # fmt: skip
            time.sleep(2)  # py-spy attaches
            workers = children(gunicorn.process.pid)
            cpu_workers, cpu_server, started = cpu_seconds(workers), cpu_seconds(server_pids), time.monotonic()
            figures = drive(gunicorn.port, callbacks_of(work), senders)
            wall = time.monotonic() - started
            cpu_workers, cpu_server = cpu_seconds(workers) - cpu_workers, cpu_seconds(server_pids) - cpu_server
            spy.send_signal(signal.SIGINT)
            spy.wait(120)
            rss = [round(rss_mb(pid)) for pid in workers]
    print(
        f"{'Prefect up' if args.prefect else 'no Prefect'}, {senders} senders, {jobs_count} jobs × {orders}: "
        f"{figures['requests']} callbacks, {figures['errors']} errors, {figures['rps']:.1f} req/s, "
        f"p50 {figures['p50']:.0f} ms, p99 {figures['p99']:.0f} ms"
    )
    print(
        f"CPU meanwhile ({wall:.1f} s): workers {cpu_workers:.1f} s "
        f"({1000 * cpu_workers / max(figures['requests'], 1):.1f} ms per callback), "
        f"Prefect server {cpu_server:.1f} s; worker RSS {rss} MB"
    )
    print(f"profile: {out}; gunicorn log (results/resume notified lines, with ms): {workdir / 'gunicorn.log'}")
    print("rerun: .venv/bin/python -m benchmarks.webhook_profile " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
