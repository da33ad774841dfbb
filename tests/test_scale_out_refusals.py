"""What a new server owner, or a hostile one, gets wrong when scaling out, and the one polite line each
mistake ends in: a schema newer than the code, a password with URL-special characters, a fleet started
with another SHARD_COUNT, a database that cannot be migrated, NUL characters, unusable SQLite paths."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.check import check_database
from bot.config import ToolSettings
from bot.logs import log_handler
from bot.store import Database
from bot.store.db import DatabaseUnreachable, parse_database_url
from bot.store.postgres import unreachable

# Trust authentication ignores the password; it stands for a real one that must never be shown.
PASSWORD = "p@ss/w:rd %20 x"
ENCODED = "p%40ss%2Fw%3Ard%20%2520%20x"


def with_password(url: str, password: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")


async def test_a_password_with_url_characters_connects_and_is_never_shown(
    postgres_url: str, tmp_path: Path
) -> None:
    for password in (ENCODED, "p@ss/w:rd x"):
        url = with_password(postgres_url, password)
        async with await Database.open(f"  {url}\n") as db:
            assert (await db.fetchone("SELECT 1"))[0] == 1  # type: ignore[index]
        target = parse_database_url(url)
        assert target.shown.startswith("postgresql://postgres:[redacted]@127.0.0.1")
        found = await check_database(ToolSettings(database_url=url))
        assert found.level in ("ok", "note") and "[redacted]@127.0.0.1" in found.line(), found
        for secret in ("p@ss", "ss/w", "%40", "rd x"):
            assert secret not in found.line()
        error = unreachable(target, OSError(f"refused for {target.password} ({password})"))
        assert "p@ss" not in str(error) and "%40" not in str(error), error
        stream = io.StringIO()
        handler = log_handler(ToolSettings(database_url=url), stream)
        record = logging.LogRecord(
            "t", logging.INFO, "", 0, "%s %s %s", (url, target.password, password), None
        )
        handler.handle(record)
        assert "p@ss" not in stream.getvalue() and "%40" not in stream.getvalue(), stream.getvalue()


async def test_a_closed_port_with_such_a_password_is_one_line_without_it() -> None:
    url = f"postgresql://bot:{PASSWORD}@127.0.0.1:9/kling"
    try:
        await Database.open(url)
    except DatabaseUnreachable as error:
        assert "cannot connect" in str(error) and "p@ss" not in str(error) and "\n" not in str(error)
    else:
        raise AssertionError("opened a closed port")


def run_bot(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot` with these settings; it must stop before it reaches Discord."""
    environment = {**os.environ, "DISCORD_TOKEN": "abc.def", "SUNRA_KEY": "sk-refusals-0123456789", **env}
    environment.pop("BOT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bot"], cwd=folder, env=environment, capture_output=True, text=True, timeout=60
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


async def test_a_database_migrated_by_a_newer_bot_is_refused(database_url: str, tmp_path: Path) -> None:
    async with await Database.open(database_url) as db:
        await db.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')")
    with pytest.raises(DatabaseUnreachable, match="schema is newer than this version of the bot") as refused:
        await Database.open(database_url)
    assert "migration 9999 is applied" in str(refused.value) and "\n" not in str(refused.value)
    found = await check_database(ToolSettings(database_url=database_url))
    assert found.level == "fail" and "newer than this version of the bot (migration 9999" in found.text, found
    if database_url.startswith("sqlite:"):
        done = run_bot(tmp_path, DATABASE_URL=database_url)
        assert done.returncode == 1 and "schema is newer than this version" in one_line(done.stderr)
