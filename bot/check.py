"""`kling-bot check`: is this configuration going to work? One line per finding, no secret ever shown.

Each check asks the real service something that costs nothing and changes nothing: Discord's
`GET /users/@me` for the token, the status of a request id that cannot exist for the sunra key (404 =
the key was accepted, 401/403 = refused), a read-only look at the database (the SQLite file, or PostgreSQL's
schema_migrations on one short connection). A refused token or key, an unreachable API or database,
or a sunra key with no global daily USD cap, is a failure (exit 1); a database not created yet is
reported, not a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, SecretStr

from bot.config import SECRET_FIELDS, ToolSettings, config_path
from bot.fleet import lease_count, mismatch
from bot.invite import INSTALL_PERMISSIONS, install_url, user_install_url
from bot.quota.rules import MICROS_PER_USD, PERIOD_NOUN, QuotaSettings, format_usd, price_list, usd_micros
from bot.redact import redact_urls
from bot.store.db import ENGINE_NAMES, DatabaseUnreachable, database_status, parse_database_url, redact_url
from bot.store.migrations import migrations, newer_schema
from bot.sunra import (
    AuthError,
    InsufficientFunds,
    RequestNotFound,
    RetryPolicy,
    SunraClient,
    SunraError,
    Timeouts,
)

Level = Literal["ok", "note", "fail"]
DISCORD_TIMEOUT_SECONDS = 10.0
SUNRA_TIMEOUTS = Timeouts(connect=10.0, read=15.0, pool=10.0)
# What sunra charges per second of video (see GUIDE: $0.07 silent, $0.14 audio, $0.168 voices).
API_USD_PER_SECOND = {"silent": 0.07, "audio": 0.14, "voices": 0.168}


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    topic: str
    text: str

    def line(self) -> str:
        # A setting or an error may hold a URL with credentials (a proxy's, a database's): never shown.
        return redact_urls(f"{self.level.upper():<4} {self.topic}: {self.text}")


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when nothing failed, else 1."""
    return 1 if any(finding.level == "fail" for finding in findings) else 0


async def run_checks(settings: ToolSettings) -> AsyncIterator[Finding]:
    """The findings in the order they are printed; network checks run one after the other."""
    path = config_path()
    yield Finding("ok", "config file", str(path) if path else "none (environment, .env and defaults)")
    for finding in differing_settings(settings):
        yield finding
    async for finding in check_discord(settings):
        yield finding
    yield await check_sunra(settings)
    yield await check_database(settings)
    for finding in money(settings.quota, live_key=settings.sunra_key is not None):
        yield finding


# ----- Discord ----------------------------------------------------------------------------------------


async def check_discord(settings: ToolSettings) -> AsyncIterator[Finding]:
    placeholder = install_url(0).replace("client_id=0", "client_id=<APPLICATION_ID>")
    token = settings.discord_token
    if token is None:
        yield Finding("fail", "Discord token", "DISCORD_TOKEN is not set")
        yield Finding("note", "install link", placeholder)
        yield Finding("note", "user install link", _user_install_placeholder())
        return
    base = settings.rest_base
    headers = {"Authorization": f"Bot {token.get_secret_value()}", "User-Agent": "kling-discord-bot"}
    async with httpx.AsyncClient(headers=headers, timeout=DISCORD_TIMEOUT_SECONDS) as http:
        try:
            me = await http.get(f"{base}/users/@me")
        except httpx.HTTPError as error:
            yield Finding("fail", "Discord token", f"cannot reach {base} ({type(error).__name__})")
            yield Finding("note", "install link", placeholder)
            yield Finding("note", "user install link", _user_install_placeholder())
            return
        if me.status_code in (401, 403):
            yield Finding(
                "fail",
                "Discord token",
                f"refused by Discord ({me.status_code}); reset it under Bot → Reset Token in the Developer "
                "Portal and set DISCORD_TOKEN",
            )
            yield Finding("note", "install link", placeholder)
            yield Finding("note", "user install link", _user_install_placeholder())
            return
        user = _json_object(me) if me.status_code == 200 else None
        if user is None or "id" not in user:
            yield Finding("fail", "Discord token", f"{base}/users/@me answered HTTP {me.status_code}")
            yield Finding("note", "install link", placeholder)
            yield Finding("note", "user install link", _user_install_placeholder())
            return
        name = str(user.get("username", "?"))
        yield Finding("ok", "Discord token", f"accepted: bot user {name} (id {user['id']})")
        application_id = int(user["id"])  # a bot user's id is its application's id
        with contextlib.suppress(httpx.HTTPError, ValueError):
            app = await http.get(f"{base}/oauth2/applications/@me")
            found = _json_object(app) if app.status_code == 200 else None
            if found is not None and "id" in found:
                application_id = int(found["id"])
    yield Finding(
        "ok",
        "install link",
        f"{install_url(application_id)} (permissions {INSTALL_PERMISSIONS.value}: view channels, send "
        "messages, embed links, attach files, read message history, send messages in threads)",
    )
    yield Finding(
        "ok",
        "user install link",
        f"{user_install_url(application_id)} (a member adds /animate to their own account; it answers "
        "wherever they are, drawing on QUOTA__DM_CREDITS, and the app's Installation settings must allow "
        "User Install)",
    )


def _user_install_placeholder() -> str:
    return user_install_url(0).replace("client_id=0", "client_id=<APPLICATION_ID>")


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# ----- sunra ------------------------------------------------------------------------------------------


async def check_sunra(settings: ToolSettings) -> Finding:
    key = settings.sunra_key
    if key is None:
        return Finding("fail", "sunra key", "SUNRA_KEY is not set")
    base = settings.sunra_base
    # The client would log a rejected key as critical for a running bot; here the finding says it.
    quiet = logging.getLogger("bot.sunra")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    try:
        async with SunraClient(base, key, retry=RetryPolicy(attempts=1), timeouts=SUNRA_TIMEOUTS) as client:
            await client.status(f"kling-bot-check-{secrets.token_hex(8)}")
    except RequestNotFound:
        return Finding("ok", "sunra key", f"accepted by {base} (an unknown request id answered 404)")
    except AuthError as error:
        return Finding("fail", "sunra key", f"refused by {base} ({error.status}); check SUNRA_KEY")
    except InsufficientFunds:
        return Finding("fail", "sunra key", "accepted, but the sunra.ai account has no balance left (402)")
    except SunraError as error:
        if error.status is None:
            return Finding("fail", "sunra key", f"cannot reach {base} ({error})")
        return Finding("fail", "sunra key", f"{base} answered {error.status}: {error}")
    finally:
        quiet.setLevel(level)
    return Finding("ok", "sunra key", f"accepted by {base}")


# ----- database ---------------------------------------------------------------------------------------


async def check_database(settings: ToolSettings) -> Finding:
    """The engine, whether the database answers, and the migrations it still lacks; changes nothing
    (a SQLite file is opened read-only and never created). The URL is shown without its password."""
    try:
        target, status = await database_status(settings.database_url)
    except DatabaseUnreachable as error:
        engine = ENGINE_NAMES[parse_database_url(settings.database_url).engine]
        return Finding("fail", "database", f"{engine} {error}")
    engine, shown = ENGINE_NAMES[target.engine], target.shown
    if not status.exists and target.path is not None:
        path = target.path
        folder = await asyncio.to_thread(_nearest_existing, path.parent)
        if not await asyncio.to_thread(folder.is_dir):
            return Finding("fail", "database", f"{engine} {path} cannot be created: {folder} is not a folder")
        if not await asyncio.to_thread(os.access, folder, os.W_OK):
            return Finding("fail", "database", f"{engine} {path} cannot be created: {folder} is not writable")
        return Finding(
            "note",
            "database",
            f"{engine} {path} does not exist yet; it is created with {len(status.pending)} migrations at "
            "first start",
        )
    if status.unknown:
        newest = status.unknown[-1].partition("_")[0]
        known = migrations(target.engine)[-1].version
        return Finding("fail", "database", f"{engine} {newer_schema(shown, newest, known)}")
    count = settings.shard_count
    if others := sorted(set(status.fleet) - {lease_count(count)}):
        return Finding("fail", "database", f"{engine} {shown}: {mismatch(others[0], count)}")
    if status.pending:
        return Finding(
            "note",
            "database",
            f"{engine} {shown} is reachable; to apply at the next start: {', '.join(status.pending)}",
        )
    latest = status.applied[-1] if status.applied else "none"
    return Finding("ok", "database", f"{engine} {shown} is reachable, migrations current ({latest})")


def _nearest_existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


# ----- money ------------------------------------------------------------------------------------------


def money(quota: QuotaSettings, *, live_key: bool = True) -> list[Finding]:
    """Prices and caps. No global daily USD cap with a sunra key is a failure: without it, what every
    server together may spend is bounded only by the member allowances times the number of members."""
    prices = " · ".join(
        f"{choice} ${format_usd(usd_micros(credits, quota))} ({credits} cr)"
        for choice, credits in price_list(quota).items()
    )
    findings = [Finding("ok", "prices", f"1 credit = ${quota.usd_per_credit:g}; {prices}")]
    charged = quota.usd_per_credit * quota.credits_per_second
    ours = {
        "silent": charged,
        "audio": charged * quota.audio_multiplier,
        "voices": charged * quota.voices_multiplier,
    }
    below = [kind for kind, usd in ours.items() if usd + 1e-9 < API_USD_PER_SECOND[kind]]
    if below:
        findings.append(
            Finding(
                "note",
                "prices",
                f"members are charged less than sunra's price per second for {', '.join(below)} video: "
                "the USD figures and the global cap undercount the real bill",
            )
        )
    noun = PERIOD_NOUN[quota.period]

    def usd(credits: int) -> str:
        return f"${format_usd(usd_micros(credits, quota))}"

    caps = [
        f"member allowance {quota.daily_credits} cr per {noun} ({usd(quota.daily_credits)})"
        if quota.daily_credits
        # 0 is no operator bound, not "members get nothing" (rules.within_operator_limit).
        else "member allowance: set by each server, no operator bound",
        f"server cap {quota.guild_credits} cr per {noun} ({usd(quota.guild_credits)})"
        if quota.guild_credits
        else "no server cap",
        f"DM allowance {quota.dm_credits} cr ({usd(quota.dm_credits)})" if quota.dm_credits else "DMs off",
        f"jobs at the API at once: {quota.max_jobs_in_flight or 'no cap'}",
    ]
    findings.append(Finding("ok", "caps", " · ".join(caps)))
    if quota.global_daily_usd > 0:
        cap = round(quota.global_daily_usd * MICROS_PER_USD)
        findings.append(
            Finding(
                "ok", "global cap", f"${format_usd(cap)} per UTC day across every server and the terminal"
            )
        )
    else:
        findings.append(
            Finding(
                "fail" if live_key else "note",
                "global cap",
                "none (QUOTA__GLOBAL_DAILY_USD=0): spending is bounded only by the allowances above, times "
                "every member of every server; set QUOTA__GLOBAL_DAILY_USD to what you accept to spend a day",
            )
        )
    return findings


# ----- settings ---------------------------------------------------------------------------------------


def differing_settings(settings: ToolSettings) -> list[Finding]:
    """One finding per setting that is not its default; secrets only say that they are set."""
    findings = []
    for name in SECRET_FIELDS:
        if isinstance(getattr(settings, name), SecretStr):
            findings.append(Finding("ok", "setting", f"{name.upper()} is set (not shown)"))
    for name, value, default in _changes(settings, ToolSettings.model_fields, ""):
        findings.append(Finding("ok", "setting", f"{name} = {value} (default {default})"))
    return findings


def _changes(model: BaseModel, fields: dict[str, Any], prefix: str) -> list[tuple[str, str, str]]:
    changes: list[tuple[str, str, str]] = []
    for name, field in fields.items():
        if name in SECRET_FIELDS:
            continue
        value = getattr(model, name)
        default = field.get_default(call_default_factory=True)
        label = f"{prefix}{name}".upper()
        if isinstance(value, BaseModel):
            changes.extend(_changes(value, type(value).model_fields, f"{label}__"))
        elif _shown(value) != _shown(default):
            if name == "database_url":  # it may hold the database's password
                value, default = redact_url(str(value)), redact_url(str(default))
            changes.append((label, _shown(value), _shown(default)))
    return changes


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)
