"""Carrier portal passwords, encrypted at rest with Fernet; decrypted only in memory, right before dispatch."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from domain.errors import DomainError
from domain.settings import VAR_DIR, Settings


class CredentialsUnreadable(DomainError):
    code = "credentials_unreadable"


def encrypt_password(plain: str, key: str) -> str:
    return Fernet(key.encode()).encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt_password(token: str, key: str) -> str:
    try:
        return Fernet(key.encode()).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError) as exc:
        # Never echo the token or the key: say only that the stored password cannot be read with this key.
        raise CredentialsUnreadable("La contraseña del portal no se puede descifrar con la clave configurada") from exc


class CredentialsKeyMissing(DomainError):
    code = "credentials_key_missing"


MISSING_KEY_MESSAGE = (
    "CREDENTIALS_KEY no está configurada: sin ella no se pueden descifrar las contraseñas del portal. Configure la "
    "misma clave Fernet en todos los hosts (variable CREDENTIALS_KEY, o un bloque Secret de Prefect nombrado en "
    "CREDENTIALS_KEY_SECRET_BLOCK). Solo el entorno local (make up / make demo) genera una clave propia."
)


def load_credentials_key(settings: Settings, *, allow_generate: bool = False) -> str:
    """The configured key. Only the local stack (`allow_generate`, or CREDENTIALS_KEY_AUTOGENERATE set by it) may
    generate one into var/credentials.key: a host that generated its own key silently could never read the
    passwords another host stored, and its dispatches would fail far from the cause."""
    if settings.credentials_key is not None:
        return settings.credentials_key.get_secret_value()
    if not (allow_generate or settings.credentials_key_autogenerate):
        raise CredentialsKeyMissing(MISSING_KEY_MESSAGE)
    path = VAR_DIR / "credentials.key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode("ascii"))
        path.chmod(0o600)
    return path.read_text().strip()
