"""The console's settings, from CONSOLE_* environment variables and the services' URLs."""

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from rujuk_runtime.settings import ServiceSettings


def _url(name: str, default: str) -> str:
    return Field(
        default=default,
        validation_alias=AliasChoices(name.lower(), name),
        description=f"Base URL of the {name.removesuffix('_URL').lower()} service's HTTP API",
    )


class ConsoleSettings(ServiceSettings):
    """The console calls the services' APIs for every page and keeps only its sign-in sessions,
    in PostgreSQL (DATABASE_URL, schema ``console``); it needs no NATS. It asks intake about a
    signed-in token again after RUJUK_TOKEN_CACHE_SECONDS, as every service re-checks one."""

    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    http_port: int = 8085
    intake_url: str = _url("INTAKE_URL", "http://127.0.0.1:8081")
    routing_url: str = _url("ROUTING_URL", "http://127.0.0.1:8082")
    notify_url: str = _url("NOTIFY_URL", "http://127.0.0.1:8083")
    audit_url: str = _url("AUDIT_URL", "http://127.0.0.1:8084")
    session_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Key the session cookie is encrypted and authenticated with (required)",
    )
    session_hours: float = Field(default=12, gt=0, description="A sign-in lasts this long")
    secure_cookies: bool = Field(
        default=False, description="Mark cookies Secure: set true when served over https"
    )
    timezone: str = Field(default="Asia/Jakarta", description="Times are shown (and read) in it")
    upstream_timeout_seconds: float = Field(default=10, gt=0)
    poll_seconds: int = Field(default=3, ge=1, description="How often pages refresh their lists")
    poll_max_seconds: int = Field(
        default=30,
        ge=1,
        description="A list that stayed the same is asked for less and less often, down to "
        "once in this many seconds; a change brings it back to CONSOLE_POLL_SECONDS",
    )
    poll_hidden_seconds: int = Field(
        default=120, ge=1, description="How often a list refreshes while its tab is hidden"
    )
    supervision_file: str = Field(
        default="",
        description="Status file `rujuk up`'s supervisor keeps: a process that crash-loops is "
        "named on every page (none, or no such file: no banner)",
    )
