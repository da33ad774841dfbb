"""A last answer for a button or form that no handler answers.

Every button and form the bot shows today says what to do in its `kling:` custom_id (the picture fixes'
`kling:fix:…`, the Animate menu's form `kling:animateform:<message id>`) and is answered by its
DynamicItem or its cog, after any restart. Left without a handler are those shown by an older version of
the bot, before they carried their job or message: a fix offer's `fix:…` buttons and an Animate form with
a random custom_id. Discord would show "This interaction failed"; this cog waits a moment after such a
press and, when nobody answered it, says privately that it no longer works (`OUTDATED`). Presses with a
`kling:` id are left alone: answering for them would race their own, slower handler under load.
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
OUTDATED = _(
    "This button or form comes from an older version of the bot and no longer works. "
    "Nothing was charged; please start again with /animate."
)


def lives_in_process(interaction: discord.Interaction[Any]) -> bool:
    """Whether the press is on something of an older version that no handler knows: a picture-fix button
    (`fix:…`), or a form whose custom_id is not one of the bot's `kling:` ones (the Animate menu's)."""
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
                for_member(interaction, OUTDATED), ephemeral=True, allowed_mentions=NO_MENTIONS
            )


async def setup(bot: KlingBot) -> None:
    await bot.add_cog(UnansweredCog(bot))
