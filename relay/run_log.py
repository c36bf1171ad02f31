"""Lines for operators in a job's flow run logs (the Prefect UI's Logs tab): in Spanish, with the job id, no secret.

Two ways in, because not every writer runs inside the job's run:
- a line for the run it is written in (dispatch, the orchestration): the run's own logger, batched by Prefect's
  log worker;
- a line for another run (the reconciler acting on a job's run, the webhook's after-commit pool, which runs in
  none): `send_run_logs`, one API call carrying many lines, sent at once with its own retries. Not Prefect's log
  worker: it drops a batch the server refused, and the reconciler's run ends a moment after its last line (CI lost
  a reconcile's resume line that way); the current run's console still shows the line.

Stdlib loggers alone never reach the UI: Prefect's API handler only serves loggers named in
PREFECT_LOGGING_EXTRA_LOGGERS, whose INFO lines the root logger's WARNING level then drops, and it cannot aim a
line at another run. Callers build messages from named fields only (ids, counts, reasons): never a request body,
a header, a URL's credentials, a callback secret or a portal password.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from uuid import UUID

from prefect.client.schemas.actions import LogCreate
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from sqlalchemy import Engine

from domain.batches.jobs import get_job
from domain.db import UnitOfWork
from domain.errors import UnknownJob
from relay.prefect_api import TRANSPORT_ERRORS, is_server_error, prefect_client

log = logging.getLogger("relay.run_log")

# The Prefect API refuses log messages past PREFECT_LOGGING_TO_API_MAX_LOG_SIZE (1 MB); operators read short lines.
MAX_MESSAGE_CHARS = 2_000
# A server that answered 503 or did not answer gets one more try a moment later; then the lines are dropped.
SEND_ATTEMPTS = 2
RETRY_PAUSE_S = 1.0
# Inside a run (the reconciler) nothing waits on the line: a few more tries, each pause longer (1 s, 2 s, 3 s).
IN_RUN_SEND_ATTEMPTS = 4


def _current_run_logger() -> logging.LoggerAdapter | None:
    try:
        return get_run_logger()
    except MissingContextError:
        return None


def log_in_run(fallback: logging.Logger, level: int, message: str, *, flow_run_id: str | None = None) -> None:
    """One line in the current run's logs (or in `flow_run_id`'s); outside a run, on `fallback`, and sent directly
    to `flow_run_id` when given. Never raises."""
    message = message[:MAX_MESSAGE_CHARS]
    run_logger = _current_run_logger()
    if run_logger is None:
        fallback.log(level, message)
        if flow_run_id:
            send_run_logs(flow_run_id, [(level, message)], logger_name=fallback.name)
        return
    if flow_run_id and flow_run_id != str(run_logger.extra.get("flow_run_id")):
        run_logger.log(level, message, extra={"send_to_api": False})  # this run's console, not its logs
        send_run_logs(flow_run_id, [(level, message)], logger_name=fallback.name, attempts=IN_RUN_SEND_ATTEMPTS)
    else:
        run_logger.log(level, message)


def log_in_job_run(
    engine: Engine, fallback: logging.Logger, level: int, job_id: str, message: str, *, flow_run_id: str | None = None
) -> None:
    """A line in the job's own flow run (read from the job when not given); the fallback logger only if it has none."""
    if flow_run_id is None:
        try:
            with UnitOfWork(engine, readonly=True) as uow:
                flow_run_id = get_job(uow.session, job_id).flow_run_id
        except UnknownJob:
            flow_run_id = None
    if flow_run_id:
        log_in_run(fallback, level, message, flow_run_id=flow_run_id)
    else:
        fallback.log(level, message)


def send_run_logs(
    flow_run_id: str, lines: list[tuple[int, str]], *, logger_name: str = "robotjobs", attempts: int = SEND_ATTEMPTS
) -> bool:
    """Write `lines` (level, message) into a flow run's logs in ONE API call; False if Prefect did not take them."""
    if not lines:
        return True
    now = datetime.now(UTC)
    for attempt in range(1, attempts + 1):
        try:
            logs = [
                LogCreate(
                    name=logger_name,
                    level=level,
                    message=message[:MAX_MESSAGE_CHARS],
                    timestamp=now,
                    flow_run_id=UUID(flow_run_id),
                )
                for level, message in lines
            ]
            with prefect_client(timeout_s=5.0) as client:
                client.create_logs(logs)
            return True
        except Exception as exc:  # a log line is decoration: it must never break a callback or a reconcile
            if attempt < attempts and (isinstance(exc, TRANSPORT_ERRORS) or is_server_error(exc)):
                time.sleep(RETRY_PAUSE_S * attempt)  # a busy server (SQLite answers 503): again, off the request path
                continue
            log.warning(
                "%s line(s) not written to flow run %s: %s: %s", len(lines), flow_run_id, type(exc).__name__, exc
            )
            return False
    return False
