"""The PostgreSQL server the tests use (127.0.0.1:5432, user postgres, trust auth, or POSTGRES_TEST_URL):
each test makes its own database with a random name and drops it, since several people run the tests
on one machine at once. Where no server answers, the PostgreSQL tests are skipped and the run says so
in its header and its summary (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ADMIN_URL = os.environ.get("POSTGRES_TEST_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CONNECT_TIMEOUT_SECONDS = 3.0


def _probe() -> str | None:
    async def ask() -> None:
        conn = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_SECONDS)
        await conn.close()

    try:
        # In a thread of its own: the first to ask may be a test already inside an event loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, ask()).result()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return f"{type(error).__name__}: {error}"
    return None


_found: list[str | None] = []


def unavailable() -> str | None:
    """Why no PostgreSQL test can run (the server does not answer), or None when it answers. Asked once."""
    if not _found:
        _found.append(_probe())
    return _found[0]


def url_of(name: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@contextlib.asynccontextmanager
async def fresh_database(options: str = "") -> AsyncIterator[str]:
    """A new empty database for one test; its URL. Dropped afterwards, with any connection left open.
    `options` go after CREATE DATABASE's name (e.g. an encoding)."""
    name = f"kling_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" {options}')
    finally:
        await admin.close()
    try:
        yield url_of(name)
    finally:
        admin = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


_kept: dict[str, str] = {}


async def database_for(key: str) -> str:
    """The URL of a database kept for `key` (a test's tmp_path) through the session: a bot restarted in
    the same test finds its rows again. Made on first use, dropped by `drop_kept` at the session's end."""
    if key not in _kept:
        name = f"kling_test_{secrets.token_hex(6)}"
        admin = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        _kept[key] = name
    return url_of(_kept[key])


def drop_kept() -> None:
    """Drops every database `database_for` made."""
    if not _kept:
        return

    async def drop() -> None:
        admin = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            for name in _kept.values():
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, drop()).result()
    _kept.clear()
