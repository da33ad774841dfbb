"""The fake Discord shards like Discord: real discord.py AutoShardedBots, one per shard, on one fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, FakeDiscordProcess, running_client


class ShardBot(commands.AutoShardedBot):
    """Answers /ping with the shard ids of its process, as a fleet member would."""

    def __init__(self, shard_ids: list[int] | None, shard_count: int | None = 2, sync: bool = False) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            shard_ids=shard_ids,
            shard_count=shard_count,
        )
        self.sync_commands = sync
        self.answered: list[int] = []

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # discord.py waits 5 s between IDENTIFYs of one process; not in tests

    async def setup_hook(self) -> None:
        bot = self

        @app_commands.command(name="ping", description="Which process answers")
        async def ping(interaction: discord.Interaction) -> None:
            bot.answered.append(interaction.id)
            await interaction.response.send_message(f"pong from {bot.shard_ids}", ephemeral=True)

        self.tree.add_command(ping)
        if self.sync_commands:
            await self.tree.sync()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(shard_count=2) as server:
        yield server


def guild_on(fake: FakeDiscord, shard_id: int) -> tuple[int, int]:
    """A guild on ``shard_id`` with alice in it: (guild id, its #general's id)."""
    guild_id = fake.guild_id_on_shard(shard_id)
    fake.add_guild(f"Shard {shard_id} server", guild_id=guild_id)
    fake.add_member(guild_id, p.DEFAULT_USER_ID)
    return guild_id, fake.guilds[guild_id].channel_ids[0]


async def test_two_processes_each_get_only_their_shards_guilds_and_interactions(fake: FakeDiscord) -> None:
    by_shard = {shard: [guild_on(fake, shard), guild_on(fake, shard)] for shard in (0, 1)}
    default_shard = fake.shard_of(p.DEFAULT_GUILD_ID)
    guild_ids = {
        shard: {gid for gid, _ in guilds} | ({p.DEFAULT_GUILD_ID} if shard == default_shard else set())
        for shard, guilds in by_shard.items()
    }
    bots = [ShardBot([0], sync=True), ShardBot([1])]
    async with running_client(bots[0], fake), running_client(bots[1], fake):
        for shard, bot in enumerate(bots):
            assert {g.id for g in bot.guilds} == guild_ids[shard]
            session = fake.sessions_of_shard(shard)[0]
            assert session.shard == (shard, 2) and session.connected
        assert [c["name"] for c in fake.registered_commands()] == ["ping"]
        assert len(fake.command_puts) == 1  # one process synced

        records = []
        for shard in (0, 1):
            for guild_id, channel_id in by_shard[shard]:
                payload = p.slash_command(fake, name="ping", guild_id=guild_id, channel_id=channel_id)
                records.append(await fake.dispatch_interaction(payload))
        records.append(await fake.dispatch_interaction(p.slash_command(fake, name="ping", guild_id=None)))
        for record in records:
            await fake.wait_for_callback(record.id)

        for record in records:
            assert record.shard_id == (0 if record.guild_id is None else fake.shard_of(record.guild_id))
            assert record.delivered_shards == [record.shard_id]
            assert record.id in bots[record.shard_id].answered
            assert record.id not in bots[1 - record.shard_id].answered
        assert fake.interaction_problems() == []
        report = fake.shard_report()
        assert (report[0]["interactions"], report[0]["answered"]) == (3, 3)  # two guilds and the DM
        assert (report[1]["interactions"], report[1]["answered"]) == (2, 2)

        # A guild created later reaches only the process of its shard.
        late, _ = guild_on(fake, 1)
        await fake.wait_for(lambda: bots[1].get_guild(late) is not None, what="GUILD_CREATE")
        assert bots[0].get_guild(late) is None


async def test_an_unanswered_or_doubly_answered_interaction_is_reported(fake: FakeDiscord) -> None:
    guild_id, channel_id = guild_on(fake, 1)
    async with running_client(ShardBot([0]), fake):  # nobody runs shard 1
        record = await fake.dispatch_interaction(
            p.slash_command(fake, name="ping", guild_id=guild_id, channel_id=channel_id)
        )
        assert record.delivered_to == [] and record.shard_id == 1
        problems = fake.interaction_problems()
        assert any("delivered to no session" in line for line in problems)
        assert any("0 accepted callback(s) of 0" in line for line in problems)


async def test_a_bot_without_a_shard_count_asks_the_gateway_and_runs_every_shard(fake: FakeDiscord) -> None:
    guild_on(fake, 1)
    bot = ShardBot(None, shard_count=None)
    async with running_client(bot, fake):
        assert bot.shard_count == 2
        assert sorted(s.shard_id for s in fake.connected_sessions if s.shard_id is not None) == [0, 1]
        assert len(bot.guilds) == len(fake.guilds)
    assert any(r.path == "/gateway/bot" for r in fake.requests)


async def test_an_invalid_shard_is_refused_with_4010(fake: FakeDiscord) -> None:
    bot = ShardBot([2])  # shard 2 of 2 does not exist
    with pytest.raises(discord.ConnectionClosed) as caught:
        async with running_client(bot, fake, timeout=5.0):
            pass
    assert caught.value.code == 4010


async def test_a_fake_in_its_own_process_shards_through_the_control_api() -> None:
    async with FakeDiscordProcess(shard_count=2) as proc:
        control = proc.control
        second = int(await control.model("guild_id_on_shard", shard_id=1))
        await control.model("add_guild", name="Second", guild_id=second)
        await control.model("add_member", guild_id=second, user_id=p.DEFAULT_USER_ID)
        state = await control.state()
        channel = next(int(g["channel_ids"][0]) for g in state["guilds"] if int(g["id"]) == second)
        bots = [ShardBot([0], sync=True), ShardBot([1])]
        async with running_client(bots[0], proc), running_client(bots[1], proc):
            sent = [
                await control.build_and_dispatch(
                    "slash_command", name="ping", guild_id=second, channel_id=channel, wait_for_session=5
                ),
                await control.build_and_dispatch("slash_command", name="ping", wait_for_session=5),
            ]
            await control.wait(callbacks=2)
            state = await control.state()
    assert [s["shard_id"] for s in sent] == [1, fake_shard(p.DEFAULT_GUILD_ID)]
    assert state["shard_count"] == 2 and state["interaction_problems"] == []
    assert sorted(tuple(s["shard"]) for s in state["sessions"]) == [(0, 2), (1, 2)]
    assert state["shards"]["1"]["answered"] == 1 + (fake_shard(p.DEFAULT_GUILD_ID) == 1)
    for record in sent:
        assert [int(record["id"]) in bot.answered for bot in bots] == [
            record["shard_id"] == 0,
            record["shard_id"] == 1,
        ]


def fake_shard(guild_id: int) -> int:
    return (guild_id >> 22) % 2
