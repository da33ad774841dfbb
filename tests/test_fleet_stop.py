"""A fleet process stopped gracefully (SIGTERM, as `docker compose stop` sends, 10 s before SIGKILL).

Two real bot processes on one PostgreSQL database (shards 0 and 1, as tests/test_fleet.py), a burst of
commands on both shards, every submission to the fake sunra slow enough that a job of shard 1 is
`submitting` when its process gets SIGTERM. Then:

* the process exits by itself, well inside Docker's grace (the figure is printed; the bound is loose);
* its shard leases are given back as it stops, so the process started in its place takes them at once
  (the lease is 30 s: a lease not given back would keep it waiting that long);
* every job ends exactly once (delivered once or told once), none ended "uncertain": the submission
  under way when the signal came was let finish and its request id recorded;
* one submission per job at the fake sunra, and every one belongs to a job that recorded it.

And below the processes: renewing and giving back a lease never waits for the fleet's write lock.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.fleet import ShardLeases, ShardPlan
from bot.store import Database
from bot.store.fleet import FleetStore
from bot.store.postgres import WRITE_LOCK
from cogs.jobs._delivery import outcome_mark
from tests import images
from tests.fakes.discord_server import FakeDiscord, InteractionRecord
from tests.fakes.sunra_server import FakeSunra
from tests.test_crash import BotProcess
from tests.test_fleet import ENDED, animate_at_home, fakes_and_two_shards, members_on_two_shards
from tests.world import LEDGER_BY_JOB, assert_ledger_matches

MEMBERS = 24
COMMANDS = 60
JOB_SECONDS = 0.5
# Every submission creates its job at sunra, then answers this late: a job is `submitting` that long.
SUBMIT_SECONDS = 0.6
LEASE_SECONDS = 30
# Docker's grace is 10 s; a graceful stop is meant to take about 2. Loose: timed assertions flake.
EXIT_BOUND_SECONDS = 8.0


@pytest.fixture
async def fleet(
    postgres_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FakeDiscord, FakeSunra, list[BotProcess]]]:
    async with fakes_and_two_shards(
        postgres_url,
        tmp_path,
        queue_seconds=0.1,
        SHARD_LEASE_SECONDS=str(LEASE_SECONDS),
        QUOTA__MAX_CONCURRENT_JOBS="1",
        QUOTA__MAX_JOBS_IN_FLIGHT="6",
        QUOTA__DAILY_CREDITS="100",
    ) as fleet:
        yield fleet


@pytest.mark.parametrize("busy", [False, True], ids=["quiet-fleet", "busy-fleet"])
async def test_sigterm_mid_burst_exits_at_once_gives_the_leases_back_and_loses_no_job(
    fleet: tuple[FakeDiscord, FakeSunra, list[BotProcess]], postgres_url: str, busy: bool
) -> None:
    discord, sunra, bots = fleet
    home = members_on_two_shards(discord, MEMBERS)
    await bots[0].start()
    await bots[1].start()
    sunra.fail_next("submit", 200, times=10_000, delay=SUBMIT_SECONDS, after_processing=True)
    image = discord.add_attachment("cat.png", images.png((640, 480)))
    interactions: list[InteractionRecord] = []
    command = animate_at_home(discord, home, image, "stop prompt", interactions)

    members = list(home)
    await asyncio.gather(*(command(n, members[n % MEMBERS]) for n in range(COMMANDS)))
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=2)
    try:

        async def shard_one_submitting() -> bool:
            rows = await pool.fetch("SELECT state, COUNT(*) FROM jobs WHERE shard = 1 GROUP BY state")
            states = {r[0]: int(r[1]) for r in rows}
            return states.get("submitting", 0) >= 1 and states.get("queued", 0) >= 1

        for _ in range(1500):
            if await shard_one_submitting():
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"shard 1 never had a job submitting\n{bots[1].tail()}")

        proc = bots[1].proc
        assert proc is not None
        hog = asyncio.create_task(hog_the_write_lock(postgres_url)) if busy else None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                code = await proc.wait()
        finally:
            if hog is not None:
                hog.cancel()
                await asyncio.gather(hog, return_exceptions=True)
        took = time.monotonic() - started
        print(
            f"\nSIGTERM to exit, mid-burst, {'busy' if busy else 'quiet'} fleet: {took:.2f} s (exit {code})"
        )
        leases = {
            r["shard"]: (r["owner"], r["expires_at"]) for r in await pool.fetch("SELECT * FROM shard_leases")
        }
        assert took < EXIT_BOUND_SECONDS, f"took {took:.2f} s to stop\n{bots[1].tail()}"
        assert code == 0, bots[1].tail()
        assert leases[1][1] == 0, f"shard 1's lease was not given back: {leases}\n{bots[1].tail()}"
        assert leases[0][1] > time.time(), "shard 0's lease is the other process's and still held"

        # The process started in its place takes the lease at once (not after LEASE_SECONDS).
        restarted = time.monotonic()
        await bots[1].start()
        print(f"replacement READY after {time.monotonic() - restarted:.2f} s (lease {LEASE_SECONDS} s)")
        assert "still leased by another process" not in bots[1].log_text()

        async def settled() -> bool:
            rows = await pool.fetch("SELECT state, notified FROM jobs")
            acknowledged = sum(1 for i in interactions if discord.interactions[i.id].acknowledged)
            return (
                len(rows) == COMMANDS
                and all(r["state"] in ENDED and (r["notified"] or r["state"] == "delivered") for r in rows)
                and acknowledged == COMMANDS
            )

        for _ in range(1200):
            if await settled():
                break
            await asyncio.sleep(0.1)
        jobs = [dict(r) for r in await pool.fetch("SELECT * FROM jobs ORDER BY id")]
        ledger = [tuple(r) for r in await pool.fetch(LEDGER_BY_JOB)]
    finally:
        await pool.close()
    detail = "\n".join(f"#{j['id']} shard {j['shard']} {j['state']} {j['error_code']}" for j in jobs)
    tails = "\n".join(bot.tail(40) for bot in bots)
    assert discord.interaction_problems() == [], tails
    assert len(jobs) == COMMANDS, detail

    # Every job ended once: delivered or told, one outcome post at most, none left uncertain.
    for job in jobs:
        assert job["state"] in ENDED, f"job {job['id']} did not end\n{detail}\n{tails}"
        assert job["state"] != "uncertain", f"job {job['id']}'s submission was cut off\n{detail}\n{tails}"
        marks = [
            m
            for m in discord.messages
            if m.kind == "channel"
            and not m.deleted
            and any(
                (e.get("footer") or {}).get("text") == outcome_mark(job["id"])
                for e in m.message.get("embeds") or []
            )
        ]
        assert len(marks) <= 1, f"job {job['id']} posted {len(marks)} times"
        if job["state"] == "delivered":
            assert len(marks) == 1 or job["result_message_id"] is not None, job
    # Delivered; or, with the fleet's lock held by others through the whole grace, a command still being
    # checked was cut off and told so once at the restart (nothing charged, nothing submitted).
    cut_off = [j for j in jobs if j["state"] != "delivered"]
    assert all(j["error_code"] == "restarted_before_check" for j in cut_off), detail
    assert busy or not cut_off, detail

    # One submission per job at sunra, each recorded by its job.
    prompts = Counter(str(job.input.get("prompt")) for job in sunra.jobs.values())
    assert max(prompts.values()) == 1, "a prompt was submitted twice"
    assert {j["request_id"] for j in jobs if j["request_id"] is not None} == set(sunra.jobs)
    assert len(sunra.jobs) == COMMANDS - len(cut_off)
    assert_ledger_matches(ledger)


async def hog_the_write_lock(url: str) -> None:
    """A busy fleet: another process's write transactions hold the fleet's write lock most of the time
    (0.3 s each, back to back) while this one stops."""
    conn = await asyncpg.connect(url)
    try:
        while True:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
                await asyncio.sleep(0.3)
    finally:
        await conn.close()


async def test_renewing_and_giving_back_leases_never_waits_for_the_write_lock(postgres_url: str) -> None:
    async with await Database.open(postgres_url) as db, await Database.open(postgres_url) as busy:
        leases = ShardLeases(FleetStore(db), ShardPlan(2, (0, 1)), lease_seconds=LEASE_SECONDS)
        assert await leases.acquire(asyncio.Event())
        held = asyncio.Event()
        done = asyncio.Event()

        async def hold_the_fleets_write_lock() -> None:
            async with busy.write():
                held.set()
                await done.wait()

        async def hold_this_process_write_lock() -> None:
            async with db.write():
                await done.wait()

        # The other process's first: were this process's holder to win the fleet's lock, it would sit
        # idle in its transaction until PostgreSQL ended it (10 s), and the test would wait for nothing.
        holders = [asyncio.create_task(hold_the_fleets_write_lock())]
        try:
            await held.wait()
            holders.append(asyncio.create_task(hold_this_process_write_lock()))
            await asyncio.sleep(0.1)  # it now waits for the fleet's lock, holding this process's
            async with asyncio.timeout(2):
                assert await FleetStore(db).renew_leases([0, 1], leases.owner, until=time.time() + 60) == [
                    0,
                    1,
                ]
            started = time.monotonic()
            await leases.release()
            assert time.monotonic() - started < 2
            assert {shard: until for shard, (_, until) in (await FleetStore(busy).leases()).items()} == {
                0: 0,
                1: 0,
            }
        finally:
            done.set()
            await asyncio.gather(*holders)
