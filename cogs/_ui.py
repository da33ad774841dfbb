"""The kit every cog shares: private replies, no mentions, refusals told, a manager-only command group.

Cogs import from here and from bot/, never from one another (as RoboDanny's cogs/utils/ does).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import discord
from discord import app_commands

from bot.errors import BotError

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
# Discord stops accepting this interaction's token (50027) or knows it no more (10062).
DEAD_TOKEN_CODES = (50027, 10062)
Interaction = discord.Interaction[Any]


async def say_privately(interaction: Interaction, text: str) -> None:
    """Answers the member alone: first reply, or an edit of the deferred one; a dead token is ignored."""
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as error:
        if error.code not in DEAD_TOKEN_CODES:
            raise
        log.info("interaction %s: token no longer valid (%s); not retrying", interaction.id, error.code)


async def reply(interaction: Interaction, text: str, *, file: discord.File | None = None) -> None:
    """Answers privately with a new message (a follow-up once answered); pings nobody even when the text
    mentions a member or a role."""
    extra: dict[str, Any] = {} if file is None else {"file": file}
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)


@contextlib.asynccontextmanager
async def refusals_told(interaction: Interaction) -> AsyncIterator[None]:
    """A refusal from the service (a bad time zone, say) is the member's answer, not an error to log."""
    try:
        yield
    except BotError as refusal:
        await reply(interaction, refusal.user_message)


class ManagerGroup(app_commands.Group):
    """A command group only members with Manage Server may use. Discord hides it from others by default,
    but a server can change who sees a command, so the bot checks again itself, once for every command
    of the group (a subgroup must be a ManagerGroup too: discord.py asks only the direct parent)."""

    def root_name(self) -> str:
        group: app_commands.Group = self
        while group.parent is not None:
            group = group.parent
        return group.name

    async def interaction_check(self, interaction: Interaction, /) -> bool:
        if interaction.guild_id is not None and interaction.permissions.manage_guild:
            return True
        await reply(interaction, f"You need the **Manage Server** permission to use /{self.root_name()}.")
        return False

    async def on_error(self, interaction: Interaction, error: app_commands.AppCommandError, /) -> None:
        # The refusal was told in interaction_check; anything else is a bug worth its traceback.
        if not isinstance(error, app_commands.CheckFailure):
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("/%s failed", command, exc_info=error)
