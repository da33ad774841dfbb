"""The "Animate" message menu: any message's picture (attached or embedded) becomes a video.

Right-click a message → Apps → Animate opens a form for the prompt and settings; the job then goes the way
of /animate's (picture checks after the deferral, block list, quota, fair queue). Discord in, bot/ out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from bot import results
from bot.errors import InputRefused
from bot.i18n import _, render
from bot.request import MAX_PROMPT, AnimateRequest, AttachmentRef, build_request
from cogs._ui import installed_guild_id, say_privately
from cogs.jobs._command import attachment_ref, check_attachment_ref
from cogs.jobs._results import answering_errors, prompt_input, submit_follow_up

if TYPE_CHECKING:
    from bot.app import KlingBot


NO_PICTURE = _(
    "This message has no picture I can use (attached or embedded). Use Animate on a message with a JPEG, "
    "PNG or WebP picture, or use /animate and attach one."
)


def message_images(message: discord.Message) -> list[AttachmentRef]:
    """The message's pictures in order: attachments, then embedded images (a link's preview, a bot's
    embed). Embedded ones are fetched through Discord's media proxy only, never from the URL the author
    chose; their byte size is unknown (0) until downloaded."""
    found = [
        attachment_ref(a)
        for a in message.attachments
        # Discord gives videos a width and height too: a size counts only when the type is unknown.
        if (a.content_type or "").startswith("image/") or (not a.content_type and a.width and a.height)
    ]
    for embed in message.embeds:
        for media in (embed.image, embed.thumbnail):
            proxy = media.proxy_url
            if proxy and not any(ref.url == proxy for ref in found):
                name = (media.url or proxy).split("?", 1)[0].rsplit("/", 1)[-1] or "embedded"
                found.append(
                    AttachmentRef(url=proxy, filename=name, size=0, width=media.width, height=media.height)
                )
                break  # one picture per embed: a preview's thumbnail is the same picture as its image
    return found


def parse_yes_no(text: str, what: str) -> bool:
    answer = text.strip().lower()
    if answer in ("yes", "y", "on", "true", "1"):
        return True
    if answer in ("no", "n", "off", "false", "0"):
        return False
    raise InputRefused(_("Please answer “{question}” with yes or no.", question=what))


class AnimateMessageModal(discord.ui.Modal, title="Animate this picture"):
    """The form of the Animate menu; it holds the message's pictures, so it is handled in-process. Its
    title and labels are in the member's language (`locale`); the answers stay yes/no and numbers."""

    def __init__(
        self, pictures: list[AttachmentRef], *, audio: bool, max_bytes: int, locale: str = "en-US"
    ) -> None:
        super().__init__(title=render(_("Animate this picture"), locale), timeout=15 * 60)  # a token's life
        self.pictures, self.max_bytes = pictures, max_bytes
        self.prompt = prompt_input("", locale)
        self.negative_prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=render(_("Negative prompt"), locale),
            style=discord.TextStyle.paragraph,
            required=False,
            max_length=MAX_PROMPT,
        )
        self.duration: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=render(_("Duration (5 or 10 seconds)"), locale), default="5", max_length=10
        )
        self.sound_label = _("Sound (yes or no)")
        self.audio: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=render(self.sound_label, locale), default="yes" if audio else "no", max_length=5
        )
        two = len(pictures) > 1
        self.ending_label = (
            _("Second picture as the last frame (yes or no)") if two else _("Loop (yes or no)")
        )
        self.ending: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=render(self.ending_label, locale),
            default="yes" if two else "no",
            max_length=5,
        )
        for item in (self.prompt, self.negative_prompt, self.duration, self.audio, self.ending):
            self.add_item(item)

    def request(self) -> AnimateRequest:
        start = self.pictures[0]
        ending = parse_yes_no(self.ending.value, self.ending_label)
        end = self.pictures[1] if len(self.pictures) > 1 and ending else None
        for ref, label in ((start, "image"), (end, "end image")):
            if ref is not None and ref.size:  # an embedded picture's size is known only once downloaded
                check_attachment_ref(ref, label, self.max_bytes)
        return build_request(
            prompt=self.prompt.value,
            image=start,
            end_image=end,
            negative_prompt=self.negative_prompt.value,
            duration=results.parse_duration(self.duration.value),
            audio=parse_yes_no(self.audio.value, self.sound_label),
            loop=ending and len(self.pictures) == 1,
        )

    async def on_submit(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        async def build() -> results.FollowUp:
            return results.FollowUp(self.request(), start=None)

        await answering_errors(
            interaction, submit_follow_up(interaction, build, from_button=False), "Animate"
        )


async def animate_message(interaction: discord.Interaction[KlingBot], message: discord.Message) -> None:
    """The "Animate" message menu: a form for the message's picture, or a private reason why not."""
    pictures = message_images(message)[:2]
    if not pictures:
        await say_privately(interaction, NO_PICTURE)
        return
    audio = await interaction.client.quota.audio_by_default(installed_guild_id(interaction))
    max_bytes = interaction.client.images.max_download_bytes
    modal = AnimateMessageModal(pictures, audio=audio, max_bytes=max_bytes, locale=str(interaction.locale))
    await interaction.response.send_modal(modal)


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
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
