"""The portal-password key: required outside the local stack, generated once only where the local stack says so."""

from __future__ import annotations

import pytest

from domain import credentials
from domain.credentials import CredentialsKeyMissing, decrypt_password, encrypt_password, load_credentials_key
from domain.settings import get_settings


@pytest.fixture
def var_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(credentials, "VAR_DIR", tmp_path)
    return tmp_path


def test_a_host_without_the_key_fails_with_a_clear_error_and_generates_nothing(var_dir, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_KEY_AUTOGENERATE", raising=False)
    with pytest.raises(CredentialsKeyMissing, match="CREDENTIALS_KEY no está configurada"):
        load_credentials_key(get_settings(credentials_key=None))
    assert not (var_dir / "credentials.key").exists()


def test_the_local_stack_generates_one_key_and_keeps_it(var_dir):
    settings = get_settings(credentials_key=None, credentials_key_autogenerate=True)
    first = load_credentials_key(settings)
    assert (
        load_credentials_key(settings)
        == first
        == load_credentials_key(get_settings(credentials_key=None), allow_generate=True)
    )
    assert (var_dir / "credentials.key").stat().st_mode & 0o777 == 0o600
    assert decrypt_password(encrypt_password("clave", first), first) == "clave"


def test_a_configured_key_wins(var_dir):
    key = load_credentials_key(get_settings(credentials_key=None), allow_generate=True)
    other = "5Zk2m8R1g2ZpQjYtM0d0b3J5cXl3eW1rNnR1bWh6OGk="
    assert load_credentials_key(get_settings(credentials_key=other, credentials_key_autogenerate=True)) == other != key
