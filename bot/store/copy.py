"""`kling-bot migrate-db --to postgresql://…`: the bot's SQLite database copied into an empty PostgreSQL
database, every table and every ledger row exactly, ids included.

- The source must not be in use: the copy holds SQLite's exclusive lock on the file for its whole run.
  A running bot keeps the file open in WAL mode (a shared lock on its `-shm` index), so the lock is
  refused while any bot (or `kling-bot animate`) has the database open, and no bot can open it until the
  copy ends.
- The source must carry every migration of this version of the bot (start the bot on it once first), so
  both sides have the same tables and columns; the target is migrated to the same list. (PostgreSQL's
  job_events also names the transaction that wrote each event, for /metrics: copied events get the
  copy's.)
- The target must be empty: no row in any of the bot's tables.
- Text with NUL characters (SQLite holds them, PostgreSQL's text cannot) is copied without them; the
  report counts those rows per table.
- One transaction: the copy is all or nothing. The tables' triggers are off while rows are copied (the
  vote counts are copied, not counted again), then on again; each id sequence is set past the largest
  id ever handed out (SQLite's AUTOINCREMENT never reuses an id, even of a deleted row), so new rows
  never collide with copied ones. The row count of every table is compared at the end.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bot.store.db import Database, DatabaseUnreachable, parse_database_url
from bot.store.migrations import migrations
from bot.store.postgres import reason
from bot.store.sql import quote_name

BATCH_ROWS = 5000
T = TypeVar("T")


class CopyRefused(Exception):
    """The copy did not start, or was rolled back: the message says why in one line, with no password."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    tables: dict[str, int]  # rows copied per table, in copy order
    # Rows per table whose text held NUL characters, copied without them (PostgreSQL's text cannot hold
    # them; SQLite's can).
    without_nul: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


class _Source:
    """The SQLite file held exclusively; used from one worker thread at a time."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            self.conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.conn.execute("BEGIN EXCLUSIVE")
            self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            self.conn.close()
            raise CopyRefused(
                f"{path} is in use (a bot or kling-bot animate has it open): stop it, then copy"
            ) from None
        except sqlite3.DatabaseError as error:
            self.conn.close()
            raise CopyRefused(f"{path}: cannot read it as a database ({error})") from None

    def applied(self) -> set[str]:
        found = self.conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()[0]
        return {row[0] for row in self.conn.execute("SELECT name FROM schema_migrations")} if found else set()

    def tables(self) -> list[str]:
        # sqlite_master lists tables in the order they were created: a referenced table comes first.
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name != 'schema_migrations' ORDER BY rowid"
        )
        return [row[0] for row in rows]

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.conn.execute(f"PRAGMA table_info({quote_name(table)})")]

    def handed_out(self) -> dict[str, int]:
        """The largest id AUTOINCREMENT has handed out per table (deleted rows included)."""
        found = self.conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_sequence'"
        ).fetchone()
        if not found[0]:
            return {}
        return {
            str(name): int(seq) for name, seq in self.conn.execute("SELECT name, seq FROM sqlite_sequence")
        }

    def rows(self, table: str, columns: list[str]) -> sqlite3.Cursor:
        names = ", ".join(quote_name(column) for column in columns)
        return self.conn.execute(f"SELECT {names} FROM {quote_name(table)}")

    def close(self) -> None:
        self.conn.close()


async def _off_loop(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(call, *args)


async def copy_sqlite_to_postgresql(source: Path, target_url: str) -> CopyReport:
    """Copies the SQLite database at `source` into the empty PostgreSQL database `target_url`.
    Raises CopyRefused (nothing copied) when the source is in use, not current or unreadable, or the
    target is not PostgreSQL, unreachable or not empty."""
    target = parse_database_url(target_url)
    if target.engine != "postgresql":
        raise CopyRefused("the target must be a postgresql:// URL")
    if not await _off_loop(source.is_file):
        raise CopyRefused(f"{source} does not exist: there is nothing to copy")
    held = await _off_loop(_Source, source)
    try:
        every = [migration.name for migration in migrations("sqlite")]
        applied = await _off_loop(held.applied)
        if missing := [name for name in every if name not in applied]:
            raise CopyRefused(
                f"{source} lacks migrations {', '.join(missing)}: start the bot on it once, stop it, copy"
            )
        if unknown := sorted(applied - set(every)):
            raise CopyRefused(f"{source} has migrations this version does not know ({', '.join(unknown)})")
        try:
            db = await Database.open(target_url)
        except DatabaseUnreachable as error:
            raise CopyRefused(str(error)) from None
        async with db:
            return await _copy(held, db, target.shown)
    finally:
        await _off_loop(held.close)


async def _copy(held: _Source, db: Database, shown: str) -> CopyReport:
    tables = await _off_loop(held.tables)
    handed_out = await _off_loop(held.handed_out)
    copied: dict[str, int] = {}
    cleaned: dict[str, int] = {}
    async with db.write() as tx:
        present = {
            str(row[0])
            for row in await tx.fetchall(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
        if absent := [table for table in tables if table not in present]:
            raise CopyRefused(f"{shown} has no table {', '.join(absent)}")
        holding = [t for t in tables if await tx.fetchone(f"SELECT 1 FROM {quote_name(t)} LIMIT 1")]
        if holding:
            raise CopyRefused(
                f"{shown} is not empty ({', '.join(holding)} hold rows): copy into a new database"
            )
        for table in tables:
            await tx.execute(f"ALTER TABLE {quote_name(table)} DISABLE TRIGGER USER")
        for table in tables:
            targets = {
                str(row[0])
                for row in await tx.fetchall(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND table_name = ?",
                    (table,),
                )
            }
            columns = [column for column in await _off_loop(held.columns, table) if column in targets]
            insert = (
                f"INSERT INTO {quote_name(table)} ({', '.join(quote_name(c) for c in columns)})"
                f" VALUES ({', '.join('?' for _ in columns)})"
            )
            cursor = await _off_loop(held.rows, table, columns)
            count = 0
            while batch := await _off_loop(cursor.fetchmany, BATCH_ROWS):
                rows = [tuple(row) for row in batch]
                for index, values in enumerate(rows):
                    if any(isinstance(value, str) and "\x00" in value for value in values):
                        rows[index] = tuple(_no_nul(value) for value in values)
                        cleaned[table] = cleaned.get(table, 0) + 1
                try:
                    await tx.executemany(insert, rows)
                except asyncpg.PostgresError as error:
                    raise CopyRefused(
                        f"{table}: {shown} refused a row ({reason(db.target, error)}); nothing was copied"
                    ) from None
                count += len(batch)
            copied[table] = count
        for table in tables:
            await tx.execute(f"ALTER TABLE {quote_name(table)} ENABLE TRIGGER USER")
        identities = await tx.fetchall(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND is_identity = 'YES'"
        )
        for row in identities:
            table, column = str(row[0]), str(row[1])
            if table not in copied:
                continue
            top = await tx.fetchone(f"SELECT COALESCE(MAX({quote_name(column)}), 0) FROM {quote_name(table)}")
            after = max(int(top[0]) if top else 0, handed_out.get(table, 0))
            if after > 0:
                await tx.fetchone(
                    "SELECT setval(pg_get_serial_sequence(?, ?), ?)", (quote_name(table), column, after)
                )
        for table, count in copied.items():
            found = await tx.fetchone(f"SELECT COUNT(*) FROM {quote_name(table)}")
            if found is None or int(found[0]) != count:
                raise CopyRefused(
                    f"{table}: {count} rows read but {found and found[0]} written; nothing was kept"
                )
    return CopyReport(copied, cleaned)


def _no_nul(value: object) -> object:
    return value.replace("\x00", "") if isinstance(value, str) else value
