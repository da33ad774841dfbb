"""/animate and its Cancel button: Discord in, bot/ calls out, nothing more. Its names and descriptions
are `locale_str`s the tree's translator (cogs/_translator.py) localizes from the catalogues."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from bot.jobs import Command
from bot.media import PictureShapeRefused, check_metadata
from bot.request import AttachmentRef, build_request
from bot.voices import choice_label
from cogs._ui import installed_guild_id
from cogs.jobs._cancel import CancelButton
from cogs.jobs._fixing import FixButton
from cogs.jobs._submit import Submission, member_role_ids, submit_job

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)


def attachment_ref(attachment: discord.Attachment) -> AttachmentRef:
    return AttachmentRef(
        url=attachment.url,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        width=attachment.width,
        height=attachment.height,
    )


def check_attachment(attachment: discord.Attachment, label: str, max_bytes: int) -> AttachmentRef:
    return check_attachment_ref(attachment_ref(attachment), label, max_bytes)


def check_attachment_ref(ref: AttachmentRef, label: str, max_bytes: int) -> AttachmentRef:
    # A wrong shape or size is refused after the deferral, from the bytes, with an offer to fix it.
    with contextlib.suppress(PictureShapeRefused):
        check_metadata(ref.info(), label=label, max_bytes=max_bytes)
    return ref


class AnimateCog(commands.Cog):
    def __init__(self, bot: KlingBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton, FixButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton, FixButton)

    @app_commands.command(
        name=locale_str("animate"),
        description=locale_str("Turn a picture into a short video with Kling 2.6 Pro"),
    )
    # Installed by a server or by a member for themselves; used in a server, a DM with the bot or a group
    # DM. Where the bot cannot post, the video comes through the interaction (see check_channel).
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.rename(
        image=locale_str("image"),
        prompt=locale_str("prompt"),
        end_image=locale_str("end_image"),
        negative_prompt=locale_str("negative_prompt"),
        duration=locale_str("duration"),
        audio=locale_str("audio"),
        loop=locale_str("loop"),
    )
    @app_commands.describe(
        image=locale_str("The first frame: JPEG, PNG, WebP… at least 300×300 px, up to 10 MB"),
        prompt=locale_str("What should happen in the video (up to 2500 characters)"),
        end_image=locale_str("Optional last frame"),
        negative_prompt=locale_str("What to avoid (default: blur, distort, and low quality)"),
        duration=locale_str("Length of the video"),
        audio=locale_str("Generate sound with the video (default: on)"),
        voice_1=locale_str(
            "A voice from /voices, or a voice id; write <<<voice_1>>> in the prompt where it speaks"
        ),
        voice_2=locale_str(
            "A voice from /voices, or a voice id; write <<<voice_2>>> in the prompt where it speaks"
        ),
        loop=locale_str("End the video on its start image, so it loops (not with end_image)"),
    )
    @app_commands.choices(
        duration=[
            app_commands.Choice(name=locale_str("5 seconds"), value=5),
            app_commands.Choice(name=locale_str("10 seconds"), value=10),
        ]
    )
    async def animate(
        self,
        interaction: discord.Interaction[KlingBot],
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 2500],
        end_image: discord.Attachment | None = None,
        negative_prompt: app_commands.Range[str, 1, 2500] | None = None,
        duration: int = 5,
        audio: bool | None = None,
        voice_1: app_commands.Range[str, 1, 100] | None = None,
        voice_2: app_commands.Range[str, 1, 100] | None = None,
        loop: bool = False,
    ) -> None:
        # Everything before the deferral is instant (no I/O but one small SQLite read and write), so
        # the 3-second deadline holds even when many members press Enter at once.
        # A member's own install in a server without the bot, a DM: no server's rules apply there.
        guild_id = installed_guild_id(interaction)

        async def prepare() -> Submission:
            max_bytes = self.bot.images.max_download_bytes
            request = build_request(
                prompt=prompt,
                image=check_attachment(image, "image", max_bytes),
                end_image=check_attachment(end_image, "end image", max_bytes) if end_image else None,
                negative_prompt=negative_prompt,
                duration=duration,
                audio=audio if audio is not None else await self.bot.quota.audio_by_default(guild_id),
                voice_1=await self.bot.voices.resolve(guild_id, voice_1),
                voice_2=await self.bot.voices.resolve(guild_id, voice_2),
                loop=loop,
            )
            return Submission(
                Command(
                    interaction_id=interaction.id,
                    guild_id=guild_id,
                    channel_id=interaction.channel_id or 0,
                    user_id=interaction.user.id,
                    role_ids=member_role_ids(interaction) if guild_id else (),
                    upload_limit=interaction.filesize_limit,
                    request=request,
                )
            )

        # Discord applied /animate's Integrations settings itself; submit_job checks the rest.
        await submit_job(interaction, prepare, defer=True, access_checked_by_discord=True)

    @animate.autocomplete("voice_1")
    @animate.autocomplete("voice_2")
    async def voice_choices(
        self, interaction: discord.Interaction[KlingBot], current: str
    ) -> list[app_commands.Choice[str]]:
        # A raw id typed without picking a choice is sent as it is, so an empty library still works.
        found = await self.bot.voices.suggest(installed_guild_id(interaction), current)
        return [app_commands.Choice(name=choice_label(v), value=v.voice_id) for v in found]
