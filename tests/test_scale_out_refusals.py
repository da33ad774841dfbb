"""What a new server owner, or a hostile one, gets wrong when scaling out, and the one polite line each
mistake ends in: a schema newer than the code, a password with URL-special characters, a fleet started
with another SHARD_COUNT, a database that cannot be migrated, NUL characters, unusable SQLite paths."""

from __future__ import annotations

import io
import logging
from pathlib import Path

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
