"""A last answer for a button or form press nothing else answered.

Most buttons and forms survive restarts (their custom_id says what to do), but a few live only in the
process that showed them: the offer to fix a picture and the Animate menu's form. Pressed after a restart,
or after discord.py forgot them, nothing answers and Discord shows "This interaction failed". This cog
waits a moment after such a press and, when no handler has answered, says so privately.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.i18n import _
from cogs._ui import NO_MENTIONS, for_member

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

# Handlers answer within milliseconds; Discord gives up after 3 s.
ANSWER_AFTER_SECONDS = 2.2
EXPIRED = _(
    "This button or form no longer works: the bot restarted, or it is more than 15 minutes old. "
    "Nothing was charged; please start again with /animate."
)


def lives_in_process(interaction: discord.Interaction[Any]) -> bool:
    """Whether the press is on something only a running process knows: a picture-fix button, or a form
    whose custom_id is not one of the bot's `kling:` ones (the Animate menu's). Every other button says
    in its custom_id what to do, and answering for it would race its own, slower handler under load."""
    custom_id = str(dict(interaction.data or {}).get("custom_id", ""))
    if interaction.type is discord.InteractionType.component:
        return custom_id.startswith("fix:")
    return interaction.type is discord.InteractionType.modal_submit and not custom_id.startswith("kling:")


class UnansweredCog(commands.Cog):
    def __init__(self, bot: KlingBot) -> None:
        self.bot = bot
        self._tasks: set[asyncio.Task[None]] = set()

    async def cog_unload(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        if not lives_in_process(interaction):
            return
        task = asyncio.create_task(self._answer_if_nobody_did(interaction))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_if_nobody_did(self, interaction: discord.Interaction[Any]) -> None:
        await asyncio.sleep(ANSWER_AFTER_SECONDS)
        if interaction.response.is_done():
            return
        custom_id = dict(interaction.data or {}).get("custom_id")
        log.info("interaction %s: no handler answered %r", interaction.id, custom_id)
        # A handler answering at this very moment wins: then Discord refuses this one, which is fine.
        with contextlib.suppress(discord.HTTPException):
            await interaction.response.send_message(
                for_member(interaction, EXPIRED), ephemeral=True, allowed_mentions=NO_MENTIONS
            )


async def setup(bot: KlingBot) -> None:
    await bot.add_cog(UnansweredCog(bot))
