"""compose.yaml, read as data: the two bot processes make one fleet on the compose's PostgreSQL, the
operator must write the secrets and the daily budget, and every setting it names is one bot/config.py
knows (a renamed setting breaks this test instead of being silently ignored by the bot).

Docker is not needed: the file is parsed with PyYAML (it uses anchors and merge keys, `<<: *bot`) and
`${NAME:?message}` is interpolated here the way compose does it.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from bot.config import DEFAULT_CONFIG_PATH, SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
# What compose interpolates: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}.
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
BUDGET = "QUOTA__GLOBAL_DAILY_USD"
REQUIRED = (*(name.upper() for name in SECRET_FIELDS), BUDGET)
OPERATOR = {"DISCORD_TOKEN": "t.o.k", "SUNRA_KEY": "key", "POSTGRES_PASSWORD": "pw", BUDGET: "20"}


class Unset(Exception):
    """A `${NAME:?message}` whose variable is not set: compose refuses to start with the message."""


def interpolate(value: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        found = env.get(name)
        empty = found is None or (found == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and empty:
            raise Unset(f"{name}: {arg}")
        if op in (":-", "-") and empty:
            return arg
        return found or ""

    return VARIABLE.sub(one, value)


def load(env: dict[str, str] = OPERATOR) -> dict[str, Any]:
    """The services as compose sees them with `env` as the environment."""
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return interpolate(node, env) if isinstance(node, str) else node

    return walk(raw["services"])  # type: ignore[no-any-return]


def raw_services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]  # type: ignore[no-any-return]


def bots(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {name: s for name, s in services.items() if "SHARD_IDS" in (s.get("environment") or {})}
    assert len(found) >= 2, "compose.yaml should run at least two bot processes"
    return found


def postgres_service(services: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    [(name, service)] = [
        (n, s) for n, s in services.items() if str(s.get("image", "")).startswith("postgres")
    ]
    return name, service


def test_the_shards_cover_the_fleet_once() -> None:
    services = load()
    counts = {name: bot["environment"]["SHARD_COUNT"] for name, bot in bots(services).items()}
    assert len(set(counts.values())) == 1, f"SHARD_COUNT differs between the bots: {counts}"
    count = int(next(iter(counts.values())))
    owned = [
        int(part)
        for bot in bots(services).values()
        for part in str(bot["environment"]["SHARD_IDS"]).split(",")
    ]
    assert sorted(owned) == list(range(count)), f"SHARD_IDS {owned} should name 0..{count - 1} once each"
    # Each bot's environment is valid for the bot itself (SHARD_IDS within SHARD_COUNT, the URL parses, …).
    for bot in bots(services).values():
        nested: dict[str, Any] = {}
        for key, value in bot["environment"].items():
            *parents, leaf = key.lower().split("__")
            place = nested
            for parent in parents:
                place = place.setdefault(parent, {})
            place[leaf] = value
        Settings.model_validate(nested)


def test_the_database_is_the_compose_postgres() -> None:
    services = load()
    name, postgres = postgres_service(services)
    env = postgres["environment"]
    for bot_name, bot in bots(services).items():
        url = urlsplit(bot["environment"]["DATABASE_URL"])
        assert url.scheme in ("postgresql", "postgres"), bot_name
        assert (url.hostname, url.port) == (name, 5432), bot_name
        assert url.username == env["POSTGRES_USER"] and url.password == env["POSTGRES_PASSWORD"], bot_name
        assert url.path == f"/{env['POSTGRES_DB']}", bot_name
        assert bot["depends_on"][name]["condition"] == "service_healthy", bot_name
    assert "--encoding=UTF8" in env.get("POSTGRES_INITDB_ARGS", ""), "the bot needs a UTF-8 database"
    assert postgres.get("healthcheck", {}).get("test"), "postgres needs a health check to be waited on"


def test_secrets_and_the_budget_must_be_written() -> None:
    services = raw_services()
    pattern = {name: re.compile(rf"^\$\{{{name}:\?[^}}]+\}}$") for name in REQUIRED}
    for bot_name, bot in bots(services).items():
        env = bot["environment"]
        for name in REQUIRED:
            assert pattern[name].match(str(env.get(name, ""))), f"{bot_name}: {name} should be ${{{name}:?…}}"
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"], bot_name
    _, postgres = postgres_service(services)
    assert str(postgres["environment"]["POSTGRES_PASSWORD"]).startswith("${POSTGRES_PASSWORD:?")
    # As compose reads it: unset or empty, each one stops it with a message naming the variable.
    for name in (*REQUIRED, "POSTGRES_PASSWORD"):
        for missing in ({k: v for k, v in OPERATOR.items() if k != name}, {**OPERATOR, name: ""}):
            with pytest.raises(Unset, match=name):
                load(missing)


def test_health_check_config_mount_and_ports() -> None:
    services = load()
    workdir = next(
        line.split(None, 1)[1].strip()
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("WORKDIR ")
    )
    config_dir = str(PurePosixPath(workdir) / DEFAULT_CONFIG_PATH.parent.as_posix())
    published = []
    for name, bot in bots(services).items():
        env = bot["environment"]
        test = bot.get("healthcheck", {}).get("test")
        assert test and "bot.healthcheck" in test, f"{name}: no health check asking /healthz"
        assert int(env["HTTP__PORT"]) > 0 and env["HTTP__HOST"] == "0.0.0.0", name

        mounts = [str(v).split(":") for v in bot.get("volumes", [])]
        config = [m for m in mounts if len(m) >= 2 and m[1] == config_dir]
        assert config, f"{name}: ./config should be mounted at {config_dir}, where the bot reads it"
        [(source, _, *options)] = config
        assert source == "./config", name
        assert options and "ro" in options[0].split(","), f"{name}: the config mount should be read-only"

        for port in bot.get("ports", []):
            *host, container = str(port).split(":")
            assert container == env["HTTP__PORT"], f"{name}: {port} does not publish HTTP__PORT"
            published.append(":".join(host))
    assert len(published) == len(set(published)), f"two bots publish the same host port: {published}"
    # Every bot's config mount is the same folder, so all processes read one file.
    sources = {tuple(str(v) for v in bot.get("volumes", [])) for bot in bots(services).values()}
    assert len(sources) == 1


def test_every_setting_named_exists() -> None:
    def known(model: type[BaseModel], parts: list[str]) -> bool:
        field = model.model_fields.get(parts[0])
        if field is None:
            return False
        if len(parts) == 1:
            return True
        nested = field.annotation
        return isinstance(nested, type) and issubclass(nested, BaseModel) and known(nested, parts[1:])

    for name, bot in bots(load()).items():
        for key in bot["environment"]:
            assert known(Settings, key.lower().split("__")), f"{name}: {key} is not in bot/config.py"


def test_interpolation_reads_like_compose() -> None:
    assert interpolate("a${X:-d}b${Y-e}", {"X": ""}) == "adbe"
    assert interpolate("${X?gone}", {"X": ""}) == ""
    with pytest.raises(Unset, match="X: set X"):
        interpolate("${X:?set X}", {"X": ""})
