"""/animate and its Cancel button: Discord in, bot/ calls out, nothing more."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import BotError, InputRefused
from bot.invite import REQUIRED_PERMISSIONS
from bot.jobs import Command, job_options
from bot.media import PictureShapeRefused, check_metadata
from bot.request import AttachmentRef, build_request
from bot.voices import choice_label
from cogs.jobs._delivery import NO_MENTIONS
from cogs.jobs._fixing import offer_picture_fix

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

# Discord stops accepting this interaction's token (50027) or knows it no more (10062).
DEAD_TOKEN_CODES = (50027, 10062)


def missing_permissions(granted: discord.Permissions) -> list[str]:
    missing = [name for name, wanted in REQUIRED_PERMISSIONS if wanted and not getattr(granted, name)]
    return [name.replace("_", " ").title() for name in missing]


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


async def say_privately(interaction: discord.Interaction[Any], text: str) -> None:
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


class AnimateCog(commands.Cog):
    def __init__(self, bot: KlingBot) -> None:
        self.bot = bot
        if bot.settings.quota.dm_credits > 0:
            # The operator granted a DM allowance: offer /animate in DMs with the bot too.
            self.animate.guild_only = False
            self.animate.allowed_contexts = app_commands.AppCommandContext(guild=True, dm_channel=True)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton)

    async def cog_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        # A bug must still end in a sentence for the member, never in "The application did not respond".
        log.error("/%s failed", interaction.command.name if interaction.command else "?", exc_info=error)
        await say_privately(
            interaction, "Something went wrong inside the bot; nothing was charged. Please try again."
        )

    @app_commands.command(name="animate", description="Turn a picture into a short video with Kling 2.6 Pro")
    @app_commands.guild_only()
    @app_commands.describe(
        image="The first frame: JPEG, PNG, WebP… at least 300×300 px, up to 10 MB",
        prompt="What should happen in the video (up to 2500 characters)",
        end_image="Optional last frame",
        negative_prompt="What to avoid (default: blur, distort, and low quality)",
        duration="Length of the video",
        audio="Generate sound with the video (default: on)",
        voice_1="A voice from /voices, or a voice id; write <<<voice_1>>> in the prompt where it speaks",
        voice_2="A voice from /voices, or a voice id; write <<<voice_2>>> in the prompt where it speaks",
        loop="End the video on its start image, so it loops (not with end_image)",
    )
    @app_commands.choices(
        duration=[
            app_commands.Choice(name="5 seconds", value=5),
            app_commands.Choice(name="10 seconds", value=10),
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
        try:
            missing = missing_permissions(interaction.app_permissions)
            if missing:
                raise InputRefused(
                    "I can't work in this channel: I'm missing " + ", ".join(missing) + ". Please ask a "
                    "server admin to grant them, or use another channel."
                )
            blocked = self.bot.sunra.submissions_blocked
            if blocked is not None:
                raise blocked
            await self.bot.prompt_filter.check(interaction.guild_id, prompt)
            request = build_request(
                prompt=prompt,
                image=check_attachment(image, "image", self.bot.images.max_download_bytes),
                end_image=check_attachment(end_image, "end image", self.bot.images.max_download_bytes)
                if end_image
                else None,
                negative_prompt=negative_prompt,
                duration=duration,
                audio=audio
                if audio is not None
                else await self.bot.quota.audio_by_default(interaction.guild_id),
                voice_1=await self.bot.voices.resolve(interaction.guild_id, voice_1),
                voice_2=await self.bot.voices.resolve(interaction.guild_id, voice_2),
                loop=loop,
            )
            command = Command(
                interaction_id=interaction.id,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id or 0,
                user_id=interaction.user.id,
                role_ids=member_role_ids(interaction),
                upload_limit=interaction.filesize_limit,
                request=request,
            )
            await self.bot.quota.quote(
                guild_id=command.guild_id,
                user_id=command.user_id,
                role_ids=command.role_ids,
                options=job_options(request),
            )
        except BotError as refusal:
            await say_privately(interaction, refusal.user_message)
            return
        job_id, is_new = await self.bot.runner.record(command)
        if not is_new:
            return  # the same interaction delivered twice: the first one is being handled
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as error:
            # Too late (10062) or refused: the member saw "did not respond", so the job must not run.
            log.warning(
                "interaction %s: acknowledgement failed (%s); job dropped", interaction.id, error.code
            )
            await self.bot.runner.drop_unacknowledged(job_id)
            return
        self.bot.metrics.acknowledged(interaction.id)
        try:
            accepted = await self.bot.runner.accept(job_id, command)
        except PictureShapeRefused as refusal:
            await offer_picture_fix(interaction, command, refusal)
            return
        except BotError as refusal:
            await say_privately(interaction, refusal.user_message)
            return
        place = f"Your video is on its way (place {accepted.place} in line); follow it in this channel."
        await say_privately(interaction, f"{place} {accepted.reservation.describe()}")

    @animate.autocomplete("voice_1")
    @animate.autocomplete("voice_2")
    async def voice_choices(
        self, interaction: discord.Interaction[KlingBot], current: str
    ) -> list[app_commands.Choice[str]]:
        # A raw id typed without picking a choice is sent as it is, so an empty library still works.
        found = await self.bot.voices.suggest(interaction.guild_id, current)
        return [app_commands.Choice(name=choice_label(v), value=v.voice_id) for v in found]


def member_role_ids(interaction: discord.Interaction[Any]) -> tuple[int, ...]:
    user = interaction.user
    if isinstance(user, discord.Member):
        return tuple(role.id for role in user.roles)
    return ()


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"kling:cancel:(?P<job_id>\d+)"
):
    """The Cancel button on a progress message; works after restarts because it reads the job id from
    its custom_id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel", style=discord.ButtonStyle.secondary, custom_id=f"kling:cancel:{job_id}"
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> CancelButton:
        return cls(int(match["job_id"]))

    async def interaction_check(self, interaction: discord.Interaction[KlingBot]) -> bool:  # type: ignore[override]
        # Deferred before anything else: the answer then has 15 minutes, not 3 seconds.
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as error:
            log.info("interaction %s: cannot acknowledge the press (%s)", interaction.id, error.code)
            return False
        job = await interaction.client.job_store.get(self.job_id)
        if job is None:
            await say_privately(interaction, "I no longer know this job.")
            return False
        may_manage = bool(interaction.permissions.manage_messages)
        if interaction.user.id != job.user_id and not may_manage:
            await say_privately(
                interaction, "Only the member who asked for this video, or a moderator, can cancel it."
            )
            return False
        return True

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        job = await interaction.client.job_store.get(self.job_id)
        by_owner = job is not None and job.user_id == interaction.user.id
        reason = (
            "You cancelled it; nothing was charged."
            if by_owner
            else f"It was cancelled by <@{interaction.user.id}>; nothing was charged."
        )
        stopped = await interaction.client.runner.cancel(self.job_id, reason)
        await say_privately(
            interaction,
            "Cancelling the job…" if stopped else "This job has already finished or is being delivered.",
        )


async def setup(bot: KlingBot) -> None:
    await bot.add_cog(AnimateCog(bot))
