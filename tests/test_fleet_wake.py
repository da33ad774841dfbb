"""Waking the fleet's other processes through PostgreSQL's LISTEN/NOTIFY (bot/store/wakes.py): a wake sent
by another process arrives, a process's own wakes do not wake it, a listening connection that drops is
reconnected (and its owner told to poll meanwhile), and SQLite's listener is a no-op."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from bot.store import Database

# A bound on waiting for something that happens within milliseconds; never a measure of speed.
PATIENCE_SECONDS = 30.0

OTHER_PROCESS = """
import asyncio, sys
from bot.store import Database

async def main(url):
    async with await Database.open(url) as db:
        db.wake_others()  # sent in the background; close() waits for it

asyncio.run(main(sys.argv[1]))
"""


async def eventually(check: Callable[[], bool | Awaitable[bool]]) -> None:
    async def poll() -> None:
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), PATIENCE_SECONDS)


class Woken:
    """Counts the wakes and, at each, whether the listener was connected."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.count = 0
        self.connected_at_wake: list[bool] = []
        self.listener: object | None = None

    def __call__(self) -> None:
        self.count += 1
        self.connected_at_wake.append(bool(getattr(self.listener, "connected", False)))
        self.event.set()

    def reset(self) -> None:
        self.count = 0
        self.connected_at_wake.clear()
        self.event.clear()


async def test_a_wake_crosses_processes_and_a_process_does_not_wake_itself(postgres_url: str) -> None:
    async with await Database.open(postgres_url) as db:
        woken = Woken()
        listener = woken.listener = db.listen_wakes(woken)
        await eventually(lambda: listener.connected)
        await woken.event.wait()  # a (re)connection wakes its owner once: it may have missed a wake
        woken.reset()
        db.wake_others()  # this process's own wake: not news to it
        # Another process, its own interpreter, wakes the fleet and exits.
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", OTHER_PROCESS, postgres_url, cwd=Path(__file__).resolve().parent.parent
        )
        assert await asyncio.wait_for(other.wait(), PATIENCE_SECONDS) == 0
        await asyncio.wait_for(woken.event.wait(), PATIENCE_SECONDS)
        # Notifications reach a listener in commit order, so our own wake, sent first, was heard (and
        # ignored) before the other process's.
        assert woken.count == 1


async def test_a_dropped_listening_connection_is_reconnected_and_its_owner_polls_meanwhile(
    postgres_url: str,
) -> None:
    async with await Database.open(postgres_url) as db, await Database.open(postgres_url) as other:
        woken = Woken()
        listener = woken.listener = db.listen_wakes(woken)
        await eventually(lambda: listener.connected)
        first_pid = listener.backend_pid
        woken.reset()
        # The server ends the listening connection (an operator, a failover, a restart of PostgreSQL).
        admin = await asyncpg.connect(postgres_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first_pid)
        finally:
            await admin.close()
        await eventually(lambda: listener.connections == 2 and listener.connected)
        assert listener.backend_pid != first_pid
        # Told when it dropped (not connected: poll) and when it came back (connected: look once).
        assert woken.connected_at_wake == [False, True]
        woken.reset()
        other.wake_others()
        await asyncio.wait_for(woken.event.wait(), PATIENCE_SECONDS)
        assert woken.count == 1


async def test_on_sqlite_there_is_no_one_else_to_wake(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "bot.sqlite3") as db:
        woken = Woken()
        listener = db.listen_wakes(woken)
        db.wake_others()
        await asyncio.sleep(0)
        assert not listener.connected and woken.count == 0
        await listener.close()
