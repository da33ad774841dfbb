"""Settings: TOML file, environment, .env, and the one-line errors at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
SECRET = "super-secret-token-value-123"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty working directory and no bot variables, whatever the developer's shell has."""
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "SUNRA_", "DATABASE_", "BOT_", "QUOTA__", "JOBS__", "MEDIA__")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_with_only_the_secrets(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    settings = load_settings()
    assert settings.rest_base == "https://discord.com/api/v10"
    assert settings.sunra_base == "https://api.sunra.ai/v1"
    assert settings.database_url == "sqlite:///data/bot.sqlite3"
    assert settings.discord_gateway_url is None
    assert settings.quota.daily_credits == 50
    assert settings.quota.max_concurrent_jobs == 2
    assert settings.quota.guild_credits == 0
    assert settings.quota.global_daily_usd == 0
    assert SECRET not in repr(settings)


def test_toml_then_env_then_nested(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "config").mkdir()
    (clean_env / "config" / "bot.toml").write_text(
        'sunra_api_url = "http://127.0.0.1:9/v1"\nlog_level = "debug"\n[quota]\ndaily_credits = 7\n'
        "guild_credits = 100\n"
    )
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    monkeypatch.setenv("QUOTA__DAILY_CREDITS", "9")
    monkeypatch.setenv("DISCORD_API_URL", "http://127.0.0.1:8/api/v10")
    monkeypatch.setenv("DISCORD_GATEWAY_URL", "ws://127.0.0.1:8/gateway")
    monkeypatch.setenv("UNRELATED_VARIABLE", "whatever")
    settings = load_settings()
    assert settings.sunra_base == "http://127.0.0.1:9/v1"
    assert settings.log_level == "DEBUG"
    assert settings.quota.daily_credits == 9  # the environment wins over the file
    assert settings.quota.guild_credits == 100  # the file's other nested keys stay
    assert settings.rest_base == "http://127.0.0.1:8/api/v10"
    assert settings.discord_gateway_url == "ws://127.0.0.1:8/gateway"


def test_dotenv_is_read_and_unrelated_keys_ignored(clean_env: Path) -> None:
    (clean_env / ".env").write_text(f"DISCORD_TOKEN={SECRET}\nSUNRA_KEY=sk-2\nSOMETHING_ELSE=1\n")
    settings = load_settings()
    assert settings.sunra_key.get_secret_value() == "sk-2"


def test_bot_config_names_the_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    custom = clean_env / "custom.toml"
    custom.write_text("[quota]\nmax_concurrent_jobs = 5\n")
    monkeypatch.setenv("BOT_CONFIG", str(custom))
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    assert load_settings().quota.max_concurrent_jobs == 5
    monkeypatch.setenv("BOT_CONFIG", str(clean_env / "missing.toml"))
    with pytest.raises(ConfigError, match="BOT_CONFIG"):
        load_settings()


def test_missing_secret_is_named(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "DISCORD_TOKEN is not set" in str(caught.value)


def test_a_bad_list_item_is_named_by_its_setting_and_place(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    monkeypatch.setenv("COMMAND_GUILD_IDS", "123,abc")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith("invalid configuration: COMMAND_GUILD_IDS (item 2) ")
    assert "__1" not in str(caught.value)


def test_secrets_in_the_file_are_refused(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "config").mkdir()
    (clean_env / "config" / "bot.toml").write_text(f'discord_token = "{SECRET}"\n')
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "discord_token" in str(caught.value) and SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("DISCORD_API_URL", "not a url", "DISCORD_API_URL"),
        ("DISCORD_GATEWAY_URL", "http://x", "DISCORD_GATEWAY_URL"),
        ("DATABASE_URL", "postgres://db", "DATABASE_URL"),
        ("QUOTA__DAILY_CREDITS", "-3", "QUOTA__DAILY_CREDITS"),
        ("SUNRA_KEY", "   ", "SUNRA_KEY"),
    ],
)
def test_invalid_values_are_named_without_echo(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert named in message and "\n" not in message and SECRET not in message


def test_start_up_stops_with_one_line(clean_env: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DISCORD_", "SUNRA_"))}
    env["SUNRA_KEY"] = SECRET
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=clean_env, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "DISCORD_TOKEN" in lines[0] and SECRET not in done.stderr


def test_logs_never_show_a_secret_even_in_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from bot.logs import RedactSecrets

    secret = "sk-very-secret-value"
    logger = logging.getLogger("test.redaction")
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecrets([secret, "x"]))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("key is %s", secret)
        try:
            raise RuntimeError(f"Authorization: Key {secret}")
        except RuntimeError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert secret not in err and err.count("[redacted]") == 2 and "RuntimeError" in err


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('sunra_api = "https://x"\n', "sunra_api"),
        ("[quota]\ndaly_credits = 5\n", "QUOTA__DALY_CREDITS is not a known setting"),
        ("[jobs]\nmax_lifetime = 5\n", "JOBS__MAX_LIFETIME"),
    ],
)
def test_a_misspelt_setting_stops_start_up_and_is_named(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, toml: str, named: str
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    (clean_env / "config").mkdir()
    (clean_env / "config" / "bot.toml").write_text(toml)
    with pytest.raises(ConfigError, match=named):
        load_settings()


@pytest.mark.parametrize("value", ["inf", "Infinity", "nan"])
def test_an_endless_job_lifetime_stops_start_up(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A deadline of infinity was accepted (gt=0 lets it through) and then refused by the database with
    every command's record (found by a review of 8132dae): it stops start-up, named, instead."""
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    monkeypatch.setenv("JOBS__MAX_LIFETIME_MINUTES", value)
    with pytest.raises(ConfigError, match="JOBS__MAX_LIFETIME_MINUTES"):
        load_settings()


def test_the_example_configuration_is_valid_and_holds_the_defaults(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    defaults = load_settings()
    monkeypatch.setenv("BOT_CONFIG", str(ROOT / "config" / "bot.example.toml"))
    assert load_settings() == defaults


@pytest.mark.parametrize(("value", "ids"), [("123", [123]), ("123, 456", [123, 456]), ("[7]", [7]), ("", [])])
def test_command_guild_ids_take_one_id_or_a_list(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, value: str, ids: list[int]
) -> None:
    # A newcomer sets COMMAND_GUILD_IDS to their server's id; "Input should be a valid list" stopped them.
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("SUNRA_KEY", "sk-1")
    monkeypatch.setenv("COMMAND_GUILD_IDS", value)
    assert load_settings().command_guild_ids == ids
