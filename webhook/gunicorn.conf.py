"""gunicorn settings of the webhook: `gunicorn -c webhook/gunicorn.conf.py` (app: `webhook.app:create_app()`).

Sync workers by measurement (benchmarks/webhook_bench.py, 2 CPUs, 16 callbacks in flight): once the after-commit
work (resume, progress) left the request for a background pool (webhook/after_commit.py), 4 sync workers matched or
beat gthread on throughput (SQLite 108–153 vs 79–131 req/s; PostgreSQL 99–138 vs 85–137) with tighter tails
(p99 248–756 ms vs 283–1880 ms): more threads only meant more writers queueing on the database lock.
Switch with ROBOTJOBS_WEBHOOK_WORKER_CLASS=gthread (and _THREADS) if measurement on the target host says otherwise.
Every value can be overridden with ROBOTJOBS_WEBHOOK_* environment variables or gunicorn's own flags.
"""

import os

wsgi_app = "webhook.app:create_app()"
bind = os.environ.get("ROBOTJOBS_WEBHOOK_BIND", "127.0.0.1:8000")  # loopback unless deliberately exposed
workers = int(os.environ.get("ROBOTJOBS_WEBHOOK_WORKERS", "4"))
worker_class = os.environ.get("ROBOTJOBS_WEBHOOK_WORKER_CLASS", "sync")
threads = int(os.environ.get("ROBOTJOBS_WEBHOOK_THREADS", "1"))
# The robot sets no timeout on callbacks; ours must be long enough for a 1,000-item batch body, no longer.
timeout = int(os.environ.get("ROBOTJOBS_WEBHOOK_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = 5
# Each worker builds its own engine in create_app(): connections must never be shared across fork.
preload_app = False
# Access lines carry no headers (so never X-Callback-Secret) and no body.
accesslog = os.environ.get("ROBOTJOBS_WEBHOOK_ACCESSLOG", "-")
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
    """Start the worker's spool replayer (a thread: it must start after fork), so a spool left by an earlier run
    is replayed without waiting for the next callback."""
    worker.wsgi.extensions["robotjobs"].inbox.start()
