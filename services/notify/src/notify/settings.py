"""Notify's settings, from NOTIFY_* environment variables (plus NATS_URL, DATABASE_URL)."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from rujuk_runtime.settings import ServiceSettings

DEFAULT_SMS_TEMPLATE = '{"to": "{to}", "message": "{text}", "reference": "{idempotency_key}"}'


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    http_port: int = 8083
    webhook_base_url: str | None = Field(
        default=None,
        description="If set, every agency without its own URL gets POSTs at <base>/<agency_id>",
    )
    partners_file: Path | None = Field(
        default=None,
        description='JSON {"<agency_id>": {"webhook_url", "email", "sms_number", "language"}}',
    )
    webhook_signing_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key from which each partner's Standard Webhooks secret is derived",
    )
    webhook_timeout_seconds: float = 5.0
    max_attempts: int = Field(default=8, ge=1)
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 300.0
    breaker_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open an endpoint's breaker"
    )
    breaker_cooldown_seconds: float = Field(
        default=30.0, description="How long an open breaker waits before one trial delivery"
    )
    endpoint_concurrency: int = Field(
        default=4, ge=1, description="Deliveries in flight to one endpoint at most"
    )
    poll_interval_seconds: float = Field(
        default=1.0, description="Safety-net poll; new deliveries wake the worker at once"
    )
    # Where a partner reads a case's details (intake's disclosure endpoint), for the messages.
    intake_public_url: str = "http://127.0.0.1:8081"
    console_public_url: str = Field(
        default="http://127.0.0.1:8085",
        description="The console, for pages: an on-call contact acknowledges at <url>/coordinator",
    )
    routing_public_url: str = Field(
        default="http://127.0.0.1:8082",
        description="Routing's API, for the notices of a proposed SOP version: where an asked "
        "agency answers (POST <url>/v1/sop-proposals/<id>/answers)",
    )
    max_body_bytes: int = Field(
        default=16 * 1024, description="Larger POST bodies (replies) get 413; non-JSON ones 415"
    )
    oncall_repeat_reply_seconds: float = Field(
        default=60.0,
        description="A reply with an on-call code this soon after the last one counted is a "
        "repeat: answered, nothing passed on",
    )
    # E-mail over SMTP: unset host = no e-mail channel.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_sender: str = "rujuk@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = 10.0
    # SMS / WhatsApp through an HTTP gateway: unset URL = no SMS channel.
    sms_gateway_url: str | None = None
    sms_gateway_method: str = "POST"
    sms_gateway_body_template: str = Field(
        default=DEFAULT_SMS_TEMPLATE,
        description="JSON body; {to}, {text}, {referral_id}, {idempotency_key} are filled in",
    )
    sms_gateway_token: SecretStr = Field(
        default=SecretStr(""), description="Sent as 'Authorization: Bearer <token>' if set"
    )
