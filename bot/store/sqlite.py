"""The SQLite connections, their pragmas and the migrations.

Two `aiosqlite` connections serve the whole process. Writes go through `write()` on the write
connection: one asyncio lock serialises them and `BEGIN IMMEDIATE` opens each transaction, so a
read-then-write inside it is atomic even against another process sharing the file. Reads outside a
transaction (`fetchone`, `fetchall`) run on their own connection, so they see only committed data and
never run inside another task's open transaction; in WAL mode they proceed while a write is open.
A `:memory:` database cannot be opened twice, so there reads share the write connection.

A transaction completes or rolls back whatever cancels the task that opened it: the statements run in
aiosqlite's thread whether or not their caller still waits, so `write()` waits for BEGIN, COMMIT and
ROLLBACK to finish before it passes a cancellation on.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

Params = Sequence[Any] | dict[str, Any]
T = TypeVar("T")


def sqlite_path_from_url(url: str) -> Path:
    """`sqlite:///data/bot.sqlite3` → `data/bot.sqlite3`; `sqlite:////abs/x.db` → `/abs/x.db`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError("only sqlite:/// URLs are supported")
    rest = url[len(prefix) :]
    if not rest:
        raise ValueError("the URL names no file")
    return Path(rest)


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """What `kling-bot check` reports about a database file, found without changing it."""

    exists: bool
    applied: tuple[str, ...]  # migration file names
    pending: tuple[str, ...]  # applied at the bot's next start


def migration_status(path: Path) -> MigrationStatus:
    """Opens the file read-only (a missing file is not created) and compares its migrations with the
    bot's. Blocking (run it in a thread from async code). Raises sqlite3.Error when the file cannot be
    read as a database."""
    every = tuple(name for _, name, _ in _migrations())
    if not path.exists():
        return MigrationStatus(False, (), every)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()[0]
        rows = conn.execute("SELECT name FROM schema_migrations").fetchall() if found else []
    finally:
        conn.close()
    done = {str(row[0]) for row in rows}
    applied = tuple(name for name in every if name in done)
    return MigrationStatus(True, applied, tuple(name for name in every if name not in done))


async def _to_the_end(step: Awaitable[T]) -> T:
    """Awaits `step` to its end even when the caller is cancelled meanwhile, then passes the
    cancellation on: a statement handed to aiosqlite's thread runs anyway, and the connection's state
    must be known before anything else uses it."""
    current = asyncio.current_task()
    asked_before = current.cancelling() if current is not None else 0
    task = asyncio.ensure_future(step)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.shield(task)
    if current is not None and current.cancelling() > asked_before:
        raise asyncio.CancelledError
    return task.result()


class _WriteLock:
    """The write connection's lock: first come, first served, except that an urgent writer (the inbox
    of commands waiting to be acknowledged) goes before every writer that is not."""

    def __init__(self) -> None:
        self._locked = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    async def acquire(self, *, urgent: bool) -> None:
        if not self._locked and not self._waiters:
            self._locked = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (0 if urgent else 1, next(self._arrivals), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed the lock just as its task was cancelled
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)  # the lock passes on without being unlocked
                return
        self._locked = False


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._reader = conn
        self.path = path
        self._write_lock = _WriteLock()

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        path = Path(path)
        in_memory = str(path) == ":memory:"
        if not in_memory:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = await cls._connect(path)
        db = cls(conn, path)
        try:
            await db._configure(conn)
            await db._migrate()
            if not in_memory:
                db._reader = await cls._connect(path)
                await db._configure(db._reader, "PRAGMA query_only=ON")
        except BaseException:
            await db.close()
            raise
        return db

    @staticmethod
    async def _connect(path: Path) -> aiosqlite.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing opens a transaction behind
        # our back and a plain statement outside write() autocommits.
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        return conn

    async def close(self) -> None:
        if self._reader is not self._conn:
            await self._reader.close()
        await self._conn.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    async def _configure(conn: aiosqlite.Connection, *extra: str) -> None:
        for pragma in (
            "PRAGMA journal_mode=WAL",
            # NORMAL is durable against a process crash in WAL mode (only an OS crash may lose the last
            # commits), which is the failure we guard against.
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
            *extra,
        ):
            await conn.execute(pragma)

    async def _migrate(self) -> None:
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
        )
        async with self._conn.execute("SELECT version FROM schema_migrations") as cur:
            done = {row[0] for row in await cur.fetchall()}
        for version, name, sql in _migrations():
            if version in done:
                continue
            log.info("applying migration %04d %s", version, name)
            async with self.write() as tx:
                await tx.executescript_in_tx(sql)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name)
                )

    @asynccontextmanager
    async def write(self, *, urgent: bool = False) -> AsyncIterator[_Tx]:
        """One serialised write transaction: BEGIN IMMEDIATE … COMMIT, rolled back on any error and on a
        cancellation at any of its awaits: the connection is never left inside a transaction. An
        `urgent` one goes before the others waiting (a member is waiting for Discord's answer)."""
        await self._write_lock.acquire(urgent=urgent)
        try:
            try:
                await _to_the_end(self._conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield _Tx(self._conn)
                except BaseException:
                    await self._rollback_if_open()
                    raise
                await _to_the_end(self._conn.execute("COMMIT"))
            finally:
                # BEGIN went through after its caller was cancelled, or COMMIT failed.
                await self._rollback_if_open()
        finally:
            self._write_lock.release()

    async def _rollback_if_open(self) -> None:
        # SQLite rolls some failed transactions back itself; a second ROLLBACK would raise.
        if self._conn.in_transaction:
            await _to_the_end(self._conn.execute("ROLLBACK"))

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One write statement in its own transaction; returns the number of rows changed."""
        async with self.write() as tx:
            return await tx.execute(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        """One read of committed data (a read that must agree with a write belongs inside `write()`)."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        # One trip to the reader's thread (execute, fetch and close there) instead of three: under a
        # crowd each trip waits its turn behind every other reader's.
        return list(await self._reader.execute_fetchall(sql, params))


class _Tx:
    """The handle given inside `Database.write()`; every statement runs in the open transaction."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._conn.execute(sql, params) as cur:
            return int(cur.rowcount)

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Runs an INSERT and returns the new row's id."""
        row = await self._conn.execute_insert(sql, params)
        return int(row[0]) if row is not None else 0

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def executescript_in_tx(self, script: str) -> None:
        # executescript() would COMMIT first; run the statements one by one inside our transaction.
        for statement in _split_sql(script):
            await self._conn.execute(statement)


def _split_sql(script: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def _migrations() -> list[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("bot.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a version number")
    return found
