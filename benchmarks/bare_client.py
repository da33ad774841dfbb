"""The floor for benchmarks/crowd.py: a bare discord.py client whose /animate only defers.

    DISCORD_TOKEN=... DISCORD_API_URL=... DISCORD_GATEWAY_URL=... python benchmarks/bare_client.py

Same intents and the same /animate options as the bot, so the gateway parsing and the harness cost the
same; nothing is read or written before the deferral. With SHARD_COUNT and SHARD_IDS it connects as those
shards (discord.py's AutoShardedClient), as the bot does in a fleet. Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import discord
import yarl
from discord import app_commands


class BareClient(discord.Client):
    def __init__(self, **sharding: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(intents=intents, max_messages=None, **sharding)
        self.tree = app_commands.CommandTree(self)

        @self.tree.command(name="animate", description="Defers and does nothing else")
        @app_commands.guild_only()
        async def animate(interaction: discord.Interaction, image: discord.Attachment, prompt: str) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)

    async def setup_hook(self) -> None:
        ids = getattr(self, "shard_ids", None)
        if ids is None or 0 in ids:
            await self.tree.sync()


class ShardedBareClient(BareClient, discord.AutoShardedClient):
    """The same, as some shards of a fleet."""


async def main() -> None:
    discord.http.Route.BASE = os.environ["DISCORD_API_URL"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORD_GATEWAY_URL"])
    client: BareClient = BareClient()
    if os.environ.get("SHARD_COUNT"):
        count = int(os.environ["SHARD_COUNT"])
        ids = [int(i) for i in os.environ.get("SHARD_IDS", "").split(",") if i.strip()] or list(range(count))
        client = ShardedBareClient(shard_count=count, shard_ids=ids)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with client:
        runner = asyncio.create_task(client.start(os.environ["DISCORD_TOKEN"]))
        await stop.wait()
        await client.close()
        with contextlib.suppress(Exception):
            await runner


if __name__ == "__main__":
    asyncio.run(main())
