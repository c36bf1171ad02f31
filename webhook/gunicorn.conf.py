"""gunicorn settings of the webhook: `gunicorn -c webhook/gunicorn.conf.py` (app: `webhook.app:create_app()`).

The worker model depends on the database, by measurement (benchmarks/webhook_bench.py, 2 CPUs, BENCHMARKS.md round 4):
- PostgreSQL: 4 gthread workers × 4 threads. Once a per-order callback became one statement under the job's row lock
  (domain/batches/results.py), 4 sync workers were the limit: each request held a whole process while it waited on
  the database, and a sync worker closes every connection after its answer (no keep-alive: a new TCP connection per
  callback). gthread keeps the robot's connection alive and overlaps the waits: 16 senders 529 -> 699 req/s.
- SQLite: 4 sync workers. Its writers queue on the one database lock; threads only add queueing (16 senders: the same
  throughput, p99 290 -> 938 ms with 4 threads).
Every value can be overridden with ROBOTJOBS_WEBHOOK_* environment variables or gunicorn's own flags.
"""

import gc
import os

wsgi_app = "webhook.app:create_app()"
bind = os.environ.get("ROBOTJOBS_WEBHOOK_BIND", "127.0.0.1:8000")  # loopback unless deliberately exposed


def _database_url() -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    try:
        from domain.settings import get_settings  # .env as the app reads it
    except ImportError:  # the config read outside the project: the conservative default
        return ""
    return get_settings().database_url


_POSTGRESQL = _database_url().startswith("postgresql")
workers = int(os.environ.get("ROBOTJOBS_WEBHOOK_WORKERS", "4"))
worker_class = os.environ.get("ROBOTJOBS_WEBHOOK_WORKER_CLASS", "gthread" if _POSTGRESQL else "sync")
threads = int(os.environ.get("ROBOTJOBS_WEBHOOK_THREADS", "4" if _POSTGRESQL else "1"))
# The robot sets no timeout on callbacks; ours must be long enough for a 1,000-item batch body, no longer.
timeout = int(os.environ.get("ROBOTJOBS_WEBHOOK_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = 5
# Each worker builds its own engine in create_app(): connections must never be shared across fork.
preload_app = False
# gunicorn's access log is off unless ROBOTJOBS_WEBHOOK_ACCESSLOG names a file ("-": stdout): the app's own
# `http_request` line (webhook/app.py: method, path, status, ms, user agent and the correlation ids) already records
# every request, and formatting a second line cost ~5 % of a worker's CPU per callback (py-spy, BENCHMARKS.md
# round 5). Access lines carry no headers (so never X-Callback-Secret) and no body.
accesslog = os.environ.get("ROBOTJOBS_WEBHOOK_ACCESSLOG") or None
access_log_format = (
    '{"remote":"%(h)s","request":"%(r)s","status":%(s)s,"bytes":%(B)s,"ms":%(M)s,"request_id":"%({x-request-id}o)s"}'
)
errorlog = "-"
loglevel = os.environ.get("ROBOTJOBS_WEBHOOK_LOGLEVEL", "info")
# Request-line and header limits: generous for Standard Webhooks headers (several rotated signatures), bounded.
limit_request_line = 8190
limit_request_field_size = 8190
# gunicorn 24+'s control socket defaults to one path per user: parallel servers (tests, benchmark, stack) would
# fight over it, and nothing here uses it.
control_socket_disable = os.environ.get("ROBOTJOBS_WEBHOOK_CONTROL_SOCKET", "") == ""
if not control_socket_disable:
    control_socket = os.environ["ROBOTJOBS_WEBHOOK_CONTROL_SOCKET"]


def post_worker_init(worker):
    """Freeze what loading the app created out of the garbage collector's passes; then start the worker's spool
    replayer (a thread: it must start after fork), so a spool left by an earlier run is replayed without waiting
    for the next callback.

    Loading the app leaves ~160,000 long-lived objects (Flask, SQLAlchemy, pydantic, Prefect's client), none of them
    garbage later. A full collection walks all of them with every thread of the worker stopped: Python's own, now and
    then in a long-lived worker, and the explicit one after a large batch report (webhook/callbacks.py), both landing
    on the callbacks in flight. Measured in process after create_app(): 84-99 ms per full collection, 0.04 ms frozen
    (BENCHMARKS.md round 11). Frozen, a full pass walks only what the worker created since.
    """
    gc.collect()
    gc.freeze()
    worker.wsgi.extensions["robotjobs"].inbox.start()
