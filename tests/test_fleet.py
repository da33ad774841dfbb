"""Two real bot processes on one PostgreSQL database, each owning one of two shards (issue 16).

`python -m bot` twice (as tests/test_crash.py runs it), SHARD_COUNT=2 and SHARD_IDS=0 / 1, against one
fake Discord that shards like Discord and one fake sunra. A burst of 200 /animate commands from 50
members over guilds on both shards, with the caps set low enough to bite (one job per member at the API,
eight in flight for the fleet, two jobs a day per member); the process of shard 1 is SIGKILLed while its
jobs are queued and at the API, then restarted. Then:

* every interaction was delivered to its shard's process only and answered exactly once;
* every job records its guild's shard, and only that shard's process ever logged about it;
* one submission per job (no prompt twice), the fleet's submissions within 10 a second and 100 a
  minute, and no member with more than one job at a time at the API (counted at the fake sunra);
* every acknowledged command ended exactly once (delivered, or told once), and the ledger read from
  PostgreSQL charged each delivered job once and every other job nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import images
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, InteractionRecord, MessageRecord
from tests.fakes.sunra_server import FakeSunra, JobPlan
from tests.test_crash import SUNRA_KEY, BotProcess
from tests.world import LEDGER_BY_JOB, assert_ledger_matches, outcome_messages

ENDED = {"delivered", "failed", "cancelled", "refused", "uncertain"}
MEMBERS = 50
COMMANDS = 200
JOB_SECONDS = 1.0
CAPS = {
    "QUOTA__MAX_CONCURRENT_JOBS": "1",
    "QUOTA__MAX_JOBS_IN_FLIGHT": "8",
    # 5 s silent videos cost 5 credits: two a day per member, the rest refused privately.
    "QUOTA__DAILY_CREDITS": "10",
}
JOB_LINE = re.compile(r"\[job=(\d+)")


@pytest.fixture
async def fleet(
    postgres_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FakeDiscord, FakeSunra, list[BotProcess]]]:
    async with fakes_and_two_shards(
        postgres_url, tmp_path, queue_seconds=0.2, SHARD_LEASE_SECONDS="3", **CAPS
    ) as fleet:
        yield fleet


@contextlib.asynccontextmanager
async def fakes_and_two_shards(
    postgres_url: str, tmp_path: Path, *, queue_seconds: float, **env: str
) -> AsyncIterator[tuple[FakeDiscord, FakeSunra, list[BotProcess]]]:
    """A fake Discord of two shards, a fake sunra whose jobs take JOB_SECONDS after `queue_seconds`
    queued, and a bot process (not started) for each shard on `postgres_url`, with `env` besides;
    the processes are stopped at the end."""
    async with (
        FakeDiscord(shard_count=2) as discord,
        FakeSunra(key=SUNRA_KEY, job_seconds=JOB_SECONDS) as sunra,
    ):
        for bucket in ("message_create", "message_edit", "default"):
            discord.set_rate_limit(bucket, 100_000, 1.0)
        sunra.plan_jobs(JobPlan(seconds=JOB_SECONDS, queue_seconds=queue_seconds), times=None)
        bots = []
        for shard in (0, 1):
            workdir = tmp_path / f"shard-{shard}"
            workdir.mkdir()
            shard_env = {
                "DATABASE_URL": postgres_url,
                "SHARD_COUNT": "2",
                "SHARD_IDS": str(shard),
                "LOG_LEVEL": "INFO",
                **env,
            }
            bots.append(BotProcess(workdir, discord, sunra, **shard_env))
        try:
            yield discord, sunra, bots
        finally:
            for bot in bots:
                await bot.stop()


def guilds_on(discord: FakeDiscord, shard: int, count: int) -> list[tuple[int, int]]:
    found = []
    for n in range(count):
        guild_id = discord.guild_id_on_shard(shard)
        discord.add_guild(f"Shard {shard} server {n}", guild_id=guild_id)
        found.append((guild_id, discord.guilds[guild_id].channel_ids[0]))
    return found


def members_on_two_shards(discord: FakeDiscord, count: int) -> dict[int, tuple[int, int]]:
    """`count` members (ids from 1000), each at home in one of two servers on each of shards 0 and 1, half
    on each shard: member id -> (guild id, channel id)."""
    guilds = {shard: guilds_on(discord, shard, 2) for shard in (0, 1)}
    home = {1000 + m: guilds[m % 2][(m // 2) % 2] for m in range(count)}
    for user_id, (guild_id, _) in home.items():
        discord.ensure_member(guild_id, user_id)
    return home


def animate_at_home(
    discord: FakeDiscord,
    home: dict[int, tuple[int, int]],
    image: Any,
    prompt: str,
    interactions: list[InteractionRecord],
) -> Callable[[int, int], Awaitable[None]]:
    """A sender of the n-th /animate (silent, `prompt` and n) by a member in their home channel; each
    interaction is appended to `interactions`."""

    async def command(n: int, user_id: int) -> None:
        guild_id, channel_id = home[user_id]
        payload = p.slash_command(
            discord,
            options={"image": image, "prompt": f"{prompt} {n}", "audio": False},
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
        )
        interactions.append(await discord.dispatch_interaction(payload))

    return command


async def test_two_processes_on_two_shards_survive_a_kill_mid_burst(
    fleet: tuple[FakeDiscord, FakeSunra, list[BotProcess]], postgres_url: str
) -> None:
    discord, sunra, bots = fleet
    # Member m lives in one guild; half the members on each shard.
    home = members_on_two_shards(discord, MEMBERS)
    await bots[0].start()  # shard 0's process syncs the commands
    await bots[1].start()
    image = discord.add_attachment("cat.png", images.png((640, 480)))
    interactions: list[InteractionRecord] = []
    command = animate_at_home(discord, home, image, "fleet prompt", interactions)

    def users(shards: Sequence[int]) -> list[int]:
        return [u for u in home if discord.shard_of(home[u][0]) in shards]

    plan = [(n, users((0, 1))[n % MEMBERS]) for n in range(150)]
    await asyncio.gather(*(command(n, user) for n, user in plan))
    await discord.wait_for(
        lambda: all(discord.interactions[i.id].acknowledged for i in interactions),
        timeout=60,
        what="the first 150 answered",
    )
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=2)
    try:

        async def shard_one_busy() -> bool:
            # Every command of shard 1 checked, some waiting in the queue and some at the API.
            states = await shard_states(pool, 1)
            return (
                not states.get("received")
                and states.get("queued", 0) >= 3
                and states.get("submitted", 0) >= 1
            )

        for _ in range(600):
            if await shard_one_busy():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("shard 1 never had jobs queued or at the API to be killed with")
        await bots[1].kill()  # jobs of shard 1 queued and at the API
        # Shard 0 keeps working while shard 1 is down; shard 1's commands wait for its restart.
        shard0 = users((0,))
        await asyncio.gather(*(command(150 + n, shard0[n % len(shard0)]) for n in range(25)))
        await bots[1].start()
        await asyncio.gather(*(command(175 + n, users((0, 1))[n % MEMBERS]) for n in range(25)))

        for _ in range(1800):
            if await settled(pool, discord, interactions):
                break
            await asyncio.sleep(0.1)
        jobs = [dict(r) for r in await pool.fetch("SELECT * FROM jobs ORDER BY id")]
        ledger = [tuple(r) for r in await pool.fetch(LEDGER_BY_JOB)]
    finally:
        await pool.close()
    detail = "\n".join(f"#{j['id']} shard {j['shard']} {j['state']} {j['error_code']}" for j in jobs)
    tails = "\n".join(bot.tail(40) for bot in bots)
    assert len(interactions) == COMMANDS

    # Every interaction went to its shard's process only and was answered once.
    assert discord.interaction_problems() == [], tails
    deferred = {c.interaction_id for c in discord.callbacks if c.type == 5}
    by_interaction = {int(j["interaction_id"]): j for j in jobs}
    assert deferred <= set(by_interaction), "an acknowledged command has no job"

    # Each job is its guild's shard's, and only that shard's process logged about it.
    for job in jobs:
        assert job["shard"] == discord.shard_of(int(job["guild_id"])), job
    for shard, bot in enumerate(bots):
        logged = {int(m) for m in JOB_LINE.findall(bot.log_text())}
        strangers = sorted(j["id"] for j in jobs if j["id"] in logged and j["shard"] != shard)
        assert strangers == [], f"process of shard {shard} touched jobs {strangers}"

    # Every command ended exactly once: one end, told once or delivered once.
    for job in jobs:
        assert job["state"] in ENDED, f"job {job['id']} did not end\n{detail}\n{tails}"
        if job["state"] != "refused":
            marks = outcome_posts(discord, job["id"])
            assert len(marks) <= 1, f"job {job['id']} posted {len(marks)} times"
            if job["state"] == "delivered":
                assert len(marks) == 1 or job["result_message_id"] is not None, job
    delivered = [j for j in jobs if j["state"] == "delivered"]
    assert len(delivered) >= MEMBERS, detail  # the allowance lets each member make two

    # One submission per job, paced and capped for the fleet as a whole.
    submits = sorted(r.at for r in sunra.requests if r.route == "submit" and r.status == 200)
    prompts = Counter(str(job.input.get("prompt")) for job in sunra.jobs.values())
    assert max(prompts.values()) == 1, "a prompt was submitted twice"
    # Each job at the API once: by its request id, or (killed while submitting) ended uncertain.
    recorded = {j["request_id"] for j in jobs if j["request_id"] is not None}
    uncertain = sum(1 for j in jobs if j["state"] == "uncertain" and j["request_id"] is None)
    assert recorded <= set(sunra.jobs)
    assert len(recorded) <= len(submits) <= len(recorded) + uncertain
    assert max_in_window(submits, 1.0) <= 10
    assert max_in_window(submits, 60.0) <= 100
    user_of = {j["request_id"]: int(j["user_id"]) for j in jobs if j["request_id"]}
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for request_id, job in sunra.jobs.items():
        if request_id in user_of:
            spans[user_of[request_id]].append(
                (job.created_at, job.created_at + job.queue_seconds + job.seconds)
            )
    assert max(most_at_once(s) for s in spans.values()) <= 1, "a member ran two jobs at once"

    # The ledger, read from PostgreSQL: each delivered job charged once, every other job nothing.
    assert_ledger_matches(ledger)
    assert bots[1].kills == 1


async def shard_states(pool: asyncpg.Pool, shard: int) -> dict[str, int]:
    """How many of the shard's jobs are in each state, read from PostgreSQL."""
    rows = await pool.fetch("SELECT state, COUNT(*) FROM jobs WHERE shard = $1 GROUP BY state", shard)
    return {r[0]: int(r[1]) for r in rows}


async def settled(
    pool: asyncpg.Pool, discord: FakeDiscord, interactions: Sequence[InteractionRecord]
) -> bool:
    """Every command answered, every acknowledged one recorded, every job ended and told (or delivered)."""
    rows = await pool.fetch("SELECT state, notified FROM jobs")
    recorded = await pool.fetchval("SELECT COUNT(*) FROM jobs")
    acknowledged = sum(1 for i in interactions if discord.interactions[i.id].acknowledged)
    deferred = {c.interaction_id for c in discord.callbacks if c.type == 5}
    return (
        int(recorded) >= len(deferred & {i.id for i in interactions})
        and all(r["state"] in ENDED and (r["notified"] or r["state"] == "delivered") for r in rows)
        and acknowledged == len(interactions)
    )


def outcome_posts(discord: FakeDiscord, job_id: int) -> list[MessageRecord]:
    """The channel messages, not deleted, that carry the job's outcome mark: one per ended job."""
    return [m for m in outcome_messages(discord, job_id) if m.kind == "channel" and not m.deleted]


def max_in_window(times: Sequence[float], window: float) -> int:
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most
