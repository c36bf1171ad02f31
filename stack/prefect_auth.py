"""The Prefect server's basic auth (Prefect's own `server.api.auth_string` / `api.auth_string`): which credential the
local stack runs with, and where our clients outside the stack (the CLI) find it.

Prefect's settings win when configured (`PREFECT_SERVER_API_AUTH_STRING` or `PREFECT_API_AUTH_STRING`, in the
environment or `.env`); otherwise the stack generates `robotjobs:<random>` once into var/prefect-auth (mode 0600,
never in the repo) and keeps it across `make down` / `make up`, so a browser login and exported shells keep working.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from domain.settings import PROJECT_ROOT, VAR_DIR

SERVER_VAR = "PREFECT_SERVER_API_AUTH_STRING"  # what the server checks
CLIENT_VAR = "PREFECT_API_AUTH_STRING"  # what every client sends (Basic base64(user:password))
AUTH_FILE = VAR_DIR / "prefect-auth"
USER = "robotjobs"


def configured_auth_string(env_file: Path = PROJECT_ROOT / ".env") -> str | None:
    """Prefect's own setting, from the environment first and then `.env` (the server's before the client's)."""
    file_values = dotenv_values(env_file) if env_file.exists() else {}
    for source in (os.environ, file_values):
        for var in (SERVER_VAR, CLIENT_VAR):
            if value := (source.get(var) or "").strip():
                return value
    return None


def local_auth_string(path: Path = AUTH_FILE) -> str:
    """The stack's credential: the configured one, else the one in var/prefect-auth (generated on first use)."""
    if configured := configured_auth_string():
        return configured
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL + 0600 from the start: the secret is never readable by others, not even for a moment.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another `make up` / demo won the race: use its credential
            return path.read_text().strip()
        with os.fdopen(fd, "w") as out:
            out.write(f"{USER}:{secrets.token_urlsafe(24)}\n")
    return path.read_text().strip()


def client_env(api_url: str, auth_string: str | None) -> dict[str, str]:
    """The variables a process needs to talk to our Prefect server (its URL and, when auth is on, the credential)."""
    return {"PREFECT_API_URL": api_url, **({CLIENT_VAR: auth_string} if auth_string else {})}


def use_local_credential(api_url: str, path: Path = AUTH_FILE) -> None:
    """For a client started by hand (the CLI): when no credential is configured and the API is this machine's
    stack, send the one `make up` generated. Never sent to another host."""
    if configured_auth_string() or not path.exists():
        return
    if urlsplit(api_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        return
    os.environ[CLIENT_VAR] = path.read_text().strip()


def auth_header(auth_string: str | None) -> dict[str, str]:
    """`Authorization: Basic ...` for our own httpx calls to the API (readiness checks, tests)."""
    if not auth_string:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode("utf-8")).decode("ascii")}
