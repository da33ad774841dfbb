"""A seeded storm: many jobs through the real runner, Cancel pressed at random moments in every phase,
faults on both sides, and the process stopped mid-flight now and then (the runner's tasks cancelled at
whatever await they are in, the database closed, then reopened and resumed by a new bot).

Afterwards every job has ended exactly once with one message, the ledger balances, no reservation is
open, and a new job still runs. ``STORM_SEED=n`` replays another schedule; the schedule is printed.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
from pathlib import Path

from bot.jobs import ENDED
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, InteractionRecord
from tests.fakes.sunra_server import FakeSunra, JobFailure, JobPlan
from tests.world import SUNRA_KEY, World, loosen_rate_limits, running_world

LIVES = 3  # process runs; the first two end mid-flight
JOBS_PER_LIFE = 7
MEMBERS = [p.DEFAULT_USER_ID, 1_143_850_174_982_443_090, 1_143_850_174_982_443_091, 1_143_850_174_982_443_092]
QUOTA = {"max_concurrent_jobs": 1, "max_jobs_in_flight": 3, "daily_credits": 200}
CHANNEL_POSTS = f"/channels/{p.DEFAULT_CHANNEL_ID}/messages"


def plan_the_api(sunra: FakeSunra) -> None:
    sunra.job_seconds = 0.5
    sunra.plan_jobs(JobPlan(seconds=1.5, queue_seconds=0.5), prompt_contains="[slow]", times=None)
    sunra.plan_jobs(
        JobPlan(seconds=0.4, fail=JobFailure("Content flagged", retryable=False)),
        prompt_contains="[fail]",
        times=None,
    )


def add_faults(world: World, rng: random.Random) -> list[str]:
    """A few faults per life, chosen by the seed."""
    chosen = rng.sample(["slow_submit", "flaky_result", "flaky_cancel", "dropped_post", "hung_post"], 3)
    if "slow_submit" in chosen:
        world.sunra.hang_next_submit(0.6)
    if "flaky_result" in chosen:
        world.sunra.fail_next("result", 503, delay=0.2, times=2)
    if "flaky_cancel" in chosen:
        world.sunra.fail_next("cancel", 503, times=4)
    if "dropped_post" in chosen:
        world.discord.inject_disconnect(CHANNEL_POSTS, method="POST", after_processing=rng.random() < 0.5)
    if "hung_post" in chosen:
        world.discord.inject_error(CHANNEL_POSTS, method="POST", status=503, times=1)
    return chosen


async def animate(world: World, number: int, rng: random.Random) -> InteractionRecord:
    user = MEMBERS[number % len(MEMBERS)]
    kind = rng.choice(["", "", "[slow] ", "[fail] "])
    return await world.animate(f"{kind}storm job {number}", user_id=user, audio=False)


async def press_cancel(world: World, job_id: int, user_id: int) -> InteractionRecord:
    # message=None: a member whose client still shows the button, whatever the message says by now.
    return await world.discord.dispatch_interaction(
        p.button_click(world.discord, f"kling:cancel:{job_id}", user_id=user_id)
    )


async def one_life(
    world: World, rng: random.Random, first_number: int, pressed_in: collections.Counter[str]
) -> list[InteractionRecord]:
    """Sends this life's commands and presses Cancel at random on any job known so far."""
    interactions: list[InteractionRecord] = []
    number = first_number
    press_rate = rng.uniform(0.15, 0.5)  # some lives are stormier than others
    for _ in range(int(rng.uniform(25, 45))):
        if len(interactions) < JOBS_PER_LIFE and rng.random() < 0.35:
            interactions.append(await animate(world, number, rng))
            number += 1
        rows = await world.db.fetchall("SELECT id, user_id, state FROM jobs")
        live = [row for row in rows if row["state"] not in ENDED]
        if rows and rng.random() < press_rate:
            # Mostly running jobs, sometimes one that has just ended (a late press).
            job_id, user_id, state = rng.choice(live if live and rng.random() < 0.85 else rows)
            pressed_in[state] += 1
            await press_cancel(world, int(job_id), int(user_id))
        await asyncio.sleep(rng.uniform(0.0, 0.12))
    return interactions


async def settled(world: World, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        rows = await world.db.fetchall("SELECT state, notified FROM jobs")
        if all(state in ENDED and (told or state in ("delivered", "refused")) for state, told in rows):
            return
        if loop.time() > deadline:
            raise AssertionError(f"jobs not settled: {[tuple(r) for r in rows]}")
        await asyncio.sleep(0.05)


async def test_a_cancel_storm_with_restarts_ends_every_job_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("STORM_SEED", "1"))
    rng = random.Random(seed)
    pressed_in: collections.Counter[str] = collections.Counter()
    faults: list[list[str]] = []
    async with asyncio.timeout(150), FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(discord)
        plan_the_api(sunra)
        number = 0
        for life in range(LIVES):
            async with running_world(tmp_path, discord=discord, sunra=sunra, quota=QUOTA) as world:
                faults.append(add_faults(world, rng))
                number += len(await one_life(world, rng, number, pressed_in))
                if life == LIVES - 1:
                    await settled(world, within=60)
                    await check_the_end(world)
                    # ...and a new job still runs, for a member who pressed Cancel all along.
                    after = await world.ended(await world.animate("after the storm", audio=False), within=20)
                    assert after.state == "delivered", after
                # Leaving the block stops the bot mid-flight: tasks cancelled, database closed.
        print(f"seed {seed}: {number} jobs, faults per life {faults}, presses by state {dict(pressed_in)}")
        assert pressed_in["submitted"] > 0, "the storm must reach jobs at the API"


async def check_the_end(world: World) -> None:
    jobs = await world.db.fetchall("SELECT id, state FROM jobs ORDER BY id")
    endings = await world.db.fetchall(
        "SELECT job_id, COUNT(*) FROM job_events WHERE to_state IN"
        " ('delivered', 'failed', 'cancelled', 'refused', 'uncertain') GROUP BY job_id"
    )
    ended_times = {int(job_id): int(n) for job_id, n in endings}
    for job_id, state in jobs:
        assert state in ENDED, (job_id, state)
        assert ended_times.get(int(job_id)) == 1, f"job {job_id} ended {ended_times.get(int(job_id))} times"
        if state != "refused":  # a refusal is told privately
            outcomes = world.outcome_messages(int(job_id))
            assert len(outcomes) == 1, f"job {job_id} ({state}): {len(outcomes)} outcome messages"
    await world.assert_ledger_matches_jobs()
    open_reservations = await world.db.fetchall(
        "SELECT r.job_id FROM quota_ledger r WHERE r.kind = 'reserve' AND NOT EXISTS"
        " (SELECT 1 FROM quota_ledger s WHERE s.job_id = r.job_id AND s.kind IN ('commit', 'refund'))"
    )
    assert open_reservations == [], [tuple(r) for r in open_reservations]
    states = collections.Counter(state for _, state in jobs)
    print(f"end states: {dict(states)}; cancels sent to the API: {world.sunra.count('cancel')}")
