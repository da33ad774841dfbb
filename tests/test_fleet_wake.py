"""Waking the fleet's other processes through PostgreSQL's LISTEN/NOTIFY (bot/store/wakes.py): a wake sent
by another process arrives, a process's own wakes do not wake it, a listening connection that drops is
reconnected (and its owner told to poll meanwhile), and SQLite's listener is a no-op."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from bot.config import JobSettings
from bot.fleet import ShardPlan
from bot.image_checker import ImageChecker
from bot.jobs import JobRunner, dispatch
from bot.quota.rules import QuotaSettings
from bot.quota.spending import QuotaService
from bot.store import Database
from bot.store.jobs import JobStore
from bot.sunra import SunraClient
from tests.fakes.sunra_server import FakeSunra
from tests.test_fleet_store import SHARD_0_GUILD, SHARD_1_GUILD, queued_job
from tests.world import SUNRA_KEY, Unseen

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


async def waiting_job(store: JobStore, interaction_id: int, user_id: int, guild_id: int, state: str) -> int:
    job_id = await queued_job(store, interaction_id, user_id, guild_id)
    await store.update(job_id, start_image_url="https://example.invalid/a.png")
    if state != "queued":
        assert await store.transition(job_id, "queued", state, request_id=f"elsewhere-{job_id}")
    return job_id


async def test_a_dispatcher_whose_fleet_cap_is_full_is_woken_by_another_processs_job_ending(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a wake this dispatcher would look again only after an hour: claiming the job proves the wake.
    monkeypatch.setattr(dispatch, "DISPATCH_IDLE_SECONDS", 3600.0)
    async with (
        await Database.open(postgres_url) as db_a,
        await Database.open(postgres_url) as db_b,
        FakeSunra(key=SUNRA_KEY, job_seconds=600) as sunra,
        SunraClient(sunra.url, SUNRA_KEY) as client,
        ImageChecker() as images,
    ):
        mine = JobStore(db_a, shards=ShardPlan(2, (0,)))
        theirs = JobStore(db_b, shards=ShardPlan(2, (1,)))
        # The fleet may have one job at the API: the other process's, until it ends.
        at_api = await waiting_job(theirs, 1, 10, SHARD_1_GUILD, "submitted")
        waiting = await waiting_job(mine, 2, 20, SHARD_0_GUILD, "queued")
        runner = JobRunner(
            store=mine,
            sunra=client,
            images=images,
            quota=QuotaService(db_a, QuotaSettings(max_jobs_in_flight=1)),
            settings=JobSettings(),
            workdir=tmp_path,
        )
        runner.start(Unseen())
        try:
            await eventually(lambda: runner._wakes.connected)
            await asyncio.sleep(0.5)  # its passes find the cap full; it now waits for a wake
            assert (await mine.get(waiting)).state == "queued"  # type: ignore[union-attr]
            assert await theirs.transition(at_api, "submitted", "delivered")
            db_b.wake_others()  # what the other process does when a job's task ends

            async def claimed() -> bool:
                job = await mine.get(waiting)
                return job is not None and job.state != "queued"

            await eventually(claimed)
        finally:
            await runner.stop()
