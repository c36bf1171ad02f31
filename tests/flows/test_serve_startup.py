"""The flow runner refuses to start without the portal passwords' key, in Spanish, instead of failing every batch
at its dispatch; with a key it gets past the check."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from flows.serve import check_credentials_key
from simulator.server import unused_loopback_url


def _env_without_key() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDENTIALS_KEY")}
    env["CREDENTIALS_KEY_AUTOGENERATE"] = "false"
    env["PREFECT_API_URL"] = unused_loopback_url() + "/api"  # nothing listens: the check must come first
    return env


def test_serve_without_a_key_exits_at_once_with_the_reason():
    done = subprocess.run(
        [sys.executable, "-m", "flows.serve"], env=_env_without_key(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "no se inicia el servicio de flujos" in done.stderr
    assert "CREDENTIALS_KEY no está configurada" in done.stderr


def test_the_check_passes_with_a_key(monkeypatch):
    for name in [k for k in os.environ if k.startswith("CREDENTIALS_KEY")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CREDENTIALS_KEY_AUTOGENERATE", "false")
    with pytest.raises(SystemExit, match="CREDENTIALS_KEY no está configurada"):
        check_credentials_key()
    monkeypatch.setenv("CREDENTIALS_KEY", Fernet.generate_key().decode())
    check_credentials_key()  # no exit
