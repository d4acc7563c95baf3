"""Settings every service shares. Each service subclasses with its own env prefix."""

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)


def systemd_credentials() -> dict[str, str]:
    """Secrets systemd hands a process as files (``LoadCredential=NAME:PATH``): each file in
    ``$CREDENTIALS_DIRECTORY`` is named as the variable it stands for (``DATABASE_URL``,
    ``INTAKE_MASTER_KEYS`` ...), so no secret is ever written inline in a unit or in an
    environment file (deploy/systemd, docs/operations.md)."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return {}
    return {
        path.name: path.read_text().strip() for path in Path(folder).iterdir() if path.is_file()
    }


class ServiceSettings(BaseSettings):
    """Settings every service reads. NATS_URL, DATABASE_URL, RUJUK_STREAM_REPLICAS,
    RUJUK_LOG_LEVEL and RUJUK_TOKEN_CACHE_SECONDS are shared (no service prefix); the rest
    take the service's prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=AliasChoices("nats_url", "NATS_URL"),
        description="NATS server(s), comma-separated for a cluster",
    )
    nats_nkey_seed_file: str | None = Field(
        default=None,
        validation_alias=AliasChoices("nats_nkey_seed_file", "NATS_NKEY_SEED_FILE"),
        description="File holding the service's own nkey seed (0600): who it is on the bus",
    )
    nats_tls_ca_file: str | None = Field(
        default=None,
        validation_alias=AliasChoices("nats_tls_ca_file", "NATS_TLS_CA_FILE"),
        description="CA that signed the NATS server's certificate, for tls:// URLs",
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/rujuk",
        validation_alias=AliasChoices("database_url", "DATABASE_URL"),
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias=AliasChoices("stream_replicas", "RUJUK_STREAM_REPLICAS"),
        description="JetStream replicas per stream (3 on a three-node cluster)",
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = Field(
        default="INFO", validation_alias=AliasChoices("log_level", "RUJUK_LOG_LEVEL")
    )
    batch_size: int = Field(default=100, ge=1, le=1000, description="JetStream pull batch size")
    token_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        validation_alias=AliasChoices("token_cache_seconds", "RUJUK_TOKEN_CACHE_SECONDS"),
        description="How long a verified bearer token is remembered in the process: a revoked "
        "token keeps working this long at most (0: look every token up)",
    )

    profile_dir: str | None = Field(
        default=None,
        validation_alias=AliasChoices("profile_dir", "RUJUK_PROFILE_DIR"),
        description="For benches only: run the process under cProfile and write its profile "
        "to <dir>/<service>-<pid>.prof at stop (costs about twice the CPU)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """A secret systemd hands over as a credential wins over the same variable: pydantic's
        secrets source, reading ``$CREDENTIALS_DIRECTORY``."""
        credentials = SecretsSettingsSource(
            settings_cls, secrets_dir=os.environ.get("CREDENTIALS_DIRECTORY")
        )
        return init_settings, credentials, env_settings, dotenv_settings, file_secret_settings

    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


class NoStackFound(RuntimeError):
    """A command needs rujuk's servers and was told of none."""

    def __init__(self, setting: str, option: str) -> None:
        self.setting = setting
        super().__init__(
            "Tidak menemukan stack rujuk: tidak ada `rujuk up` yang berjalan dari folder ini "
            f"(.rujuk/up/connection.json) dan {setting} belum diisi. Jalankan `rujuk up`, atau "
            f"isi {setting} (atau {option}).\n"
            "No rujuk stack found: no `rujuk up` running from this folder "
            f"(.rujuk/up/connection.json) and {setting} is not set. Start `rujuk up`, or set "
            f"{setting} (or {option})."
        )


def url_for_command(given: str | None, setting: str, option: str) -> str:
    """The server a `rujuk` command talks to: the option, else the setting (which a running
    `rujuk up` fills in); never a default port where some other server may answer."""
    url = given or os.environ.get(setting)
    if not url:
        raise NoStackFound(setting, option)
    return url
