"""Pydantic models of the durable inbox's answers: the 202 of a spooled callback, readiness with the spool's state,
and the dead letters of the read API. (Kept apart from webhook/schemas.py, the callback protocol's models.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SpooledAck(BaseModel):
    """202: the callback is on this host's disk (fsync'd) and will be recorded, in arrival order, once the database
    takes it. Authentication and the protocol are checked then; an authenticated callback that still cannot be
    applied is kept as a dead letter."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    accepted: Literal[True] = True
    recorded: Literal[False] = False
    spool_entry: str = Field(alias="spoolEntry", description="Name of the spool entry on this host.")
    message: str = Field(description="For people (Spanish).")


class SpoolStatus(BaseModel):
    entries: int = Field(description="Callbacks waiting to be recorded.")
    bytes: int = Field(description="Disk used by them.")
    max_bytes: int = Field(description="The bound (webhook_spool_max_bytes): full means 503 to new callbacks.")
    oldest_age_s: float | None = Field(description="Seconds since the oldest waiting callback arrived.")
    replaying: bool = Field(description="A process of this host is replaying the spool right now.")
    full: bool = Field(description="The spool cannot take one more callback of the largest accepted size.")
    held: int = Field(description="Entries set aside after failing replay repeatedly for an unknown reason.")


class Readiness(BaseModel):
    """`ok`; `degraded`: the database is down but callbacks are being spooled (still ready: the robot never
    retries, so a host that can spool must keep taking traffic); `unavailable`: the spool is full or unusable."""

    status: Literal["ok", "degraded", "unavailable"]
    database: Literal["ok", "unavailable"]
    spool: SpoolStatus


class DeadLetterOut(BaseModel):
    id: int
    received_at: datetime
    reason: str = Field(description="Why it could not be applied (status and error code, then details).")
    job_id: str | None = None
    auth: str | None = Field(description="What authenticated it: signature, job (per-job secret) or legacy.")
    headers: dict[str, Any] = Field(description="The request's non-secret headers (never X-Callback-Secret).")
    body: str = Field(description="The body as received: UTF-8 text, or base64 when body_encoding says so.")
    body_encoding: Literal["utf-8", "base64"]
    replayed_at: datetime | None = None
    replay_result: str | None = None


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterOut]
