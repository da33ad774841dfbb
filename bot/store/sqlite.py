"""The SQLite engine: two connections, their pragmas and the migrations.

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
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import aiosqlite

from bot.store.db import Database, DatabaseUnreachable, DatabaseUrl, Row, WriteLock, to_the_end
from bot.store.migrations import (
    FLEET_MIGRATION,
    MigrationStatus,
    migrations,
    status as migration_status,
    too_new,
)
from bot.store.sql import Params

log = logging.getLogger(__name__)

T = TypeVar("T")


async def status(path: Path) -> MigrationStatus:
    """Opens the file read-only (a missing file is not created) and compares its migrations with the
    bot's. Raises DatabaseUnreachable when the file cannot be read as a database."""
    try:
        return await asyncio.to_thread(_status, path)
    except (sqlite3.Error, OSError) as error:
        raise DatabaseUnreachable(f"{path}: cannot read it as a database ({error})") from None


def _status(path: Path) -> MigrationStatus:
    if not path.exists():
        return migration_status("sqlite", False, set())
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()[0]
        applied = (
            {str(row[0]) for row in conn.execute("SELECT name FROM schema_migrations")} if found else set()
        )
        fleet = set()
        if FLEET_MIGRATION in applied:
            live = conn.execute(
                "SELECT DISTINCT shard_count FROM shard_leases WHERE expires_at >= ?", (time.time(),)
            )
            fleet = {int(row[0]) for row in live}
    finally:
        conn.close()
    return migration_status("sqlite", True, applied, fleet)


def unusable(path: Path, error: OSError | sqlite3.Error) -> str:
    """Why the bot cannot keep its database at `path`, as one sentence for the operator."""
    text = str(error).lower()
    if isinstance(error, NotADirectoryError | FileExistsError):
        why = "a part of its folder is a file, not a folder"
    elif isinstance(error, PermissionError) or "readonly" in text or "read-only" in text:
        why = "the bot may not write there"
    elif "not a database" in text:
        why = "the file there is not a SQLite database"
    elif path.is_dir():
        why = "it is a folder; name a file in it"
    elif "unable to open" in text:
        why = "the file cannot be created or opened there"
    else:
        why = str(error) or type(error).__name__
    return (
        f"{path}: cannot keep the bot's database there ({why}); set DATABASE_URL to a file in a folder "
        "the bot can write to"
    )


class SqliteDatabase(Database):
    engine = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, target: DatabaseUrl) -> None:
        super().__init__(target)
        assert target.path is not None
        self.path = target.path
        self._conn = conn
        self._reader = conn
        self._write_lock = WriteLock()

    def said_unreachable(self, error: Exception) -> DatabaseUnreachable | None:
        if isinstance(error, OSError | sqlite3.Error):
            return DatabaseUnreachable(unusable(self.path, error))
        return None

    @classmethod
    async def open_file(cls, target: DatabaseUrl) -> SqliteDatabase:
        assert target.path is not None
        path = target.path
        in_memory = str(path) == ":memory:"
        try:
            if not in_memory:
                await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            conn = await cls._connect(path)
        except (OSError, sqlite3.Error) as error:
            raise DatabaseUnreachable(unusable(path, error)) from None
        db = cls(conn, target)
        try:
            await db._configure(conn)
            await db._migrate()
            if not in_memory:
                db._reader = await cls._connect(path)
                await db._configure(db._reader, "PRAGMA query_only=ON")
        except (OSError, sqlite3.Error) as error:
            await db.close()
            raise DatabaseUnreachable(unusable(path, error)) from None
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def data_folder(self) -> Path:
        return Path(".") if str(self.path) == ":memory:" else self.path.parent

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
        if (refusal := too_new(str(self.path), done, "sqlite")) is not None:
            raise DatabaseUnreachable(refusal)
        for migration in migrations("sqlite"):
            if migration.version in done:
                continue
            async with self.write() as tx:
                # Asked again under the write lock: another process starting at the same moment may
                # have applied it since the read above.
                if await tx.fetchone(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
                ):
                    continue
                log.info("applying migration %s", migration.name)
                await tx.executescript_in_tx(migration.sql)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    (migration.version, migration.name),
                )

    @asynccontextmanager
    async def write(self, *, urgent: bool = False, exclusive: bool = True) -> AsyncIterator[_Tx]:
        """BEGIN IMMEDIATE … COMMIT (SQLite has one writer: every transaction is exclusive)."""
        async with self._write_lock.held(urgent=urgent):
            try:
                await to_the_end(self._conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield _Tx(self._conn)
                except BaseException:
                    await self._rollback_if_open()
                    raise
                await to_the_end(self._conn.execute("COMMIT"))
            finally:
                # BEGIN went through after its caller was cancelled, or COMMIT failed.
                await self._rollback_if_open()

    async def write_in_one_trip(self, work: Callable[[sqlite3.Connection], T], *, urgent: bool = False) -> T:
        """`work(connection)` inside BEGIN IMMEDIATE … COMMIT, run whole in the write connection's thread:
        one trip there, where `write()` takes one per statement. Under a crowd each trip waits for the
        event loop's turn (every deferral ready before it), so a transaction of six statements waited six
        turns. Raises what `work` (or the COMMIT) raised, after the ROLLBACK. `work` must not await nor
        touch the event loop: it runs in another thread.

        A caller cancelled meanwhile returns at once, and the transaction still commits or rolls back
        whole: the thread runs its queue in order, so whatever this connection is asked next (another
        writer's BEGIN) runs after it. Awaited directly, without `to_the_end`'s task and shield: each of
        those costs a turn of the event loop, tens of milliseconds under a crowd.

        aiosqlite has no public way to run a function in its thread; `Connection._execute` is the one its
        own `execute_fetchall` uses (aiosqlite/core.py), and `_conn` its sqlite3.Connection there."""

        def transaction() -> T:
            conn: sqlite3.Connection = self._conn._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        run_in_thread: Callable[[Callable[[], T]], Awaitable[T]] = self._conn._execute
        async with self._write_lock.held(urgent=urgent):
            return await run_in_thread(transaction)

    async def _rollback_if_open(self) -> None:
        # SQLite rolls some failed transactions back itself; a second ROLLBACK would raise.
        if self._conn.in_transaction:
            await to_the_end(self._conn.execute("ROLLBACK"))

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        # One trip to the reader's thread (execute, fetch and close there) instead of three: under a
        # crowd each trip waits its turn behind every other reader's.
        return list(await self._reader.execute_fetchall(sql, params))


class _Tx:
    """The handle given inside `SqliteDatabase.write()`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._conn.execute(sql, params) as cur:
            return int(cur.rowcount)

    async def insert(self, sql: str, params: Params = ()) -> int:
        row = await self._conn.execute_insert(sql, params)
        return int(row[0]) if row is not None else 0

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def executescript_in_tx(self, script: str) -> None:
        # executescript() would COMMIT first; run the statements one by one inside our transaction.
        for statement in split_sql(script):
            await self._conn.execute(statement)


def split_sql(script: str) -> list[str]:
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
