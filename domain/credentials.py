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


def load_credentials_key(settings: Settings) -> str:
    """The configured key; for local use only, a key generated once into var/credentials.key."""
    if settings.credentials_key is not None:
        return settings.credentials_key.get_secret_value()
    path = VAR_DIR / "credentials.key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode("ascii"))
        path.chmod(0o600)
    return path.read_text().strip()
