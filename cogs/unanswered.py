"""A last answer for a button or form that no handler answers.

Every button and form the bot shows today says what to do in its `kling:` custom_id (the picture fixes'
`kling:fix:…`, the Animate menu's form `kling:animateform:<message id>`) and is answered by its
DynamicItem or its cog, after any restart. Left without a handler are those shown by an older version of
the bot, before they carried their job or message: a fix offer's `fix:…` buttons and an Animate form with
a random custom_id. Discord would show "This interaction failed"; this cog waits a moment after such a
press and, when nobody answered it, says privately that it no longer works (`OUTDATED`). Presses with a
`kling:` id are left alone (answering for them would race their own, slower handler under load),
unless no handler can take them: a custom_id no button's or form's template matches whole (a forged or
mangled one), or a message that does not carry the button pressed (discord.py then drops the press).
Those are told at once (`NO_BUTTON`), privately, and nothing is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.i18n import Message, _
from cogs._ui import FORM_IDS, NO_MENTIONS, for_member

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

# Handlers answer within milliseconds; Discord gives up after 3 s.
ANSWER_AFTER_SECONDS = 2.2
OUTDATED = _(
    "This button or form comes from an older version of the bot and no longer works. "
    "Nothing was charged; please start again with /animate."
)


NO_BUTTON = _(
    "This button does not lead anywhere: what it names is gone, or it does not belong here. "
    "Nothing was changed or charged."
)


def lives_in_process(interaction: discord.Interaction[Any]) -> bool:
    """Whether the press is on something of an older version that no handler knows: a picture-fix button
    (`fix:…`), or a form whose custom_id is not one of the bot's `kling:` ones (the Animate menu's)."""
    custom_id = str(dict(interaction.data or {}).get("custom_id", ""))
    if interaction.type is discord.InteractionType.component:
        return custom_id.startswith("fix:")
    return interaction.type is discord.InteractionType.modal_submit and not custom_id.startswith("kling:")


def reaches_no_form(interaction: discord.Interaction[Any]) -> bool:
    """Whether a `kling:` form submission matches no template a loaded cog handles (cogs/_ui.FORM_IDS): a
    forged or mangled custom_id, which no handler would answer."""
    custom_id = str(dict(interaction.data or {}).get("custom_id", ""))
    if interaction.type is not discord.InteractionType.modal_submit or not custom_id.startswith("kling:"):
        return False
    return not any(template.fullmatch(custom_id) for template in FORM_IDS)


def reaches_no_button(client: discord.Client, interaction: discord.Interaction[Any]) -> bool:
    """Whether a press on a `kling:` button reaches none of the bot's DynamicItems: no registered template
    matches its custom_id whole, or the message lacks a component of that type and id. discord.py drops
    such a press without a word (ui/view.py, ViewStore.schedule_dynamic_item_call; reads the store's
    `_dynamic_items`, discord.py 2.7, pinned)."""
    data = dict(interaction.data or {})
    custom_id = str(data.get("custom_id", ""))
    if interaction.type is not discord.InteractionType.component or not custom_id.startswith("kling:"):
        return False
    templates = client._connection._view_store._dynamic_items
    if not any(template.fullmatch(custom_id) for template in templates):
        return True
    message = interaction.message
    if message is None:
        return True
    view_class = discord.ui.LayoutView if message.flags.components_v2 else discord.ui.View
    view = view_class.from_message(message, timeout=None)
    kind = data.get("component_type")
    return not any(
        item.type.value == kind and getattr(item, "custom_id", None) == custom_id
        for item in view.walk_children()
    )


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
        if reaches_no_button(self.bot, interaction) or reaches_no_form(interaction):
            log.info(
                "interaction %s: no button or form takes %r",
                interaction.id,
                dict(interaction.data or {}).get("custom_id"),
            )
            work = self._answer(interaction, NO_BUTTON)
        elif lives_in_process(interaction):
            work = self._answer_if_nobody_did(interaction)
        else:
            return
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_if_nobody_did(self, interaction: discord.Interaction[Any]) -> None:
        await asyncio.sleep(ANSWER_AFTER_SECONDS)
        if interaction.response.is_done():
            return
        custom_id = dict(interaction.data or {}).get("custom_id")
        log.info("interaction %s: no handler answered %r", interaction.id, custom_id)
        await self._answer(interaction, OUTDATED)

    @staticmethod
    async def _answer(interaction: discord.Interaction[Any], text: Message) -> None:
        # A handler answering at this very moment wins: then Discord refuses this one, which is fine.
        with contextlib.suppress(discord.HTTPException):
            await interaction.response.send_message(
                for_member(interaction, text), ephemeral=True, allowed_mentions=NO_MENTIONS
            )


async def setup(bot: KlingBot) -> None:
    await bot.add_cog(UnansweredCog(bot))
