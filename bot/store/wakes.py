"""Waking the fleet's other processes: PostgreSQL's LISTEN/NOTIFY on a connection of its own.

A process's dispatcher whose fleet-wide caps are full can do nothing until a job ends somewhere, most
often in another process. Rather than every such dispatcher looking again every 2 s, the process where
a job ended sends `NOTIFY` on the channel WAKE_CHANNEL (`Database.wake_others`) and every other process
listening on it (`Database.listen_wakes`) is woken at once. What PostgreSQL guarantees and what it does
not (https://www.postgresql.org/docs/15/sql-notify.html): a notification reaches the sessions that were
listening when it was committed, in commit order; one sent while a listener was disconnected is lost.
So a listener whose connection drops tells its owner (`WakeListener.connected` turns False; the
dispatcher, woken, then falls back to the poll), reconnects with a growing pause, and wakes its owner once on
reconnecting, since it may have missed something. A connection that dies without a word (a half-open
TCP link) is found by a `SELECT 1` every CHECK_SECONDS.

On SQLite there is one process: `listen_wakes` gives a listener that never connects and `wake_others`
does nothing (bot/store/db.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

# The channel every process of the bot listens on (channels are per database).
WAKE_CHANNEL = "kling_bot_wake"
# A reconnection's first pause and its longest, in seconds.
RETRY_FIRST_SECONDS = 0.5
RETRY_LONGEST_SECONDS = 30.0
# How often a quiet listening connection is checked, and how long the check may take, in seconds.
CHECK_SECONDS = 15.0
CHECK_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 10.0
APPLICATION_NAME = "kling-bot wake listener"


class WakeListener:
    """Calls `on_wake()` whenever another `Database` (another process) sends a wake, while its listening
    connection is up. `connected` says whether it is; `connections` counts the connections made (the
    first, then every reconnection). `close()` stops it."""

    def __init__(self, url: str, token: str, on_wake: Callable[[], None]) -> None:
        self._url = url
        self._token = token
        self._on_wake = on_wake
        self.connected = False
        self.connections = 0
        self.backend_pid: int | None = None
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._listen_forever(), name="wake-listener"
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.connected = False

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload != self._token:  # our own process's wakes are not news to it
            self._on_wake()

    async def _listen_forever(self) -> None:
        pause = RETRY_FIRST_SECONDS
        while True:
            try:
                conn = await asyncpg.connect(
                    self._url,
                    timeout=CONNECT_TIMEOUT_SECONDS,
                    server_settings={"application_name": APPLICATION_NAME},
                )
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("wake listener: cannot connect (%s); the dispatcher polls meanwhile", error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_LONGEST_SECONDS)
                continue
            try:
                await self._listen_on(conn)
                pause = RETRY_FIRST_SECONDS  # it was up: reconnect soon
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("wake listener: connection lost (%s); reconnecting", error)
            finally:
                with contextlib.suppress(Exception):
                    conn.terminate()
                if self.connected:
                    self.connected = False
                    self._on_wake()  # the owner learns it must poll now
            await asyncio.sleep(pause)

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """Listens until the connection is lost (raises, or returns when it closed)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(WAKE_CHANNEL, self._heard)
        self.backend_pid = conn.get_server_pid()
        self.connected = True
        self.connections += 1
        # Wakes sent while no connection listened are lost: look once now.
        self._on_wake()
        while not lost.is_set() and not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), CHECK_SECONDS)
                return
            await asyncio.wait_for(conn.fetchval("SELECT 1"), CHECK_TIMEOUT_SECONDS)


class WakeSender:
    """Sends wakes on a pool, one at a time: wakes asked for while one is being sent become one more
    (a crowd of jobs ending together costs two NOTIFYs, not one each). Never raises: a wake that cannot
    be sent is logged, and the listeners' poll covers it."""

    def __init__(self, pool: asyncpg.Pool, token: str) -> None:
        self._pool = pool
        self._token = token
        self._again = False
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def send(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._send(), name="wake-sender")

    async def _send(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            try:
                async with self._pool.acquire() as conn:
                    await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, self._token)
                self.sent += 1
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("could not wake the other processes (%s); they will poll", error)
                return

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)


def new_token() -> str:
    """A random id for one `Database`, sent with its wakes so its own listener ignores them."""
    return secrets.token_hex(8)
