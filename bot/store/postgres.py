"""The PostgreSQL engine: an asyncpg pool, plain SQL, and what SQLite's single writer gave for free.

asyncpg (the driver RoboDanny, the reference discord.py bot, runs on) with no query layer: the store's
SQL is SQLite's, translated by bot/store/sql.py.

- Several processes share the database. Every exclusive write transaction (the default of
  `Database.write()`) takes `pg_advisory_xact_lock(WRITE_LOCK)` as its first statement, so write
  transactions run one at a time across the whole fleet, exactly as SQLite's `BEGIN IMMEDIATE` makes them:
  a read-then-write inside one (recording a command, a reservation against its caps, a settlement, a
  vote) sees every write committed before it and no other write until it commits. The lock goes with the
  transaction, so a process killed holding it frees it at once. Inside the process a `WriteLock` queues
  the writers first, so they wait in order (urgent first) without holding a pooled connection each.
  `write(exclusive=False)` skips both, for a transaction whose row locks (`FOR UPDATE SKIP LOCKED`) or
  constraints are enough.
- Migrations run in one transaction under a transaction advisory lock (MIGRATION_LOCK): several
  processes started at once on an empty database apply each migration once; the others wait, then find
  nothing left to do. A database that cannot be migrated (no privilege, not UTF8) is refused in one line.
- Every connection ends a transaction left idle for IDLE_IN_TRANSACTION_SECONDS: a stuck process cannot
  hold its row locks, or the fleet's write lock, for ever.
- Reads (`fetchone`, `fetchall`) take a pooled connection outside any transaction and see committed data.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import quote

import asyncpg

from bot.redact import REDACTED
from bot.store.db import Database, DatabaseUnreachable, DatabaseUrl, Row, WriteLock, to_the_end
from bot.store.migrations import (
    FLEET_MIGRATION,
    MigrationStatus,
    migrations,
    status as migration_status,
    too_new,
)
from bot.store.sql import Params, bind, coerce, rowcount, to_postgresql
from bot.store.wakes import WakeListener, WakeSender, new_token

log = logging.getLogger(__name__)

# Advisory lock keys of this bot (advisory locks are per database). Other fleet-wide decisions take their
# own keys, never these.
WRITE_LOCK = 0x6B6C_0001
MIGRATION_LOCK = 0x6B6C_0002
# Connections per process: the writers share one at a time (they are serialised), the rest serve reads.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
CONNECT_TIMEOUT_SECONDS = 10.0
# A transaction no statement has used for this long is ended by the server, and its locks with it.
IDLE_IN_TRANSACTION_SECONDS = 10
SERVER_SETTINGS = {"idle_in_transaction_session_timeout": f"{IDLE_IN_TRANSACTION_SECONDS}s"}
_BEGIN_EXCLUSIVE = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"

_SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " applied_at TEXT NOT NULL"
    " DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"
)


# How asyncpg says the server cannot be reached or used: `unreachable` turns each into one sentence.
OUTAGES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def unreachable(target: DatabaseUrl, error: BaseException) -> DatabaseUnreachable:
    """The error as one line that names the server without its password."""
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return DatabaseUnreachable(f"{target.shown}: the database does not exist; create it first (createdb)")
    if isinstance(error, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return DatabaseUnreachable(f"{target.shown}: the server refused the user or password")
    return DatabaseUnreachable(f"{target.shown}: cannot connect ({reason(target, error)})")


def reason(target: DatabaseUrl, error: BaseException) -> str:
    """The server's error on one line (its DETAIL and HINT joined on), without the URL's password as
    written in the URL or percent-decoded."""
    text = " ".join((str(error) or type(error).__name__).split())
    password = target.password
    if password and password.strip():
        for form in {password, quote(password, safe="")}:
            text = text.replace(form, REDACTED)
    return text


async def _connect_one(target: DatabaseUrl) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            target.url, timeout=CONNECT_TIMEOUT_SECONDS, server_settings=SERVER_SETTINGS
        )
    except OUTAGES as error:
        raise unreachable(target, error) from None


async def require_utf8(conn: asyncpg.Connection, target: DatabaseUrl) -> None:
    """Raises DatabaseUnreachable unless the database is UTF-8. On SQL_ASCII (or LATIN1, …) the ICU
    collation of migration 0004 cannot be made, so the bot would stop half-migrated, and text functions
    would count bytes, not letters; one sentence before anything is written says what to do instead."""
    encoding = await conn.fetchval("SHOW server_encoding")
    if encoding != "UTF8":
        raise DatabaseUnreachable(
            f"{target.shown}: the database is encoded {encoding} but the bot needs UTF8; "
            "create it with createdb --encoding=UTF8 --template=template0"
        )


async def status(target: DatabaseUrl) -> MigrationStatus:
    """The migrations the database has and lacks, read on one short connection; changes nothing."""
    conn = await _connect_one(target)
    try:
        await require_utf8(conn, target)
        found = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        rows = await conn.fetch("SELECT name FROM schema_migrations") if found else []
        applied = {str(row[0]) for row in rows}
        fleet = set()
        if FLEET_MIGRATION in applied:
            live = await conn.fetch(
                "SELECT DISTINCT shard_count FROM shard_leases"
                " WHERE expires_at >= EXTRACT(EPOCH FROM clock_timestamp())"  # the fleet's time (FleetClock)
            )
            fleet = {int(row[0]) for row in live}
    finally:
        await conn.close()
    return migration_status("postgresql", True, applied, fleet)


class PostgresDatabase(Database):
    engine = "postgresql"

    def __init__(self, pool: asyncpg.Pool, target: DatabaseUrl) -> None:
        super().__init__(target)
        self._pool = pool
        self._write_lock = WriteLock()
        # The parameter types PostgreSQL inferred for each statement, learned once per process.
        self._param_types: dict[str, tuple[str, ...]] = {}
        # This Database's wakes (bot/store/wakes.py): its token lets its own listeners ignore them.
        self._wake_token = new_token()
        self._wake_sender = WakeSender(pool, self._wake_token)
        self._wake_listeners: list[WakeListener] = []

    def said_unreachable(self, error: Exception) -> DatabaseUnreachable | None:
        if isinstance(error, OUTAGES):
            return unreachable(self.target, error)
        return None

    @classmethod
    async def connect(cls, target: DatabaseUrl, *, max_size: int = POOL_MAX_SIZE) -> PostgresDatabase:
        """Opens the pool and migrates. Raises DatabaseUnreachable when the server cannot be used."""
        try:
            pool = await asyncpg.create_pool(
                target.url,
                min_size=POOL_MIN_SIZE,
                max_size=max_size,
                timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings=SERVER_SETTINGS,
            )
        except OUTAGES as error:
            raise unreachable(target, error) from None
        db = cls(pool, target)
        try:
            await db._migrate()
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        for listener in self._wake_listeners:
            await listener.close()
        await self._wake_sender.close()
        await self._pool.close()

    def listen_wakes(self, on_wake: Callable[[], None]) -> WakeListener:
        listener = WakeListener(self.target.url, self._wake_token, on_wake)
        self._wake_listeners.append(listener)
        return listener

    def wake_others(self) -> None:
        self._wake_sender.send()

    async def _migrate(self) -> None:
        """Every pending migration in one transaction under a transaction advisory lock: processes started
        together wait for the first, then find nothing left to do; a failure leaves nothing half-applied
        and ends in one sentence (DatabaseUnreachable)."""
        shown = self.target.shown
        async with self._pool.acquire() as conn:
            await require_utf8(conn, self.target)
            applying = "schema_migrations"
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                    # Created only when absent: CREATE … IF NOT EXISTS needs the CREATE privilege even
                    # then, which a role that only reads and writes rows need not have.
                    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
                        await conn.execute(_SCHEMA_MIGRATIONS)
                    done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
                    if (refusal := too_new(shown, done, "postgresql")) is not None:
                        raise DatabaseUnreachable(refusal)
                    for migration in migrations("postgresql"):
                        if migration.version in done:
                            continue
                        applying = migration.name
                        log.info("applying migration %s", migration.name)
                        await conn.execute(migration.sql)  # no arguments: the simple protocol runs a script
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                            migration.version,
                            migration.name,
                        )
            except asyncpg.InsufficientPrivilegeError as error:
                raise DatabaseUnreachable(
                    f"{shown}: the user may not change the database's tables ({reason(self.target, error)})"
                    f" while applying "
                    f"{applying}; nothing was changed: run the bot once as the database's owner, or grant "
                    "this user CREATE on its schema"
                ) from None
            except asyncpg.PostgresError as error:
                raise DatabaseUnreachable(
                    f"{shown}: cannot apply {applying} ({reason(self.target, error)}); nothing was changed"
                ) from None

    @asynccontextmanager
    async def write(self, *, urgent: bool = False, exclusive: bool = True) -> AsyncIterator[_Tx]:
        if exclusive:
            await self._write_lock.acquire(urgent=urgent)
        try:
            conn = await self._pool.acquire()
            try:
                # BEGIN and the lock in one round trip (the simple protocol runs both).
                await to_the_end(conn.execute(_BEGIN_EXCLUSIVE if exclusive else "BEGIN"))
                try:
                    yield _Tx(self, conn)
                except BaseException:
                    # A connection left mid-statement by a cancellation is rolled back by the pool.
                    with suppress(Exception):
                        await to_the_end(conn.execute("ROLLBACK"))
                    raise
                await to_the_end(conn.execute("COMMIT"))
            finally:
                await to_the_end(self._pool.release(conn))
        finally:
            if exclusive:
                self._write_lock.release()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._pool.acquire() as conn:
            return await self.run_fetch(conn, sql, params)

    # ----- statements on one connection -----------------------------------------------------------------

    async def _prepare(self, conn: asyncpg.Connection, sql: str, params: Params) -> tuple[str, list[Any]]:
        text, order = to_postgresql(sql)
        args = bind(order, params)
        types = self._param_types.get(text)
        if types is None:
            statement = await conn.prepare(text)
            types = tuple(parameter.name for parameter in statement.get_parameters())
            self._param_types[text] = types
        return text, [coerce(value, name) for value, name in zip(args, types, strict=True)]

    async def run_fetch(self, conn: asyncpg.Connection, sql: str, params: Params) -> list[Row]:
        text, args = await self._prepare(conn, sql, params)
        return list(await conn.fetch(text, *args))

    async def run_execute(self, conn: asyncpg.Connection, sql: str, params: Params) -> int:
        text, args = await self._prepare(conn, sql, params)
        return rowcount(await conn.execute(text, *args))

    async def run_insert(self, conn: asyncpg.Connection, sql: str, params: Params) -> int:
        if " RETURNING " not in sql.upper():
            sql = f"{sql} RETURNING id"
        text, args = await self._prepare(conn, sql, params)
        value = await conn.fetchval(text, *args)
        return 0 if value is None else int(value)

    async def run_executemany(self, conn: asyncpg.Connection, sql: str, rows: Iterable[Params]) -> None:
        batch = list(rows)
        if not batch:
            return
        text, _ = await self._prepare(conn, sql, batch[0])
        order = to_postgresql(sql)[1]
        types = self._param_types[text]
        args = [[coerce(v, t) for v, t in zip(bind(order, row), types, strict=True)] for row in batch]
        await conn.executemany(text, args)


class _Tx:
    """The handle given inside `PostgresDatabase.write()`."""

    def __init__(self, db: PostgresDatabase, conn: asyncpg.Connection) -> None:
        self._db = db
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._db.run_execute(self._conn, sql, params)

    async def insert(self, sql: str, params: Params = ()) -> int:
        return await self._db.run_insert(self._conn, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._db.run_executemany(self._conn, sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._db.run_fetch(self._conn, sql, params)
