"""/voices: a server's named voices for /animate (Manage Server). The rules live in bot/voices.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from bot.i18n import _, join
from bot.voices import MAX_NAME, MAX_VOICE_ID, choice_label
from cogs._text import escape_member_text
from cogs._ui import ManagerGroup, reply

if TYPE_CHECKING:
    from bot.app import KlingBot

Interaction = discord.Interaction[Any]
HOW_TO_USE = _(
    "In /animate, pick a voice in `voice_1` (or `voice_2`) and write `<<<voice_1>>>` (or `<<<voice_2>>>`) "
    "in the prompt where it should speak. Voices need audio."
)


class VoicesCog(commands.Cog):
    voices = ManagerGroup(
        name="voices", description=locale_str("Name voice ids for /animate's voice_1 and voice_2")
    )

    def __init__(self, bot: KlingBot) -> None:
        self.bot = bot

    @voices.command(
        name="add", description=locale_str("Name a voice id (a name already taken gets the new id)")
    )
    @app_commands.describe(
        name=locale_str("What members pick in /animate"), voice_id=locale_str("The Kling voice id")
    )
    @app_commands.rename(voice_id="id")
    async def add(
        self,
        interaction: Interaction,
        name: app_commands.Range[str, 1, MAX_NAME],
        voice_id: app_commands.Range[str, 1, MAX_VOICE_ID],
    ) -> None:
        assert interaction.guild_id is not None
        before = await self.bot.voices.add(
            interaction.guild_id, name=name, voice_id=voice_id, actor_id=interaction.user.id
        )
        stored = await self.bot.voices.resolve(interaction.guild_id, name)
        shown = " ".join(name.split())
        text = (
            _("Voice **{name}** is now `{id}` (it was `{before}`).", name=shown, id=stored, before=before)
            if before and before != stored
            else _("Voice **{name}** is now `{id}`.", name=shown, id=stored)
        )
        await reply(interaction, join([text, HOW_TO_USE]))

    @voices.command(name="remove", description=locale_str("Forget a named voice"))
    @app_commands.describe(name=locale_str("The voice's name"))
    async def remove(self, interaction: Interaction, name: app_commands.Range[str, 1, MAX_NAME]) -> None:
        assert interaction.guild_id is not None
        removed = await self.bot.voices.remove(interaction.guild_id, name=name, actor_id=interaction.user.id)
        if removed is None:
            await reply(
                interaction, _("This server has no voice named **{name}**.", name=escape_member_text(name))
            )
        else:
            await reply(
                interaction,
                _("Removed the voice **{name}** (`{id}`).", name=removed.name, id=removed.voice_id),
            )

    @remove.autocomplete("name")
    async def remove_choices(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        found = await self.bot.voices.suggest(interaction.guild_id, current)
        return [app_commands.Choice(name=choice_label(v), value=v.name) for v in found]

    @voices.command(name="list", description=locale_str("The server's named voices"))
    async def list_voices(self, interaction: Interaction) -> None:
        known = await self.bot.voices.voices(interaction.guild_id)
        if not known:
            await reply(interaction, _("This server has no named voices yet. Add one with `/voices add`."))
            return
        heading, room = _("**Voices ({n}):**", n=len(known)), 2000 - len(HOW_TO_USE) - 40
        lines: list[str] = []
        for voice in known:
            line = f"• **{voice.name}**: `{voice.voice_id}`"
            if len(heading) + sum(len(x) + 1 for x in lines) + len(line) + 1 > room:
                lines.append(_("… and {n} more", n=len(known) - len(lines)))
                break
            lines.append(line)
        await reply(interaction, join([heading, *lines, "", HOW_TO_USE]))


async def setup(bot: KlingBot) -> None:
    await bot.add_cog(VoicesCog(bot))
