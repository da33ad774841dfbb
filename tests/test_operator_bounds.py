"""The operator's bounds on who may use the bot (ALLOWED_GUILD_IDS) and on one member's burst, through
the real bot, discord.py and the fake Discord and sunra servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.guild_access import NOT_ALLOWED, GuildNotAllowed
from bot.jobs import Command
from bot.jobs.runner import MEMBER_BURST, MEMBER_INTAKE, MemberBurst, PerKeyLimit
from bot.request import AttachmentRef, build_request
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.world import World, loosen_rate_limits, running_world

EPHEMERAL = 64
OTHER_GUILD = 1_301_133_704_468_807_680
MEMBER = 1_143_850_174_982_440_001


async def until(condition: object, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise TimeoutError("the condition did not become true in time")
        await asyncio.sleep(0.02)


def test_allowed_guild_ids_are_read_like_command_guild_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "t0ken")
    monkeypatch.setenv("SUNRA_KEY", "k3y")
    monkeypatch.setenv("ALLOWED_GUILD_IDS", "123, 456")
    assert load_settings().allowed_guild_ids == [123, 456]
    monkeypatch.setenv("ALLOWED_GUILD_IDS", "[789]")
    assert load_settings().allowed_guild_ids == [789]
    monkeypatch.setenv("ALLOWED_GUILD_IDS", "")
    assert load_settings().allowed_guild_ids == []


async def test_the_bot_leaves_servers_not_on_the_allowlist_at_start_and_on_joining(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        fake.add_guild("Not allowed", guild_id=OTHER_GUILD)
        async with running_world(tmp_path, discord=fake, allowed_guild_ids=[p.DEFAULT_GUILD_ID]) as world:
            await until(lambda: OTHER_GUILD in fake.left_guilds)
            added = int(fake.add_guild("Added later")["id"])
            await until(lambda: added in fake.left_guilds)
            assert fake.left_guilds == [OTHER_GUILD, added]
            assert p.DEFAULT_GUILD_ID in fake.guilds
            assert {g.id for g in world.bot.guilds} == {p.DEFAULT_GUILD_ID}
            # The allowed server works as before.
            job = await world.ended(await world.animate())
            assert job.state == "delivered"


async def test_a_command_from_a_server_not_allowed_starts_nothing(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        # Leaving fails (Discord down for that call): the bot is still there, and must still do nothing.
        fake.inject_error("/users/@me/guilds/", method="DELETE", status=503, times=100)
        async with running_world(tmp_path, discord=fake, allowed_guild_ids=[OTHER_GUILD]) as world:
            interaction = await world.animate("the cat waves")
            callback = await fake.wait_for_callback(interaction.id)
            assert callback.type == 4 and callback.flags & EPHEMERAL
            assert callback.data["content"] == NOT_ALLOWED
            await asyncio.sleep(0.2)
            assert await world.db.fetchall("SELECT id FROM jobs") == []
            assert await world.db.fetchall("SELECT id FROM quota_ledger") == []
            assert world.sunra.count("submit") == 0 and world.sunra.count("upload_initiate") == 0
            assert fake.attachment_downloads == 0


def _command(world: World, *, guild_id: int, user_id: int, interaction_id: int) -> Command:
    image = world.image()
    ref = AttachmentRef(url=image["url"], filename=image["filename"], content_type="image/png", size=1)
    return Command(
        interaction_id=interaction_id,
        guild_id=guild_id,
        channel_id=p.DEFAULT_CHANNEL_ID,
        user_id=user_id,
        role_ids=(),
        upload_limit=10_000_000,
        request=build_request(prompt="the cat waves", image=ref, audio=False),
    )


async def test_every_way_in_is_refused_by_the_runner_for_a_server_not_allowed(tmp_path: Path) -> None:
    # Buttons and forms (Retry, Remix, Extend, a fixed picture) reach the runner without the command
    # tree: the runner asks the same rule before it reserves or downloads anything.
    async with running_world(tmp_path, allowed_guild_ids=[p.DEFAULT_GUILD_ID]) as world:
        command = _command(world, guild_id=OTHER_GUILD, user_id=MEMBER, interaction_id=p.snowflake())
        job_id, _ = await world.bot.runner.record(command)
        with pytest.raises(GuildNotAllowed):
            await world.bot.runner.accept_inputs(job_id, command, "https://sunra.example/start.png")
        job = await world.bot.job_store.get(job_id)
        assert job is not None and job.state == "refused" and job.error_code == "GuildNotAllowed"
        assert await world.db.fetchall("SELECT id FROM quota_ledger") == []
        assert world.sunra.count("submit") == 0


async def test_a_members_burst_is_refused_past_eight_before_any_download(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"daily_credits": 1000}) as world:
        commands = [
            _command(world, guild_id=p.DEFAULT_GUILD_ID, user_id=MEMBER, interaction_id=p.snowflake())
            for _ in range(MEMBER_BURST + 2)
        ]
        jobs = [(await world.bot.runner.record(c))[0] for c in commands]
        # The last two, recorded while eight were still being checked, are refused without a download.
        for job_id, command in zip(jobs[MEMBER_BURST:], commands[MEMBER_BURST:], strict=True):
            with pytest.raises(MemberBurst):
                await world.bot.runner.accept(job_id, command)
        assert world.discord.attachment_downloads == 0
        refused = await world.db.fetchall("SELECT state, error_code FROM jobs WHERE id >= ?", (jobs[-2],))
        assert [tuple(r) for r in refused] == [("refused", "MemberBurst")] * 2
        # Another member is not held back by this one's burst.
        other = _command(world, guild_id=p.DEFAULT_GUILD_ID, user_id=MEMBER + 1, interaction_id=p.snowflake())
        other_job, _ = await world.bot.runner.record(other)
        accepted = await world.bot.runner.accept(other_job, other)
        assert accepted.job_id == other_job
        # The first eight go on; once they are reserved, the member may send more.
        results = await asyncio.gather(
            *(world.bot.runner.accept(j, c) for j, c in zip(jobs[:MEMBER_BURST], commands, strict=False))
        )
        assert len(results) == MEMBER_BURST
        again = _command(world, guild_id=p.DEFAULT_GUILD_ID, user_id=MEMBER, interaction_id=p.snowflake())
        again_job, _ = await world.bot.runner.record(again)
        assert (await world.bot.runner.accept(again_job, again)).job_id == again_job


async def test_a_burst_of_twenty_slash_commands_costs_at_most_eight_downloads(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"daily_credits": 1000}) as world:
        interactions = await asyncio.gather(
            *(world.animate(f"the cat waves {n}", user_id=MEMBER, audio=False) for n in range(20))
        )
        answers = await asyncio.gather(*(world.private_answer(i, within=30) for i in interactions))
        busy = [a for a in answers if a == MemberBurst.user_message]
        assert len(answers) - len(busy) <= MEMBER_BURST and busy
        assert world.discord.attachment_downloads <= MEMBER_BURST
        for interaction in interactions:
            await world.ended(interaction, within=60)
        await world.assert_ledger_matches_jobs()


async def test_one_members_burst_holds_at_most_half_the_intake() -> None:
    limit = PerKeyLimit(MEMBER_INTAKE)
    inside = {1: 0, 2: 0}
    peak = {1: 0, 2: 0}
    release = asyncio.Event()

    async def command(member: int) -> None:
        async with limit.hold(member):
            inside[member] += 1
            peak[member] = max(peak[member], inside[member])
            await release.wait()
            inside[member] -= 1

    tasks = [asyncio.create_task(command(1)) for _ in range(MEMBER_BURST)]
    tasks.append(asyncio.create_task(command(2)))
    # The other member gets in while the first one's burst waits behind its own four.
    await until(lambda: inside[1] == MEMBER_INTAKE and inside[2] == 1)
    for _ in range(10):
        await asyncio.sleep(0)
    assert inside[1] == MEMBER_INTAKE
    release.set()
    await asyncio.gather(*tasks)
    assert peak == {1: MEMBER_INTAKE, 2: 1}
    assert len(limit) == 0  # nothing kept for members who are done
