"""Every setting of robotjobs, typed, in one place: read from the environment and an optional `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = PROJECT_ROOT / "var"


class Settings(BaseSettings):
    """The settings of every robotjobs process (webhook, flows, runner, simulator, CLI)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{VAR_DIR / 'robotjobs.db'}",
        description="SQLAlchemy URL of the domain database; PostgreSQL in production "
        "(postgresql+psycopg://user@host/db).",
    )
    credentials_key: SecretStr | None = Field(
        default=None,
        description="Fernet key that encrypts carrier portal passwords at rest. "
        "Required outside the local stack (the same key on every host).",
    )
    credentials_key_secret_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the Fernet key (production path); read by the flows "
        "when CREDENTIALS_KEY is unset.",
    )
    credentials_key_autogenerate: bool = Field(
        default=False,
        description="Local stack only: generate a key once into var/credentials.key when none is configured.",
    )

    # The robot and how it reaches us.
    robot_url: str = Field(default="http://127.0.0.1:8100", description="Base URL of the robot service.")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL at which the robot reaches our webhook (the callback URL is built from it).",
    )
    robot_dispatch_timeout_s: float = Field(default=15.0, description="Timeout of the dispatch request.")
    # The batch's deadline (domain.batches.jobs.callback_deadline); the run's suspend timeout outlasts it.
    callback_seconds_per_item: int = Field(default=30, description="Batch deadline: seconds per order.")
    callback_base_seconds: int = Field(default=300, description="Batch deadline: fixed seconds per batch.")

    # Webhook.
    webhook_legacy_secret: SecretStr | None = Field(
        default=None,
        description="Global X-Callback-Secret accepted for robots dispatched before per-job secrets existed. "
        "Off when unset.",
    )
    webhook_signing_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Standard Webhooks secrets (whsec_...), comma separated; several at once for rotation.",
    )
    webhook_timestamp_tolerance_s: int = Field(default=300, description="Allowed clock skew of webhook-timestamp.")
    webhook_max_body_bytes: int = Field(default=1_048_576, description="Largest callback body accepted (413 above).")
    webhook_spool_dir: Path = Field(
        default=VAR_DIR / "spool",
        description="This host's durable inbox: callbacks the database could not take are written here (fsync'd) "
        "and answered 202, then replayed in arrival order once it answers. One per host, never shared.",
    )
    webhook_spool_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        description="Bound of the spool; when it is full, callbacks get 503 with Retry-After again.",
    )
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token of the read API (/api/jobs/...). The read API is closed when unset."
    )

    # Scheduled maintenance.
    reconciler_enabled: bool = Field(
        default=True, description="Turns the every-minute reconciler off without a deploy."
    )
    pending_orphan_after_s: int = Field(
        default=120,
        description="A job still `pending` this long after its creation (its orchestration run never started: "
        "Prefect answered 5xx, or the submit run died) gets its orchestration started by the reconciler.",
    )
    pending_give_up_after_s: int = Field(
        default=600,
        description="A job still `pending` this long after its creation is failed as never sent, so the "
        "workspace can submit again.",
    )
    automations_enabled: bool = Field(default=True, description="Turns the automation runner off without a deploy.")

    # Automations.
    whatsapp_base_url: str = Field(default="http://127.0.0.1:8200", description="WhatsApp provider API base URL.")
    whatsapp_token: SecretStr | None = Field(default=None, description="WhatsApp provider API token.")
    automation_retry_budget_s: float = Field(
        default=30.0,
        description="How long a WhatsApp or webhook action keeps retrying timeouts, connection errors, 429 and 5xx "
        "(same Idempotency-Key, exponential backoff, Retry-After honoured) before it fails visibly.",
    )
    webhook_action_allow_private: bool = Field(
        default=False, description="Let the automation 'webhook' action call loopback/private addresses."
    )

    # Operators' alerts (flows/alerts.py): a Prefect automation posts here when a batch fails or ends with errors.
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description="Slack-compatible incoming webhook URL for batch alerts; `make up` and `python -m flows.alerts` "
        "create the Prefect automations only when it is set.",
    )

    @field_validator("webhook_signing_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def callback_url(self) -> str:
        return f"{self.public_base_url.rstrip('/')}/api/webhooks/robot-callback"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def get_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and `.env`), with explicit overrides for tests."""
    return Settings(**overrides)


def setting_default(name: str) -> Any:
    """A setting's declared default, without reading the environment: for domain functions called without settings."""
    return Settings.model_fields[name].default
