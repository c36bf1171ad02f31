"""The robot's dispatch request (robot-protocol.md §1) and the per-job callback secret."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlmodel import Session, col, select

from domain.batches.jobs import get_job
from domain.credentials import decrypt_password
from domain.errors import MissingCarrierConfig
from domain.models import CarrierConfig, ItemStatus, RobotJob, RobotJobItem


def new_callback_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_callback_secret(secret: str | bytes) -> str:
    """The one form a per-job callback secret is stored in (the dispatch writes it, the webhook's auth compares it):
    sha256 hex of its UTF-8 bytes; the secret is high-entropy, so a plain SHA-256 is enough."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hashlib.sha256(raw).hexdigest()


def portal_credentials(session: Session, job: RobotJob, *, credentials_key: str) -> dict[str, str]:
    """The job's carrier portal login, its password decrypted (MissingCarrierConfig, CredentialsUnreadable).

    Never log, return from a task or persist it.
    """
    config = session.exec(
        select(CarrierConfig).where(
            CarrierConfig.workspace_id == job.workspace_id, CarrierConfig.carrier == job.carrier
        )
    ).first()
    if config is None:
        raise MissingCarrierConfig(f"El workspace no tiene configurada la transportadora {job.carrier}")
    return {
        "username": config.portal_username,
        "password": decrypt_password(config.portal_password_encrypted, credentials_key),
    }


def build_dispatch_request(
    session: Session, job_id: str, *, callback_url: str, callback_secret: str, credentials_key: str
) -> dict[str, Any]:
    """The JSON body for POST /api/crear-pedidos-batch: only the job's pending items.

    It carries the decrypted portal password: send it and drop it; never log, return from a task or persist it.
    """
    job = get_job(session, job_id)
    credentials = portal_credentials(session, job, credentials_key=credentials_key)
    items = session.exec(
        select(RobotJobItem)
        .where(RobotJobItem.job_id == job_id, RobotJobItem.status == ItemStatus.PENDING)
        .order_by(col(RobotJobItem.created_at), col(RobotJobItem.id))
    ).all()
    return {
        "workspaceId": job.workspace_id,
        "credentials": credentials,
        "callbackUrl": callback_url,
        "callbackSecret": callback_secret,
        "jobId": job.id,
        "orders": [{"itemId": i.id, "orderId": i.order_id, "pedidoInput": i.robot_input} for i in items],
    }
