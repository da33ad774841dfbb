"""The kit every cog shares: private replies, no mentions, refusals told, a manager-only command group.

Cogs import from here and from bot/, never from one another (as RoboDanny's cogs/utils/ does).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Self, TypedDict

import discord
from discord import app_commands

from bot.errors import BotError
from bot.i18n import _, render

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
# Discord stops accepting this interaction's token (50027) or knows it no more (10062).
DEAD_TOKEN_CODES = (50027, 10062)
Interaction = discord.Interaction[Any]


def for_member(interaction: Interaction, text: str) -> str:
    """A sentence in the member's language (the interaction's locale); plain text as it is."""
    return render(text, interaction.locale)


def for_channel(interaction: Interaction, text: str) -> str:
    """A sentence everyone in the channel reads: the server's preferred language, else English."""
    return render(text, interaction.guild_locale)


def installed_guild_id(interaction: Interaction) -> int | None:
    """The server this use is under: its id when the server added the bot, else None (a DM, a group DM,
    a member's own install used in a server without the bot, where server rules and quotas do not
    apply and the allowance for use outside servers does)."""
    return interaction.guild_id if interaction.is_guild_integration() else None


async def say_privately(interaction: Interaction, text: str) -> None:
    """Answers the member alone, in their language: first reply, or an edit of the deferred one; a dead
    token is ignored."""
    text = for_member(interaction, text)
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
    mentions a member or a role. A Message is said in the member's language."""
    text = for_member(interaction, text)
    extra: dict[str, Any] = {} if file is None else {"file": file}
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)


class Acting(TypedDict):
    guild_id: int
    actor_id: int


def acting(interaction: Interaction) -> Acting:
    """Who changes what in a ManagerGroup command, as the services take it: the server and the manager."""
    assert interaction.guild_id is not None  # ManagerGroup.interaction_check refused anywhere else
    return {"guild_id": interaction.guild_id, "actor_id": interaction.user.id}


class ManagerGroup(app_commands.Group):
    """A command group only members with Manage Server may use, in a server. Discord hides it from others
    by default, but a server can change who sees a command, so the bot checks again itself, once for
    every command of the group (a subgroup must be a ManagerGroup too: discord.py asks only the direct
    parent). A refusal the service raises (BotError: a bad time zone, say) is the admin's private answer,
    not an error to log."""

    def __init__(self, *, name: str, description: str, parent: app_commands.Group | None = None) -> None:
        if parent is not None:  # a subgroup inherits where it is offered and to whom
            super().__init__(name=name, description=description, parent=parent)
            return
        super().__init__(
            name=name,
            description=description,
            guild_only=True,
            allowed_contexts=app_commands.AppCommandContext(guild=True),
            default_permissions=discord.Permissions(manage_guild=True),
        )

    def root_name(self) -> str:
        group: app_commands.Group = self
        while group.parent is not None:
            group = group.parent
        return group.name

    async def interaction_check(self, interaction: Interaction, /) -> bool:
        if interaction.guild_id is not None and interaction.permissions.manage_guild:
            return True
        await reply(
            interaction,
            _("You need the **Manage Server** permission to use /{command}.", command=self.root_name()),
        )
        return False

    async def on_error(self, interaction: Interaction, error: app_commands.AppCommandError, /) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(cause, BotError):
            await reply(interaction, cause.user_message)
        # A CheckFailure was told in interaction_check; anything else is a bug worth its traceback.
        elif not isinstance(error, app_commands.CheckFailure):
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("/%s failed", command, exc_info=error)


class IdButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"kling:[a-z]+:(?P<number>\d+)"
):
    """A persistent button whose custom_id is `kling:<kind>:<number>` (a job's or a showcase's id), so a
    press works after any restart: `class CancelButton(IdButton, kind="cancel")`. The id is built and
    parsed here and nowhere else; a subclass gives its look (label, emoji, style) and its callback."""

    kind = ""
    label: str | None = None
    emoji: str | None = None
    style = discord.ButtonStyle.secondary

    def __init_subclass__(cls, *, kind: str = "") -> None:
        cls.kind = kind or cls.kind
        super().__init_subclass__(template=rf"kling:{re.escape(cls.kind) or '[a-z]+'}:(?P<number>\d+)")

    def __init__(self, number: int, *, label: str | None = None) -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=label or self.label,
            emoji=self.emoji,
            style=self.style,
            custom_id=f"kling:{self.kind}:{number}",
        )
        super().__init__(button)
        self.number = number

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(int(match["number"]))
