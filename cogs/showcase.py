"""/showcase-admin: a server's showcase settings (Manage Server). So far its prompt block list; the
rules live in bot/blocklist.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.blocklist import MAX_PATTERN
from cogs.quota import refusals_told, refused_unless_manager, reply

if TYPE_CHECKING:
    from bot.app import KlingBot

Interaction = discord.Interaction[Any]


class ShowcaseAdminCog(commands.Cog):
    admin = app_commands.Group(
        name="showcase-admin",
        description="Showcase and moderation settings of this server",
        guild_only=True,
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        default_permissions=discord.Permissions(manage_guild=True),
    )
    blocklist = app_commands.Group(
        name="blocklist", description="Words and phrases that prompts may not contain", parent=admin
    )

    def __init__(self, bot: KlingBot) -> None:
        self.bot = bot

    @blocklist.command(name="add", description="Refuse prompts with this word or phrase (* and ? wildcards)")
    @app_commands.describe(word="A whole word or phrase; * is any run of letters, ? one letter (gor* → gory)")
    async def add(self, interaction: Interaction, word: app_commands.Range[str, 1, MAX_PATTERN]) -> None:
        if await refused_unless_manager(interaction, "/showcase-admin"):
            return
        assert interaction.guild_id is not None
        async with refusals_told(interaction):
            pattern, added = await self.bot.prompt_filter.add(
                interaction.guild_id, word, actor_id=interaction.user.id
            )
            text = "is now refused in prompts" if added else "was already on the block list"
            await reply(interaction, f"`{pattern}` {text}.")

    @blocklist.command(name="remove", description="Allow a blocked word or phrase again")
    @app_commands.describe(word="The entry as the block list shows it")
    async def remove(self, interaction: Interaction, word: app_commands.Range[str, 1, MAX_PATTERN]) -> None:
        if await refused_unless_manager(interaction, "/showcase-admin"):
            return
        assert interaction.guild_id is not None
        removed = await self.bot.prompt_filter.remove(
            interaction.guild_id, word, actor_id=interaction.user.id
        )
        text = "is allowed in prompts again" if removed else "was not on the block list"
        await reply(interaction, f"`{' '.join(word.split())}` {text}.")

    @remove.autocomplete("word")
    async def remove_choices(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        needle = current.casefold()
        found = [
            p for p in await self.bot.prompt_filter.patterns(interaction.guild_id) if needle in p.casefold()
        ]
        return [app_commands.Choice(name=p, value=p) for p in found[:25]]

    @blocklist.command(name="list", description="The words and phrases prompts may not contain")
    async def list_patterns(self, interaction: Interaction) -> None:
        if await refused_unless_manager(interaction, "/showcase-admin"):
            return
        assert interaction.guild_id is not None
        patterns = await self.bot.prompt_filter.patterns(interaction.guild_id)
        if not patterns:
            await reply(interaction, "The block list is empty: every prompt is allowed.")
            return
        shown = ", ".join(f"`{p}`" for p in patterns)
        if len(shown) > 1900:
            shown = shown[:1900].rsplit(",", 1)[0] + ", …"
        await reply(interaction, f"**Blocked in prompts ({len(patterns)}):** {shown}")


async def setup(bot: KlingBot) -> None:
    await bot.add_cog(ShowcaseAdminCog(bot))
