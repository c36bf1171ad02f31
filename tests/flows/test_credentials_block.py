"""The production path of the portal-password key: a Prefect Secret block, read by the flows at dispatch."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from domain.batches.jobs import get_job_view
from domain.credentials import CredentialsKeyMissing
from domain.db import UnitOfWork
from flows import runtime
from flows.dispatch import dispatch_once
from simulator.server import unused_loopback_url


@pytest.fixture(scope="module")
def prefect_api():
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def block_settings(monkeypatch):
    monkeypatch.delenv("CREDENTIALS_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_KEY_AUTOGENERATE", raising=False)
    monkeypatch.setenv("CREDENTIALS_KEY_SECRET_BLOCK", "robotjobs-credentials-key")


def test_the_key_comes_from_a_prefect_secret_block(prefect_api, block_settings):
    key = Fernet.generate_key().decode()
    Secret(value=key).save("robotjobs-credentials-key", overwrite=True)
    assert runtime.credentials_key() == key


def test_a_missing_block_is_the_named_error_in_spanish(prefect_api, monkeypatch, block_settings):
    monkeypatch.setenv("CREDENTIALS_KEY_SECRET_BLOCK", "no-such-block")
    with pytest.raises(CredentialsKeyMissing, match="El bloque Secret «no-such-block».*no existe"):
        runtime.credentials_key()


def test_a_missing_block_fails_the_job_at_once_and_claims_nothing(
    prefect_api, engine, settings, simulator, started_job
):
    settings = settings.model_copy(update={"credentials_key": None, "credentials_key_secret_block": "no-such-block"})

    result = dispatch_once(engine, settings, started_job)

    assert (result.sent, result.accepted) == (False, False)
    assert "No se pudo preparar el lote" in result.reason and "«no-such-block»" in result.reason
    with UnitOfWork(engine, readonly=True) as uow:
        view = get_job_view(uow.session, started_job)
    # Failed now, with the reason on every order, instead of claimed-but-unsent until the deadline.
    assert (view.job.status, view.job.dispatch_state) == ("failed", "refused")
    assert view.job.dispatched_at is None and view.job.callback_secret_hash is None
    assert "no-such-block" in view.job.failure_reason
    assert {(e.item.status, e.item.error_type) for e in view.items} == {("error", "dispatch")}
    assert simulator.state()["posts"] == {}


def test_an_unreachable_prefect_api_is_the_named_error_too(block_settings):
    with temporary_settings({PREFECT_API_URL: f"{unused_loopback_url()}/api"}):
        with pytest.raises(CredentialsKeyMissing, match="la API de Prefect no respondió"):
            runtime.credentials_key()
