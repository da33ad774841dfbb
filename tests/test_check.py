"""`kling-bot check` against the fake Discord and the fake sunra on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from bot.check import Finding, exit_code, money, run_checks
from bot.config import ToolSettings
from bot.invite import INSTALL_PERMISSIONS
from bot.quota.rules import QuotaSettings
from bot.store import Database
from bot.store.migrations import migrations
from tests import postgres
from tests.conftest import skip_without_postgres
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.sunra_server import FakeSunra
from tests.postgres import url_of

ROOT = Path(__file__).resolve().parent.parent
SUNRA_KEY = "sk-check-0123456789abcdef"


def settings_for(discord: FakeDiscord, sunra: FakeSunra, database: Path, **overrides: Any) -> ToolSettings:
    values: dict[str, Any] = {
        "discord_token": discord.token,
        "sunra_key": SUNRA_KEY,
        "discord_api_url": discord.api_url,
        "sunra_api_url": sunra.url,
        "database_url": f"sqlite:///{database}",
    }
    values.update(overrides)
    return ToolSettings(**values)


async def findings_of(settings: ToolSettings) -> list[Finding]:
    return [finding async for finding in run_checks(settings)]


def by_topic(findings: list[Finding], topic: str) -> Finding:
    matching = [f for f in findings if f.topic == topic]
    assert len(matching) == 1, (topic, findings)
    return matching[0]


def no_secret_in(findings: list[Finding], *secrets: str) -> None:
    text = "\n".join(f.line() for f in findings)
    for secret in secrets:
        assert secret not in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_good_settings_pass_and_give_the_install_link(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        settings = settings_for(discord, sunra, tmp_path / "bot.sqlite3", quota={"global_daily_usd": 20})
        findings = await findings_of(settings)
    assert exit_code(findings) == 0, [f.line() for f in findings]
    assert "accepted: bot user" in by_topic(findings, "Discord token").text
    link = by_topic(findings, "install link")
    assert link.level == "ok"
    assert (
        f"https://discord.com/oauth2/authorize?client_id={p.DEFAULT_APPLICATION_ID}"
        f"&scope=bot+applications.commands&permissions={INSTALL_PERMISSIONS.value}"
    ) in link.text
    user_link = by_topic(findings, "user install link")
    assert (
        user_link.level == "ok"
        and (
            f"https://discord.com/oauth2/authorize?client_id={p.DEFAULT_APPLICATION_ID}"
            "&integration_type=1&scope=applications.commands"
        )
        in user_link.text
    )
    assert by_topic(findings, "sunra key").level == "ok"
    assert sunra.count("status") == 1 and sunra.count("submit") == 0  # costs nothing, creates no job
    database = by_topic(findings, "database")
    assert database.level == "note" and "does not exist yet" in database.text
    assert not (tmp_path / "bot.sqlite3").exists()  # checking never creates the database
    assert by_topic(findings, "global cap").level == "ok"
    no_secret_in(findings, discord.token, SUNRA_KEY)


async def test_a_live_key_without_a_global_daily_cap_fails(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        findings = await findings_of(settings_for(discord, sunra, tmp_path / "bot.sqlite3"))
    cap = by_topic(findings, "global cap")
    assert cap.level == "fail" and "QUOTA__GLOBAL_DAILY_USD" in cap.text
    assert exit_code(findings) == 1


async def test_a_refused_token_fails(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        findings = await findings_of(
            settings_for(discord, sunra, tmp_path / "db.sqlite3", discord_token="not-the-token")
        )
    token = by_topic(findings, "Discord token")
    assert token.level == "fail" and "refused by Discord (401)" in token.text
    assert "client_id=<APPLICATION_ID>" in by_topic(findings, "install link").text
    assert "integration_type=1" in by_topic(findings, "user install link").text
    assert by_topic(findings, "sunra key").level == "ok"
    assert exit_code(findings) == 1
    no_secret_in(findings, "not-the-token", SUNRA_KEY)


async def test_a_refused_key_fails(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        sunra.reject_key()
        findings = await findings_of(settings_for(discord, sunra, tmp_path / "db.sqlite3"))
    key = by_topic(findings, "sunra key")
    assert key.level == "fail" and "refused" in key.text and "(401)" in key.text
    assert by_topic(findings, "Discord token").level == "ok"
    assert exit_code(findings) == 1
    no_secret_in(findings, SUNRA_KEY)


async def test_unreachable_apis_fail(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        findings = await findings_of(
            settings_for(
                discord,
                sunra,
                tmp_path / "db.sqlite3",
                sunra_api_url=f"{closed}/v1",
                discord_api_url=f"{closed}/api/v10",
            )
        )
    for topic in ("Discord token", "sunra key"):
        finding = by_topic(findings, topic)
        assert finding.level == "fail" and "cannot reach" in finding.text, finding
    assert exit_code(findings) == 1


async def test_database_current_pending_and_broken(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        current = tmp_path / "current.sqlite3"
        await (await Database.open(current)).close()
        found = by_topic(await findings_of(settings_for(discord, sunra, current)), "database")
        latest = migrations("sqlite")[-1].name
        assert (
            found.level == "ok"
            and f"SQLite {current} is reachable, migrations current ({latest})" in found.text
        )

        older = tmp_path / "older.sqlite3"
        await (await Database.open(older)).close()
        with sqlite3.connect(older) as conn:
            conn.execute("DELETE FROM schema_migrations WHERE name = '0002_quota.sql'")
        found = by_topic(await findings_of(settings_for(discord, sunra, older)), "database")
        assert found.level == "note" and "to apply at the next start: 0002_quota.sql" in found.text

        a_file = tmp_path / "a-file"
        a_file.write_text("not a folder")
        found = by_topic(await findings_of(settings_for(discord, sunra, a_file / "db.sqlite3")), "database")
        assert found.level == "fail" and "is not a folder" in found.text

        broken = tmp_path / "broken.sqlite3"
        broken.write_bytes(b"this is not a database" * 100)
        findings = await findings_of(settings_for(discord, sunra, broken))
        assert by_topic(findings, "database").level == "fail"
        assert exit_code(findings) == 1


async def test_settings_that_differ_are_listed_and_caps_in_usd(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        settings = settings_for(
            discord,
            sunra,
            tmp_path / "db.sqlite3",
            quota={"daily_credits": 20, "global_daily_usd": 12.5},
        )
        findings = await findings_of(settings)
    lines = [f.text for f in findings if f.topic == "setting"]
    assert "QUOTA__DAILY_CREDITS = 20 (default 50)" in lines
    assert "QUOTA__GLOBAL_DAILY_USD = 12.5 (default 0.0)" in lines
    assert "DISCORD_TOKEN is set (not shown)" in lines
    assert not any("QUOTA__PERIOD" in line for line in lines)  # unchanged settings are not listed
    assert "member allowance 20 cr per day ($1.40)" in by_topic(findings, "caps").text
    assert by_topic(findings, "global cap").text.startswith("$12.50 per UTC day")
    assert "5 s with audio $0.70 (10 cr)" in by_topic(findings, "prices").text


def test_an_allowance_of_0_reads_as_no_operator_bound() -> None:
    # QUOTA__DAILY_CREDITS=0 lets each server set its own allowance; "0 cr per day" read as "nothing".
    caps = by_topic(money(QuotaSettings(daily_credits=0, global_daily_usd=5)), "caps").text
    assert caps.startswith("member allowance: set by each server, no operator bound · ")
    assert "0 cr" not in caps


async def test_the_command_exits_non_zero_and_never_prints_a_secret(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SUNRA_", "QUOTA__"))}
        env.update(
            PYTHONPATH=str(ROOT),
            DISCORD_TOKEN=discord.token,
            SUNRA_KEY=SUNRA_KEY,
            DISCORD_API_URL=discord.api_url,
            SUNRA_API_URL=sunra.url,
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
            QUOTA__GLOBAL_DAILY_USD="20",
        )

        async def run() -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "check", cwd=tmp_path, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode is not None
            return proc.returncode, out.decode()

        code, out = await run()
        assert code == 0, out
        sunra.reject_key()
        code, out = await run()
    assert code == 1
    assert re.search(r"^FAIL sunra key: refused", out, re.M), out
    assert discord.token not in out and SUNRA_KEY not in out


def test_the_readme_states_the_permissions_the_code_needs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stated = set(re.findall(r"permissions[= ]+`?(\d+)", readme))
    assert stated == {str(INSTALL_PERMISSIONS.value)}


def test_an_invalid_setting_fails_with_its_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SUNRA_", "QUOTA__"))}
    env.update(PYTHONPATH=str(ROOT), QUOTA__PERIOD="hourly", SUNRA_KEY=SUNRA_KEY)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL settings: invalid configuration: QUOTA__PERIOD")
    assert SUNRA_KEY not in done.stdout + done.stderr


async def test_secrets_pasted_with_surrounding_whitespace_are_accepted_and_never_shown(
    tmp_path: Path,
) -> None:
    # A key read from a file or a Kubernetes secret often ends in a newline; httpx refused such a header
    # and its error quoted the header, key included.
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        findings = await findings_of(
            settings_for(
                discord,
                sunra,
                tmp_path / "db.sqlite3",
                discord_token=f" {discord.token}\n",
                sunra_key=f"{SUNRA_KEY}\r\n",
            )
        )
    assert by_topic(findings, "Discord token").level == "ok", by_topic(findings, "Discord token")
    assert by_topic(findings, "sunra key").level == "ok", by_topic(findings, "sunra key")
    no_secret_in(findings, discord.token, SUNRA_KEY)


def test_a_secret_with_a_character_no_header_can_carry_fails_with_its_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SUNRA_", "QUOTA__"))}
    env.update(PYTHONPATH=str(ROOT), DISCORD_TOKEN="t\u00f8ken-pasted-from-a-chat", SUNRA_KEY=SUNRA_KEY)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL settings: invalid configuration: DISCORD_TOKEN has a space"), done
    assert "Traceback" not in done.stderr and "pasted-from" not in done.stdout + done.stderr


async def test_postgresql_engine_reachability_and_migrations_without_the_password(
    tmp_path: Path, postgres_url: str
) -> None:
    # Trust authentication ignores the password; it stands for a real one that must never be shown.
    with_password = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:pg-s3cret@")
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:

        async def database_finding(url: str) -> tuple[Finding, list[Finding]]:
            findings = await findings_of(settings_for(discord, sunra, tmp_path, database_url=url))
            no_secret_in(findings, "pg-s3cret")
            return by_topic(findings, "database"), findings

        found, findings = await database_finding(with_password)  # empty: nothing applied yet
        assert found.level == "note" and found.text.startswith("PostgreSQL postgresql://postgres:[redacted]@")
        assert "to apply at the next start: 0001_jobs.sql" in found.text
        assert any(
            f.topic == "setting" and "DATABASE_URL = postgresql://postgres:[redacted]@" in f.text
            for f in findings
        )

        await (await Database.open(postgres_url)).close()
        found, _ = await database_finding(with_password)
        assert (
            found.level == "ok" and f"migrations current ({migrations('postgresql')[-1].name})" in found.text
        )

        found, findings = await database_finding(url_of("kling_no_such_database_here"))
        assert found.level == "fail" and "does not exist" in found.text and exit_code(findings) == 1

        closed = f"postgresql://postgres:pg-s3cret@127.0.0.1:{free_port()}/kling"
        found, findings = await database_finding(closed)
        assert found.level == "fail" and "cannot connect" in found.text and exit_code(findings) == 1


def start_the_bot(cwd: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot` on this database, with secrets that pass the settings: it stops at the database."""
    env = {**os.environ, "DISCORD_TOKEN": "abc.def", "SUNRA_KEY": SUNRA_KEY, "DATABASE_URL": database_url}
    env.pop("BOT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bot"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_bot_stops_with_one_line_when_postgresql_does_not_answer(tmp_path: Path) -> None:
    done = start_the_bot(tmp_path, f"postgresql://bot:pg-s3cret@127.0.0.1:{free_port()}/kling")
    assert done.returncode == 1
    assert "database: postgresql://bot:[redacted]@127.0.0.1:" in done.stderr
    assert "cannot connect" in done.stderr
    assert "Traceback" not in done.stderr and "pg-s3cret" not in done.stderr + done.stdout


async def test_a_database_not_encoded_utf8_stops_check_and_start_with_one_sentence(tmp_path: Path) -> None:
    # SQL_ASCII, what `initdb` picks under the C locale: the ICU collation of migration 0004 cannot be
    # made there, so without the check the bot stopped with a traceback, three migrations applied.
    skip_without_postgres()
    ascii_db = "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    sentence = (
        "the database is encoded SQL_ASCII but the bot needs UTF8; create it with createdb --encoding=UTF8"
    )
    async with postgres.fresh_database(ascii_db) as url:
        async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
            findings = await findings_of(settings_for(discord, sunra, tmp_path, database_url=url))
        found = by_topic(findings, "database")
        assert found.level == "fail" and sentence in found.text and exit_code(findings) == 1

        done = await asyncio.to_thread(start_the_bot, tmp_path, url)
        assert done.returncode == 1
        assert sentence in done.stderr and "Traceback" not in done.stderr, done.stderr
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None  # nothing written
        finally:
            await conn.close()
