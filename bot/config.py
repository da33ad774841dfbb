"""Settings: an optional TOML file, overridden by environment variables and `.env`.

Precedence, highest first: environment, `.env`, the TOML file (`BOT_CONFIG`, default `config/bot.toml` when
present), the defaults below. Nested keys use `__` in the environment (`QUOTA__DAILY_CREDITS=20`).
Secrets are accepted from the environment or `.env` only, so a config file can be shared or committed.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.fleet import ShardPlan
from bot.quota.rules import QuotaSettings
from bot.startup import StartupSettings

if TYPE_CHECKING:
    from bot.netguard import UrlPolicy

DEFAULT_CONFIG_PATH = Path("config/bot.toml")
SECRET_FIELDS = ("discord_token", "sunra_key")


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line that names it and never holds a secret."""


class JobSettings(BaseModel):
    # A misspelt setting stops start-up instead of being ignored; so does an infinite or NaN time (the
    # job's deadline would be one, which no database stores as JSON and no comparison orders).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # Kling jobs usually take minutes and sometimes more than 15; past this the job is cancelled.
    max_lifetime_minutes: float = Field(default=60.0, gt=0)
    # Adaptive polling when the status stream is unavailable: first interval, growth, ceiling.
    poll_first_seconds: float = Field(default=3.0, gt=0)
    poll_max_seconds: float = Field(default=30.0, gt=0)
    # Progress edits per message, at most one per this many seconds (Discord rate limits edits).
    progress_edit_seconds: float = Field(default=5.0, ge=1)
    # Largest video the bot downloads to upload to Discord; bigger ones are delivered by URL.
    max_video_mb: float = Field(default=100.0, gt=0)
    # A finished video that cannot be fetched (dead link, refused address, not an MP4) is tried again
    # for this long, then its credits are given back (under 2 minutes from the API's completion).
    video_fetch_seconds: float = Field(default=90.0, gt=0, le=110)


class MediaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Threads decoding images; decoding never runs on the event loop.
    decode_workers: int = Field(default=2, ge=1, le=32)
    download_timeout_seconds: float = Field(default=30.0, gt=0)
    # Largest picture downloaded from Discord; pictures over Kling's 10 MB are shrunk to fit.
    max_download_mb: float = Field(default=50.0, gt=0, le=500)

    @property
    def max_download_bytes(self) -> int:
        return int(self.max_download_mb * 1_000_000)


class HttpSettings(BaseModel):
    """The optional monitoring listener (/healthz, /metrics); see bot/monitoring.py."""

    model_config = ConfigDict(extra="forbid")

    # 0 = no listener. Loopback by default: the metrics are for the operator, not the internet.
    port: int = Field(default=0, ge=0, le=65535)
    host: str = "127.0.0.1"


class CommonSettings(BaseSettings):
    """Every setting but the two secrets; see `Settings` (the bot) and `ToolSettings` (terminal commands)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        case_sensitive=False,
    )

    discord_api_url: AnyHttpUrl = AnyHttpUrl("https://discord.com/api/v10")
    discord_gateway_url: str | None = None
    sunra_api_url: AnyHttpUrl = AnyHttpUrl("https://api.sunra.ai/v1")
    database_url: str = "sqlite:///data/bot.sqlite3"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Hosts (host[:port], comma-separated) the bot may fetch files from or send them to although they
    # are not https to a public address: an answer's URLs and Discord's pictures (bot/netguard.py).
    sunra_file_hosts: str = ""
    # Register commands to these guilds only (instant for testing); empty = global commands.
    command_guild_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    # The only servers the bot may be in (bot/guild_access.py); empty = any server.
    allowed_guild_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # Several processes on one token (bot/fleet.py): the fleet's total shards and this process's share,
    # e.g. SHARD_COUNT=2 SHARD_IDS=0. Unset: one process owns the whole bot, as one connection.
    shard_count: int | None = Field(default=None, ge=1, le=4096)
    shard_ids: Annotated[list[int] | None, NoDecode] = None
    # A process owns its shards' jobs by a lease it renews; a restarted process waits this long at
    # most for the lease its killed predecessor left.
    shard_lease_seconds: float = Field(default=30.0, ge=1, le=600)

    jobs: JobSettings = Field(default_factory=JobSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    quota: QuotaSettings = Field(default_factory=QuotaSettings)
    startup: StartupSettings = Field(default_factory=StartupSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)

    @field_validator("discord_token", "sunra_key", check_fields=False)
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # A secret read from a file often ends in a newline, which no HTTP header may carry.
        stripped = value.get_secret_value().strip()
        if not stripped:
            raise ValueError("is empty")
        if not all("!" <= char <= "~" for char in stripped):
            raise ValueError("has a space or a character outside ASCII, which no token or key has")
        return SecretStr(stripped)

    @field_validator("command_guild_ids", "allowed_guild_ids", mode="before")
    @classmethod
    def _guild_ids(cls, value: Any) -> Any:
        # From the environment: one id, ids separated by commas, or a JSON list.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("sunra_file_hosts")
    @classmethod
    def _file_hosts(cls, value: str) -> str:
        from bot.netguard import parse_file_hosts

        parse_file_hosts(value)  # raises ValueError naming the entry
        return value

    def url_policy(self) -> UrlPolicy:
        """The file host policy of SUNRA_FILE_HOSTS (bot/netguard.py)."""
        from bot.netguard import UrlPolicy

        return UrlPolicy(self.sunra_file_hosts)

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _shards_fit(self) -> CommonSettings:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError("SHARD_IDS needs SHARD_COUNT (the fleet's total number of shards)")
        if not self.shard_ids:
            raise ValueError("SHARD_IDS names no shard")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("SHARD_IDS names a shard twice")
        wrong = [shard for shard in self.shard_ids if not 0 <= shard < self.shard_count]
        if wrong:
            raise ValueError(f"SHARD_IDS {wrong[0]} is not between 0 and SHARD_COUNT - 1")
        return self

    @property
    def shards(self) -> ShardPlan:
        """This process's shards (see bot/fleet.py)."""
        if self.shard_count is None:
            return ShardPlan(None, None)
        ids = self.shard_ids if self.shard_ids is not None else range(self.shard_count)
        return ShardPlan(self.shard_count, tuple(sorted(ids)))

    @field_validator("discord_gateway_url")
    @classmethod
    def _websocket_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from bot.store.db import parse_database_url

        parse_database_url(value)  # raises ValueError with a clear reason, never the password
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return upper

    @field_validator("log_format", mode="before")
    @classmethod
    def _format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def rest_base(self) -> str:
        return str(self.discord_api_url).rstrip("/")

    @property
    def sunra_base(self) -> str:
        return str(self.sunra_api_url).rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, _TomlSource(settings_cls))


class Settings(CommonSettings):
    """The bot's settings: it cannot start without both secrets."""

    discord_token: SecretStr
    sunra_key: SecretStr


class ToolSettings(CommonSettings):
    """The settings of the terminal commands (`kling-bot check`, `kling-bot animate`): each needs only
    some of the secrets (`animate --simulate` none), so here they are optional and the command names
    the ones it needs with `require`. The bot itself never reads these."""

    discord_token: SecretStr | None = None
    sunra_key: SecretStr | None = None

    def require(self, *names: str) -> None:
        """Raises ConfigError naming the first of these secrets that is not set."""
        for name in names:
            if getattr(self, name) is None:
                raise ConfigError(f"{name.upper()} is not set")


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by BOT_CONFIG (or config/bot.toml when it exists)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = _read_toml(config_path())

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def config_path() -> Path | None:
    named = os.environ.get("BOT_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"BOT_CONFIG names {path}, which is not a readable file")
        return path
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it as TOML ({exc})") from None
    lowered = {key.lower(): value for key, value in data.items()}
    unknown = sorted(set(lowered) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"{path}: unknown setting '{unknown[0]}' (see config/bot.example.toml)")
    for secret in SECRET_FIELDS:
        if secret in lowered:
            raise ConfigError(
                f"{path}: remove '{secret}'; secrets are read only from the environment or .env "
                f"({secret.upper()})"
            )
    return lowered


def load_settings(**overrides: Any) -> Settings:
    """Builds the settings or raises ConfigError with one line naming the first bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def load_tool_settings(**overrides: Any) -> ToolSettings:
    """Like `load_settings`, for the terminal commands: the secrets may be missing."""
    try:
        return ToolSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        # A list's index is no part of the setting's name: "COMMAND_GUILD_IDS (item 2)", not "…__1".
        name = "__".join(str(part) for part in error["loc"] if not isinstance(part, int)).upper()
        items = [part for part in error["loc"] if isinstance(part, int)]
        if items:
            name += f" (item {items[0] + 1})"
        if error["type"] == "missing":
            problems.append(f"{name} is not set")
        elif error["type"] == "extra_forbidden":
            problems.append(f"{name} is not a known setting (see config/bot.example.toml)")
        else:
            problems.append(f"{name} {error['msg'].removeprefix('Value error, ')}".strip())
    return "invalid configuration: " + "; ".join(problems)
