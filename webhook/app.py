"""The Flask application factory: the webhook process's one composition root (engine, secrets, notifiers)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, g, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy import Engine

from domain.db import configure_orm, make_engine
from domain.settings import Settings, get_settings
from webhook import callbacks, dead_letters_api, health, jobs_api, openapi
from webhook.after_commit import AfterCommit, AfterCommitWork, Notifier, RetryLater
from webhook.auth import SecretChecker, SignatureVerifier
from webhook.errors import register_error_handlers
from webhook.fast_lane import CallbackFastLane
from webhook.inbox import Inbox
from webhook.logs import configure_logging, correlate, correlation, log, log_request, request_id_from
from webhook.spool import Spool


class _JSONProvider(DefaultJSONProvider):
    ensure_ascii = False  # Spanish text stays readable
    sort_keys = False  # fields in the order the models declare them


@dataclass
class AppState:
    """What the routes share, kept in `app.extensions["robotjobs"]`."""

    settings: Settings
    engine: Engine
    verifier: SignatureVerifier
    secrets: SecretChecker
    after_commit: AfterCommit
    inbox: Inbox | None = None  # set right after: its replay needs the app
    openapi: dict[str, Any] = field(default_factory=dict)

    def notify_after_commit(self, job_id: str, *, finished: bool, error_items: list[str] | None = None) -> None:
        """Queue the resume when the job finished (the relay's includes progress; the job's final counts and the
        errors this callback recorded are logged in the run after it, AfterCommitWork.finish), else a progress update
        and, when this callback recorded errors, those errors for the run's logs (both coalesced per job).

        A callback that recorded only successes queues no run-log flush: the counts line comes with the job's
        progress publication (relay/progress.py, from the one worker holding the job's progress). Measured
        (benchmarks/webhook_profile.py --prefect, 32 senders on 20 jobs): a flush per job and worker, ~80 per 2,000
        callbacks, each two reads (and in production a POST /logs), most of them only to repeat the counts.
        """
        context = {key: value for key, value in correlation().items() if key != "job_id"}
        if finished:
            self.after_commit.submit("resume", job_id, context, items=error_items or [])
            return
        self.after_commit.submit("progress", job_id, context)
        if error_items:
            self.after_commit.submit("results", job_id, context, items=error_items)


def progress_notifier(publish_coalesced: Callable[[str], float | None]) -> Callable[[str], RetryLater | None]:
    """The after-commit `progress` task over the process's publisher (relay/progress.py ProgressPublisher): while
    this worker holds the job's claim, the pool runs it again `wait` seconds later (a follow-up of the holder's
    publication, not a retry: it spends no retry budget)."""

    def progress(job_id: str) -> RetryLater | None:
        wait = publish_coalesced(job_id)
        if wait is not None:
            return RetryLater(wait, why="holds the job's progress: reads it again", follow_up=True)
        return None

    return progress


def relay_work(engine: Engine) -> AfterCommitWork | None:
    """The relay's after-commit work (resume with progress, progress artifact, results in the job's run logs), or
    None when relay is not installed (a webhook deployed without Prefect: the reconciler resumes from the outbox)."""
    try:
        from relay.progress import log_results, progress_publisher
        from relay.resume import NOT_SUSPENDED_RETRY_S, resume_after_commit
    except ImportError:
        return None

    def resume(job_id: str) -> RetryLater | None:
        stats = resume_after_commit(engine, job_id)
        if stats is not None and stats.retry_soon:
            # The last result beat the run to its suspend (or Prefect did not answer): ask again once the event is
            # due again (the pass set it NOT_SUSPENDED_RETRY_S ahead; a little later, so the claim finds it due).
            return RetryLater(NOT_SUSPENDED_RETRY_S + 0.2, why=f"{stats.as_dict()}")
        return None

    return AfterCommitWork(
        resume=resume,
        progress=progress_notifier(progress_publisher(engine)),
        results=functools.partial(log_results, engine),
    )


def after_commit_work(
    engine: Engine, *, resume: Notifier | None = None, progress: Notifier | None = None
) -> AfterCommitWork:
    """The given notifiers (tests, the CLI's replay) over the relay's; without relay, nothing but the outbox."""
    relay = relay_work(engine) if resume is None or progress is None else None
    if relay is None:
        relay = AfterCommitWork()  # nothing after the commit: the outbox keeps the resume for the reconciler
    return AfterCommitWork(resume=resume or relay.resume, progress=progress or relay.progress, results=relay.results)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    resume_notifier: Notifier | None = None,
    progress_notifier: Notifier | None = None,
    clock: Callable[[], float] = time.time,
    log_level: str = "INFO",
    replay_in_background: bool = True,
) -> Flask:
    """Build the webhook app. Tests pass an engine, fake notifiers and a clock; gunicorn calls it with nothing.

    The spool's replayer thread starts after fork (gunicorn's post_worker_init, webhook/gunicorn.conf.py) or with
    the first spooled request; `replay_in_background=False` leaves replay to explicit `inbox.replay()` calls."""
    settings = settings or get_settings()
    engine = engine or make_engine(settings.database_url)
    configure_logging(log_level)
    configure_orm()  # before the worker serves (and freezes its objects, gunicorn.conf.py), not mid-traffic
    work = after_commit_work(engine, resume=resume_notifier, progress=progress_notifier)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_body_bytes
    app.json = _JSONProvider(app)
    state = AppState(
        settings=settings,
        engine=engine,
        verifier=SignatureVerifier(
            settings.webhook_signing_secrets, tolerance_s=settings.webhook_timestamp_tolerance_s, clock=clock
        ),
        secrets=SecretChecker(settings.webhook_legacy_secret),
        after_commit=AfterCommit(work.by_kind()),
        openapi=openapi.build_openapi(settings.webhook_max_body_bytes),
    )
    state.inbox = Inbox(
        Spool(settings.webhook_spool_dir, max_bytes=settings.webhook_spool_max_bytes),
        lambda entry: callbacks.replay_spooled(app, entry),
        max_body_bytes=settings.webhook_max_body_bytes,
        background=replay_in_background,
    )
    app.extensions["robotjobs"] = state

    @app.before_request
    def _start_request() -> None:
        g.started = time.monotonic()
        correlate(request_id=request_id_from(request.headers.get("X-Request-Id")))

    @app.after_request
    def _finish_request(response):
        response.headers["X-Request-Id"] = g.get("correlation", {}).get("request_id", "")
        log_request(request.method, request.path, response.status_code, g.get("started", time.monotonic()),
                    request.headers.get("User-Agent"))  # fmt: skip
        return response

    register_error_handlers(app)
    # The robot's plain per-order callbacks are answered before Flask's request machinery (webhook/fast_lane.py).
    app.wsgi_app = CallbackFastLane(app, app.wsgi_app)  # type: ignore[method-assign]
    for blueprint in (callbacks.bp, jobs_api.bp, dead_letters_api.bp, health.bp, openapi.bp):
        app.register_blueprint(blueprint)
    log(
        "info",
        "webhook_app_created",
        database=engine.dialect.name,
        signing_secrets=len(settings.webhook_signing_secrets),
        legacy_secret_enabled=settings.webhook_legacy_secret is not None,
        spool_dir=str(settings.webhook_spool_dir),
    )
    return app
