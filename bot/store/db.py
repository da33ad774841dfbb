"""One store, two engines: the `Database` every part of the bot is handed, whichever engine runs.

`Database.open(url)` opens `sqlite:///path` (bot/store/sqlite.py, the embedded default) or
`postgresql://user:password@host:port/name` (bot/store/postgres.py, several processes), migrates it, and
returns the same shape on both:

- `async with db.write() as tx:` one write transaction; `tx.execute / insert / executemany / fetchone /
  fetchall`. Write transactions are serialised as SQLite's single writer serialises them, across
  processes too (PostgreSQL: an advisory transaction lock), so a read-then-write inside one is atomic.
  `urgent=True` goes before the writers of this process waiting; `exclusive=False` (PostgreSQL only)
  skips the fleet-wide serialisation for a transaction whose own row locks or constraints suffice.
- `db.fetchone / fetchall`: reads of committed data, outside any transaction.
- SQL keeps SQLite's spelling with `?` or `:name` placeholders (bot/store/sql.py translates it); a row
  is read as `row["column"]` or `row[0]`.

Above bot/store/ no code knows which engine runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import quote, unquote, urlsplit

from bot.redact import REDACTED, redact_urls
from bot.store.migrations import Engine, MigrationStatus
from bot.store.sql import Params

__all__ = [
    "Database",
    "DatabaseUnreachable",
    "DatabaseUrl",
    "Row",
    "Transaction",
    "database_status",
    "parse_database_url",
    "redact_url",
    "sqlite_path_from_url",
]

T = TypeVar("T")

ENGINE_NAMES: dict[Engine, str] = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


class Row(Protocol):
    """A result row: `row["column"]` or `row[0]` (sqlite3.Row and asyncpg.Record both are one)."""

    def __getitem__(self, key: Any, /) -> Any: ...


class Transaction(Protocol):
    """The handle given inside `Database.write()`; every statement runs in the open transaction."""

    async def execute(self, sql: str, params: Params = ...) -> int:
        """Runs a statement; returns the number of rows it changed."""
        ...

    async def insert(self, sql: str, params: Params = ...) -> int:
        """Runs an INSERT into a table keyed by an integer `id`; returns the new row's id."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    async def fetchone(self, sql: str, params: Params = ...) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ...) -> list[Row]: ...


# ----- URLs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A parsed DATABASE_URL. `path` is set for SQLite; `url` is the URL to connect with, its user and
    password percent-encoded (it may hold a password: show `shown` instead)."""

    engine: Engine
    url: str
    path: Path | None

    @property
    def shown(self) -> str:
        """What logs and `kling-bot check` print: the SQLite file, or the URL without its password."""
        return str(self.path) if self.path is not None else redact_url(self.url)

    @property
    def password(self) -> str | None:
        """The password as the server is given it (percent-decoded), or None."""
        return url_password(self.url)


def parse_database_url(url: str) -> DatabaseUrl:
    """`sqlite:///data/bot.sqlite3` (a relative path), `sqlite:////abs/bot.sqlite3`, or
    `postgresql://user:password@host:port/name` (`postgres://` too). A password may hold `@`, `:` or `/`
    as they are or percent-encoded (`%40`); white space around the URL is ignored. Raises ValueError with
    a reason that never repeats the password."""
    url = url.strip()
    if url.startswith("sqlite:"):
        return DatabaseUrl("sqlite", url, sqlite_path_from_url(url))
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        url = _encode_userinfo(url)
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError("is not a valid postgresql:// URL (check the host and port)") from None
        if not parts.path.strip("/"):
            raise ValueError("names no database: postgresql://user:password@host:5432/DATABASE")
        return DatabaseUrl("postgresql", url, None)
    raise ValueError("must start with sqlite:/// or postgresql://")


def sqlite_path_from_url(url: str) -> Path:
    """`sqlite:///data/bot.sqlite3` → `data/bot.sqlite3`; `sqlite:////abs/x.db` → `/abs/x.db`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError("only sqlite:/// URLs name a SQLite file")
    rest = url[len(prefix) :]
    if not rest:
        raise ValueError("the URL names no file")
    return Path(rest)


def _split_userinfo(url: str) -> tuple[str, str, str] | None:
    """`scheme://`, the user information and the rest (`host…`) of a URL that has user information, split
    at the last `@` before the path: a password may hold `@` and `/` unencoded. None without any."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    userinfo, _, hosts = rest.rpartition("@")
    return scheme + sep, userinfo, hosts


def _encode_userinfo(url: str) -> str:
    """The URL with its user and password percent-encoded (an encoded one stays as it is), so that a
    driver splitting at the first `@` or `:` finds the host and the password whole."""
    found = _split_userinfo(url)
    if found is None:
        return url
    scheme, userinfo, hosts = found
    user, colon, password = userinfo.partition(":")
    encoded = quote(unquote(user), safe="") + (colon + quote(unquote(password), safe="") if colon else "")
    return f"{scheme}{encoded}@{hosts}"


def url_password(url: str) -> str | None:
    """A database URL's password, percent-decoded; None when it has none."""
    found = _split_userinfo(url.strip())
    if found is None or ":" not in found[1]:
        return None
    return unquote(found[1].partition(":")[2]) or None


def redact_url(url: str) -> str:
    """The URL with its password (and any secret query value) replaced by [redacted]; bot/redact.py. The
    password is found as `parse_database_url` finds it: up to the last `@`, white space and `@` included."""
    found = _split_userinfo(url.strip())
    if found is not None and ":" in found[1]:
        scheme, userinfo, hosts = found
        url = f"{scheme}{userinfo.partition(':')[0]}:{REDACTED}@{hosts}"
    return redact_urls(url)


async def database_status(url: str) -> tuple[DatabaseUrl, MigrationStatus]:
    """What a database holds, read without creating or changing anything: whether it exists and which
    migrations it has and lacks. Raises `DatabaseUnreachable` when it cannot be read (the message never
    holds a password)."""
    target = parse_database_url(url)
    if target.engine == "sqlite":
        from bot.store import sqlite

        assert target.path is not None
        return target, await sqlite.status(target.path)
    from bot.store import postgres

    return target, await postgres.status(target)


class DatabaseUnreachable(Exception):
    """The database cannot be reached, read or used by this code (a schema newer than it, a file that is
    no database); the message is one sentence, safe to show (no password)."""


# ----- the Database -------------------------------------------------------------------------------------


class WakeListening(Protocol):
    """What `Database.listen_wakes` returns: `connected` while wakes can arrive; `close()` stops it."""

    connected: bool

    async def close(self) -> None: ...


class NoWakes:
    """SQLite's listener: one process, no one else to hear from; never connected."""

    connected = False

    async def close(self) -> None:
        return None


class Database(ABC):
    engine: ClassVar[Engine]

    def __init__(self, target: DatabaseUrl) -> None:
        self.target = target

    @staticmethod
    async def open(where: str | Path) -> Database:
        """Opens and migrates the database named by a DATABASE_URL (`sqlite:///…`, `postgresql://…`) or,
        for SQLite, a file path (`:memory:` too). Raises ValueError for a URL of no known form,
        `DatabaseUnreachable` when PostgreSQL cannot be reached."""
        if isinstance(where, str) and ("://" in where or where[:7] == "sqlite:"):
            target = parse_database_url(where)
        else:
            target = DatabaseUrl("sqlite", f"sqlite:///{where}", Path(where))
        if target.engine == "sqlite":
            from bot.store.sqlite import SqliteDatabase

            return await SqliteDatabase.open_file(target)
        from bot.store.postgres import PostgresDatabase

        return await PostgresDatabase.connect(target)

    @property
    def data_folder(self) -> Path:
        """A local folder for the bot's working files: the SQLite file's folder, else `data/`."""
        return Path("data")

    @abstractmethod
    def write(
        self, *, urgent: bool = False, exclusive: bool = True
    ) -> AbstractAsyncContextManager[Transaction]:
        """One write transaction, committed at the end of the block and rolled back on any error or
        cancellation. Serialised with every other exclusive write transaction on the database, from any
        process; `urgent` ones of this process go first (a member waits for Discord's answer)."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """One read of committed data (a read that must agree with a write belongs inside `write()`)."""

    @abstractmethod
    async def close(self) -> None: ...

    @contextlib.contextmanager
    def unreachable_in_one_sentence(self) -> Iterator[None]:
        """Turns the engine's errors of a database that cannot be reached or used (PostgreSQL down or
        refusing connections, a SQLite file gone unwritable) inside the block into `DatabaseUnreachable`,
        one sentence without the password: for the steps of a start, where the operator reads it and
        the process exits, not for the running bot, which retries."""
        try:
            yield
        except DatabaseUnreachable:
            raise
        except Exception as error:
            if (said := self.said_unreachable(error)) is None:
                raise
            raise said from None

    def said_unreachable(self, error: Exception) -> DatabaseUnreachable | None:
        """`error` as `DatabaseUnreachable` if it is this engine's way of saying the database cannot be
        reached or used; None for any other error."""
        return None

    def listen_wakes(self, on_wake: Callable[[], None]) -> WakeListening:
        """Calls `on_wake()` (in this event loop) each time another process sharing the database calls
        `wake_others`, while the returned listener is `connected`; then the caller must poll. PostgreSQL:
        LISTEN on a connection of its own, reconnected when it drops (bot/store/wakes.py). SQLite: one
        process, never connected. Call from a running event loop."""
        return NoWakes()

    def wake_others(self) -> None:
        """Wakes the listeners of every other process (`listen_wakes`); returns at once, sends in the
        background, never raises. Nothing on SQLite."""
        return None

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One write statement in its own transaction; returns the number of rows changed."""
        async with self.write() as tx:
            return await tx.execute(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """One read of committed data (a read that must agree with a write belongs inside `write()`)."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()


# ----- shared by the engines ----------------------------------------------------------------------------


async def to_the_end(step: Awaitable[T]) -> T:
    """Awaits `step` to its end even when the caller is cancelled meanwhile, then passes the
    cancellation on: a COMMIT under way completes, and the connection's state is known before anything
    else uses it."""
    current = asyncio.current_task()
    asked_before = current.cancelling() if current is not None else 0
    task = asyncio.ensure_future(step)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.shield(task)
    if current is not None and current.cancelling() > asked_before:
        raise asyncio.CancelledError
    return task.result()


class WriteLock:
    """A process's write lock: first come, first served, except that an urgent writer (the inbox of
    commands waiting to be acknowledged) goes before every writer that is not."""

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

    @contextlib.asynccontextmanager
    async def held(self, *, urgent: bool) -> AsyncIterator[None]:
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release()
