"""Which basic-auth credential the stack runs its Prefect server with, and who else gets it."""

from __future__ import annotations

import os
import stat

import pytest

from stack import prefect_auth
from stack.prefect_auth import CLIENT_VAR, SERVER_VAR, configured_auth_string, local_auth_string, use_local_credential


@pytest.fixture(autouse=True)
def no_configured_credential(monkeypatch, tmp_path):
    for var in (SERVER_VAR, CLIENT_VAR):
        monkeypatch.setenv(var, "")  # recorded first, so whatever a test sets is undone afterwards
        monkeypatch.delenv(var)
    monkeypatch.setattr(prefect_auth, "PROJECT_ROOT", tmp_path)  # no .env of the developer's


def test_generated_once_private_and_reused(tmp_path):
    path = tmp_path / "var" / "prefect-auth"
    first = local_auth_string(path)
    user, _, password = first.partition(":")
    assert user == "robotjobs" and len(password) >= 30
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_auth_string(path) == first


def test_prefects_own_setting_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(CLIENT_VAR, "admin:from-env")
    assert local_auth_string(tmp_path / "prefect-auth") == "admin:from-env"
    assert not (tmp_path / "prefect-auth").exists()
    monkeypatch.setenv(SERVER_VAR, "admin:server")
    assert configured_auth_string() == "admin:server"


def test_dotenv_counts_as_configured(tmp_path):
    (tmp_path / ".env").write_text('PREFECT_SERVER_API_AUTH_STRING="admin:from-dotenv"\n')
    assert configured_auth_string(tmp_path / ".env") == "admin:from-dotenv"


def test_the_cli_sends_the_local_credential_only_to_this_machine(monkeypatch, tmp_path):
    path = tmp_path / "prefect-auth"
    path.write_text("robotjobs:local\n")
    use_local_credential("https://prefect.example.com/api", path)
    assert CLIENT_VAR not in os.environ
    use_local_credential("http://127.0.0.1:4200/api", path)
    assert os.environ[CLIENT_VAR] == "robotjobs:local"
