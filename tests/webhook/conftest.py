"""Webhook fixtures: settings with real secrets, fake notifiers, the app and its test client, dispatched jobs."""

from __future__ import annotations

import secrets

import pytest
from cryptography.fernet import Fernet
from sqlmodel import select

from domain.batches import jobs
from domain.batches.dispatch import hash_callback_secret
from domain.models import ItemStatus, RobotJobItem
from domain.settings import get_settings
from sample_data.seed import seed_demo
from tests.webhook.helpers import API_TOKEN, Job, RecordingNotifier, SettledClient, db_state, new_signing_secret
from webhook import create_app


@pytest.fixture(scope="session")
def credentials_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture(scope="session")
def signing_secrets() -> list[str]:
    """Two secrets at once: the current and the next one of a rotation."""
    return [new_signing_secret(), new_signing_secret()]


@pytest.fixture
def spool_dir(tmp_path):
    return tmp_path / "spool"


@pytest.fixture
def settings(database_url, signing_secrets, spool_dir):
    return get_settings(
        database_url=database_url,
        webhook_signing_secrets=",".join(signing_secrets),
        webhook_legacy_secret=None,
        api_token=API_TOKEN,
        webhook_max_body_bytes=64 * 1024,
        webhook_spool_dir=spool_dir,
    )


@pytest.fixture
def resume():
    return RecordingNotifier()


@pytest.fixture
def progress():
    return RecordingNotifier()


@pytest.fixture
def make_app(settings, engine, resume, progress):
    def make(**overrides):
        # Replay runs when a test calls `inbox.replay()`, not on a thread of its own: tests stay deterministic.
        kwargs = dict(engine=engine, resume_notifier=resume, progress_notifier=progress, replay_in_background=False)
        the_settings = overrides.pop("settings", settings)
        kwargs.update(overrides)
        app = create_app(the_settings, **kwargs)
        app.test_client_class = SettledClient
        return app

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_job(uow, credentials_key):
    """Seed a workspace, create a job over its first `orders` demo orders, start it and claim its dispatch."""

    def make(orders: int = 3, *, name: str = "Tienda Demo") -> Job:
        secret = secrets.token_urlsafe(32)
        with uow() as tx:
            demo = seed_demo(tx.session, credentials_key=credentials_key, name=name)
            created = jobs.create_robot_job(
                tx.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids[:orders]
            )
            jobs.start_job(tx.session, created.job.id, flow_run_id="6d1b0f44-6a39-4d2c-9a7e-1f1c2b3d4e5f")
            assert jobs.claim_dispatch(tx.session, created.job.id, callback_secret_hash=hash_callback_secret(secret))
            items = tx.session.exec(
                select(RobotJobItem).where(RobotJobItem.job_id == created.job.id).order_by(RobotJobItem.created_at)
            ).all()
            tx.commit()
        pending = [i.id for i in items if i.status == ItemStatus.PENDING]
        return Job(
            id=created.job.id, secret=secret, items=pending, rejected=[i.id for i in items if i.id not in pending]
        )

    return make


@pytest.fixture
def job(make_job) -> Job:
    return make_job()


@pytest.fixture
def snapshot(engine):
    return lambda: db_state(engine)


@pytest.fixture
def down_engine(tmp_path):
    """An engine of the session's kind whose database does not answer: PostgreSQL on a port nobody listens on, or a
    SQLite file in a folder that does not exist."""
    import socket

    from sqlalchemy import create_engine

    from domain.db import make_engine
    from tests.conftest import TEST_DATABASE

    if TEST_DATABASE == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'robotjobs.db'}")
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        engine = make_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/robotjobs", connect_args={"connect_timeout": 2}
        )
    yield engine
    engine.dispose()
