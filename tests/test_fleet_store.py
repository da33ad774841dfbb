"""The fleet's store on both engines: shard leases, the claim of the next job against fleet-wide caps and
pace by two processes (two `Database`s on one database), and the front of the queue's fair order."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.fleet import ShardLeases, ShardPlan, pacing_delay
from bot.jobs import IN_FLIGHT, fair_order
from bot.store import Database
from bot.store.fleet import FleetStore
from bot.store.jobs import JobStore

SHARD_0_GUILD = 5 << 23  # (guild >> 22) % 2 == 0
SHARD_1_GUILD = (5 << 23) | (1 << 22)


async def queued_job(store: JobStore, interaction_id: int, user_id: int, guild_id: int) -> int:
    job_id, _ = await store.create(
        interaction_id=interaction_id,
        guild_id=guild_id,
        channel_id=6,
        user_id=user_id,
        state="received",
        params={"prompt": "a cat waves"},
        upload_limit=10_485_760,
        lifetime_seconds=3600,
    )
    assert await store.transition(job_id, "received", "queued")
    return job_id


async def claim(store: JobStore, *, per_member: int = 0, in_flight: int = 0, limits=((100, 1.0),)):  # type: ignore[no-untyped-def]
    return await store.claim_next(
        from_state="queued",
        to_state="submitting",
        busy_states=IN_FLIGHT,
        usage_since=0.0,
        max_busy=in_flight,
        max_busy_per_member=per_member,
        pace=lambda sent: pacing_delay(sent, limits, store._clock()),
        pace_window=max(w for _, w in limits),
        pace_count=max(c for c, _ in limits),
    )


async def test_a_job_records_its_guilds_shard_and_each_process_sees_its_own(database_url: str) -> None:
    async with await Database.open(database_url) as db:
        zero = JobStore(db, shards=ShardPlan(2, (0,)))
        one = JobStore(db, shards=ShardPlan(2, (1,)))
        a = await queued_job(zero, 1, 10, SHARD_0_GUILD)
        b = await queued_job(zero, 2, 10, SHARD_1_GUILD)  # any process may record any job
        c, _ = await zero.create(
            interaction_id=3,
            guild_id=None,
            channel_id=6,
            user_id=11,
            state="received",
            params={},
            upload_limit=1,
            lifetime_seconds=60,
        )
        assert [(j.id, j.shard) for j in await zero.in_states(["queued", "received"])] == [(a, 0), (c, 0)]
        assert [(j.id, j.shard) for j in await one.in_states(["queued", "received"])] == [(b, 1)]


async def test_caps_and_pace_hold_across_two_processes(database_url: str) -> None:
    now = [1000.0]
    async with await Database.open(database_url) as db_a, await Database.open(database_url) as db_b:
        a = JobStore(db_a, shards=ShardPlan(2, (0,)), clock=lambda: now[0])
        b = JobStore(db_b, shards=ShardPlan(2, (1,)), clock=lambda: now[0])
        # Member 10 has a job on each shard; members 20..24 one each on shard 1.
        await queued_job(a, 1, 10, SHARD_0_GUILD)
        await queued_job(b, 2, 10, SHARD_1_GUILD)
        for n in range(5):
            await queued_job(b, 10 + n, 20 + n, SHARD_1_GUILD)
        # Both processes claim at once: member 10 gets one job at the API, not one per process.
        first = await asyncio.gather(claim(a, per_member=1), claim(b, per_member=1))
        claimed = [job for job, _ in first if job is not None]
        users = sorted(job.user_id for job in claimed)
        assert users.count(10) <= 1
        # The fleet's in-flight cap: 3 in all, whichever process claims.
        for _ in range(4):
            await asyncio.gather(claim(a, per_member=1, in_flight=3), claim(b, per_member=1, in_flight=3))
        busy = await a.count_by_user(IN_FLIGHT)
        assert sum(busy.values()) == 3 and max(busy.values()) == 1
        # The pace, counted from both processes' claims: 2 a second here (10 a second for sunra).
        now[0] += 10
        for n in range(2):
            await queued_job(a, 30 + n, 30 + n, SHARD_0_GUILD)
        pace = ((2, 1.0),)
        results = [await claim(store, limits=pace) for store in (a, b, b, a)]
        assert [job is not None for job, _ in results] == [True, True, False, False]
        assert all(0 < wait <= 1.0 for _, wait in results[2:])  # told how long to wait
        now[0] += 1.0
        assert (await claim(b, limits=pace))[0] is not None


async def test_the_front_of_the_queue_is_the_fair_order(database_url: str) -> None:
    rng = random.Random(7)
    async with await Database.open(database_url) as db:
        store = JobStore(db)
        for n in range(80):
            job_id = await queued_job(store, n + 1, rng.randint(1, 12), SHARD_0_GUILD)
            if rng.random() < 0.3:
                await store.transition(job_id, "queued", "submitted", submitted_at=2000.0)
        queued = await store.in_states(["queued"])
        expected = [j.id for j in fair_order(queued, await store.started_since(1000.0))]
        for limit in (5, 25, 500):
            front = await store.queue_front("queued", 1000.0, limit)
            assert [j.id for j in front] == expected[:limit]


async def test_a_shard_lease_is_one_processs_until_it_runs_out(database_url: str) -> None:
    async with await Database.open(database_url) as db:
        fleet = FleetStore(db)
        assert await fleet.take_leases([0, 1], 2, "a", now=100.0, until=130.0) == [0, 1]
        assert await fleet.take_leases([1], 2, "b", now=110.0, until=140.0) == []  # held by a
        assert await fleet.renew_leases([0, 1], "a", until=150.0) == [0, 1]
        assert await fleet.take_leases([1], 2, "b", now=151.0, until=181.0) == [1]  # ran out: b's
        assert await fleet.renew_leases([0, 1], "a", until=190.0) == [0]  # a learns it lost shard 1
        await fleet.release_leases("a")
        assert await fleet.take_leases([0], 2, "b", now=152.0, until=182.0) == [0]


async def test_a_restarted_process_waits_for_its_predecessors_lease_and_a_paused_one_stops(
    tmp_path: Path,
) -> None:
    async with await Database.open(tmp_path / "bot.sqlite3") as db:
        plan = ShardPlan(2, (1,))
        killed = ShardLeases(FleetStore(db), plan, lease_seconds=1.0)
        assert await killed.acquire(asyncio.Event())
        restarted = ShardLeases(FleetStore(db), plan, lease_seconds=1.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await restarted.acquire(asyncio.Event())
        assert loop.time() - started >= 0.5  # not before the old lease ran out
        lost = asyncio.Event()
        killed.keep(on_lost=lost.set)  # the "killed" one wakes up: its lease is another's now
        await asyncio.wait_for(lost.wait(), 5)
        await killed.release()
        await restarted.release()


def test_shard_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHARD_COUNT", "SHARD_IDS", "BOT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISCORD_TOKEN", "t")
    monkeypatch.setenv("SUNRA_KEY", "k")
    assert load_settings().shards == ShardPlan(None, None)
    monkeypatch.setenv("SHARD_COUNT", "3")
    assert load_settings().shards == ShardPlan(3, (0, 1, 2))
    monkeypatch.setenv("SHARD_IDS", "2, 0")
    settings = load_settings()
    assert settings.shards == ShardPlan(3, (0, 2)) and settings.shards.syncs_commands
    assert settings.shards.shard_of(SHARD_1_GUILD) == 11 % 3  # (guild_id >> 22) % SHARD_COUNT
    for wrong, said in (("3", "between 0 and SHARD_COUNT - 1"), ("1,1", "twice")):
        monkeypatch.setenv("SHARD_IDS", wrong)
        with pytest.raises(ConfigError, match=said):
            load_settings()
    monkeypatch.delenv("SHARD_COUNT")
    monkeypatch.setenv("SHARD_IDS", "1")
    with pytest.raises(ConfigError, match="SHARD_IDS needs SHARD_COUNT"):
        load_settings()
