"""The production path of the portal-password key: a Prefect Secret block, read by the flows at dispatch."""

from __future__ import annotations

from cryptography.fernet import Fernet
from prefect.blocks.system import Secret
from prefect.testing.utilities import prefect_test_harness

from flows import runtime


def test_the_key_comes_from_a_prefect_secret_block(monkeypatch):
    key = Fernet.generate_key().decode()
    monkeypatch.delenv("CREDENTIALS_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_KEY_AUTOGENERATE", raising=False)
    monkeypatch.setenv("CREDENTIALS_KEY_SECRET_BLOCK", "robotjobs-credentials-key")
    with prefect_test_harness(server_startup_timeout=60):
        Secret(value=key).save("robotjobs-credentials-key")
        assert runtime.credentials_key() == key
