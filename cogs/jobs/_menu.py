"""The "Animate" message menu: any message's picture (attached, embedded or forwarded) becomes a video.

Right-click a message → Apps → Animate opens a form for the prompt and settings. The form's custom_id
names the message (`kling:animateform:<message id>`), so a form opened before a restart is handled after
it: on submission the bot reads the message again from Discord, in the channel the form was sent from,
and its pictures go the way of /animate's (one submit path: /animate's access, block list, quota, fair
queue). Discord in, bot/ out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from bot import results
from bot.errors import InputRefused
from bot.i18n import _, render
from bot.message_pictures import message_pictures
from bot.request import AnimateRequest, AttachmentRef, build_request
from cogs._ui import answering, handles_forms, installed_guild_id, say_privately
from cogs.jobs._command import check_attachment_ref
from cogs.jobs._results import (
    Form,
    duration_input,
    negative_prompt_input,
    prompt_input,
    submit_follow_up,
    submitted_values,
)
from cogs.jobs._submit import refused_before_form

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

NO_PICTURE = _(
    "This message has no picture I can use (attached or embedded). Use Animate on a message with a JPEG, "
    "PNG or WebP picture, or use /animate and attach one."
)
MESSAGE_GONE = _(
    "I can no longer read the message this form was for (deleted, or I lost access to the channel). "
    "Nothing was charged; please use Animate on it again, or /animate."
)
MENU_FORM = re.compile(r"kling:animateform:(?P<message_id>\d+)")
# The last field's custom_id says what it asks, so the submission can be read without the form.
LAST_FRAME, LOOP = "last_frame", "loop"


# The form asks for yes or no; the member's own language's word is taken too.
YES = frozenset({"yes", "y", "on", "true", "1", "ja", "oui", "sí", "si", "sim", "はい"})
NO = frozenset({"no", "n", "off", "false", "0", "nein", "non", "não", "nao", "いいえ"})


def parse_yes_no(text: str, what: str) -> bool:
    answer = text.strip().lower()
    if answer in YES:
        return True
    if answer in NO:
        return False
    raise InputRefused(_("Please answer “{question}” with yes or no.", question=what))


class AnimateMessageModal(Form):
    """The form of the Animate menu: shown, then handled by its custom_id (`AnimateMessageCog`). Its
    title and labels are in the member's language (`locale`); the answers stay yes/no and numbers."""

    def __init__(self, message_id: int, *, two_pictures: bool, audio: bool, locale: str = "en-US") -> None:
        super().__init__(
            title=render(_("Animate this picture"), locale), custom_id=f"kling:animateform:{message_id}"
        )
        self.add_item(prompt_input("", locale))
        self.add_item(negative_prompt_input(None, locale))
        self.add_item(duration_input("5", locale))
        self.add_item(
            discord.ui.TextInput(
                label=render(SOUND_LABEL, locale),
                custom_id="audio",
                default="yes" if audio else "no",
                max_length=5,
            )
        )
        self.add_item(
            discord.ui.TextInput(
                label=render(ENDING_LABELS[LAST_FRAME if two_pictures else LOOP], locale),
                custom_id=LAST_FRAME if two_pictures else LOOP,
                default="yes" if two_pictures else "no",
                max_length=5,
            )
        )


ENDING_LABELS = {LAST_FRAME: _("Second picture as the last frame (yes or no)"), LOOP: _("Loop (yes or no)")}
SOUND_LABEL = _("Sound (yes or no)")


def menu_request(values: Mapping[str, str], pictures: list[AttachmentRef], max_bytes: int) -> AnimateRequest:
    """The request a submitted form asks for, with the message's pictures as they are now."""
    start = pictures[0]
    ending_key = LAST_FRAME if LAST_FRAME in values else LOOP
    ending = parse_yes_no(values.get(ending_key, "no"), ENDING_LABELS[ending_key])
    end = pictures[1] if ending_key == LAST_FRAME and ending and len(pictures) > 1 else None
    for ref, label in ((start, "image"), (end, "end image")):
        if ref is not None and ref.size:  # an embedded picture's size is known only once downloaded
            check_attachment_ref(ref, label, max_bytes)
    return build_request(
        prompt=values.get("prompt", ""),
        image=start,
        end_image=end,
        negative_prompt=values.get("negative_prompt") or None,
        duration=results.parse_duration(values.get("duration", "5")),
        audio=parse_yes_no(values.get("audio", "yes"), SOUND_LABEL),
        loop=ending_key == LOOP and ending,
    )


async def submit_menu_form(interaction: discord.Interaction[KlingBot], message_id: int) -> None:
    bot = interaction.client
    values = submitted_values(interaction.data or {})

    async def build() -> results.FollowUp:
        try:
            # In the channel the form was sent from: a form can only name a message it can see.
            message = await bot.http.get_message(interaction.channel_id or 0, message_id)
        except discord.HTTPException as error:
            log.info("menu form: message %s unreadable (%s)", message_id, error.code)
            raise InputRefused(MESSAGE_GONE) from error
        pictures = message_pictures(dict(message))
        if not pictures:
            raise InputRefused(NO_PICTURE)
        return results.FollowUp(menu_request(values, pictures, bot.images.max_download_bytes), start=None)

    await submit_follow_up(interaction, build, anywhere=True)


async def animate_message(interaction: discord.Interaction[KlingBot], message: discord.Message) -> None:
    """The "Animate" message menu: a form for the message's picture, or a private reason why not."""
    data: dict[str, Any] = dict(interaction.data or {})
    resolved = data.get("resolved", {}).get("messages", {}).get(str(message.id), {})
    pictures = message_pictures(resolved)
    if not pictures:
        await say_privately(interaction, NO_PICTURE)
        return
    if await refused_before_form(interaction):
        return
    audio = await interaction.client.quota.audio_by_default(installed_guild_id(interaction))
    modal = AnimateMessageModal(
        message.id, two_pictures=len(pictures) > 1, audio=audio, locale=str(interaction.locale)
    )
    await modal.show(interaction)


class AnimateMessageCog(commands.Cog):
    def __init__(self, bot: KlingBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(
            name=locale_str("Animate"),
            callback=animate_message,
            # Like /animate: a server's install or a member's own, in a server, a DM or a group DM.
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=True, private_channel=True
            ),
        )

    async def cog_load(self) -> None:
        handles_forms(MENU_FORM)
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[KlingBot]) -> None:
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        match = MENU_FORM.fullmatch(str(dict(interaction.data or {}).get("custom_id", "")))
        if match is not None:
            work = submit_menu_form(interaction, int(match["message_id"]))
            await answering(interaction, work, f"Animate form of message {match['message_id']}")
