"""Domain fixtures: a seeded demo workspace and helpers to run a job to the point where results arrive."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from domain.batches import jobs
from domain.batches.dispatch import build_dispatch_request, hash_callback_secret
from sample_data.seed import seed_demo


@pytest.fixture(scope="session")
def credentials_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def demo(uow, credentials_key):
    with uow() as tx:
        workspace = seed_demo(tx.session, credentials_key=credentials_key)
        tx.commit()
    return workspace


@pytest.fixture
def dispatched_job(uow, demo, credentials_key):
    """Create, start and claim a job over the demo's dispatch stage; returns (job_id, [pending item ids])."""

    def make(**create_kwargs):
        with uow() as tx:
            created = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, **create_kwargs)
            jobs.start_job(tx.session, created.job.id, flow_run_id="flow-run-1")
            jobs.claim_dispatch(tx.session, created.job.id, callback_secret_hash=hash_callback_secret("s3cret"))
            request = build_dispatch_request(
                tx.session,
                created.job.id,
                callback_url="http://127.0.0.1/cb",
                callback_secret="s3cret",
                credentials_key=credentials_key,
            )
            tx.commit()
        return created.job.id, [order["itemId"] for order in request["orders"]]

    return make
