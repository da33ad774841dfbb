"""The buttons under a finished video (Retry, Remix, Extend, Delete) and their modals: Discord in, bot/ out.

Each button is a DynamicItem whose custom_id carries the job id, so a press works after any number of
restarts. A press that opens a modal answers with the modal itself (one SQLite read before it); every
other press defers first. The new job goes through the runner exactly like /animate's: the presser's
credits, caps and the fair queue.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot import results
from bot.delivery import result_custom_id
from bot.errors import BotError, InputRefused
from bot.jobs import Command, job_options
from bot.request import MAX_PROMPT
from bot.store.jobs import JobRow
from cogs.animate import member_role_ids, missing_permissions, say_privately

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

Build = Callable[[], Awaitable[results.FollowUp]]


async def submit_follow_up(interaction: discord.Interaction[KlingBot], job: JobRow, build: Build) -> None:
    """Defers, checks, builds the new job and hands it to the runner; every refusal is private."""
    bot = interaction.client
    try:
        await interaction.response.defer(ephemeral=True, thinking=True)
    except discord.HTTPException as error:
        log.warning("interaction %s: acknowledgement failed (%s); nothing done", interaction.id, error.code)
        return
    try:
        if interaction.guild_id is None:
            raise InputRefused("This works only in a server channel.")
        missing = missing_permissions(interaction.app_permissions)
        if missing:
            raise InputRefused(
                "I can't work in this channel: I'm missing " + ", ".join(missing) + ". Please ask a "
                "server admin to grant them, or use another channel."
            )
        blocked = bot.sunra.submissions_blocked
        if blocked is not None:
            raise blocked
        role_ids = member_role_ids(interaction)
        options = job_options(results.stored_request(job))
        # Before any slow work (Extend downloads the video): a member without credits waits for nothing.
        await bot.quota.quote(
            guild_id=interaction.guild_id, user_id=interaction.user.id, role_ids=role_ids, options=options
        )
        follow = await build()
        command = Command(
            interaction_id=interaction.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id or job.channel_id,
            user_id=interaction.user.id,
            role_ids=role_ids,
            upload_limit=interaction.filesize_limit,
            request=follow.request,
        )
        await bot.quota.quote(
            guild_id=command.guild_id,
            user_id=command.user_id,
            role_ids=role_ids,
            options=job_options(follow.request),
        )
    except BotError as refusal:
        await say_privately(interaction, refusal.user_message)
        return
    job_id, is_new = await bot.runner.record(command)
    if not is_new:
        return
    try:
        accepted = await bot.runner.accept_inputs(job_id, command, follow.start, follow.end)
    except BotError as refusal:
        await say_privately(interaction, refusal.user_message)
        return
    place = f"Your video is on its way (place {accepted.place} in line); follow it in this channel."
    await say_privately(interaction, f"{place} {accepted.reservation.describe()}")


async def known_job(interaction: discord.Interaction[KlingBot], job_id: int) -> JobRow | None:
    """The job, or None after telling the presser privately that this database does not know it."""
    job = await interaction.client.job_store.get(job_id)
    if job is None:
        await say_privately(interaction, results.UNKNOWN_JOB)
    return job


def video_sources(interaction: discord.Interaction[Any], job: JobRow) -> list[str]:
    """Where the video can be downloaded: the post's own attachment first (Discord signed its URL for this
    interaction), then the API's link, which expires."""
    sources = []
    if interaction.message is not None:
        sources += [
            a.url for a in interaction.message.attachments if (a.content_type or "").startswith("video")
        ]
    if job.video_url:
        sources.append(job.video_url)
    return sources


class _ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"kling:(?P<action>retry|remix|extend|delete):(?P<job_id>\d+)",
):
    action = ""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(custom_id=result_custom_id(self.action, job_id)))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> _ResultButton:
        return cls(int(match["job_id"]))


class RetryButton(_ResultButton, template=r"kling:retry:(?P<job_id>\d+)"):
    action = "retry"

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        job = await interaction.client.job_store.get(self.job_id)
        if job is None:
            await say_privately(interaction, results.UNKNOWN_JOB)
            return

        async def build() -> results.FollowUp:
            return results.retry(job)

        await submit_follow_up(interaction, job, build)


class RemixButton(_ResultButton, template=r"kling:remix:(?P<job_id>\d+)"):
    action = "remix"

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        job = await known_job(interaction, self.job_id)
        if job is None:
            return
        try:
            results.retry(job)  # the same images must still be there
        except BotError as refusal:
            await say_privately(interaction, refusal.user_message)
            return
        await interaction.response.send_modal(RemixModal(job))


class ExtendButton(_ResultButton, template=r"kling:extend:(?P<job_id>\d+)"):
    action = "extend"

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        job = await known_job(interaction, self.job_id)
        if job is None:
            return
        if not video_sources(interaction, job):
            await say_privately(interaction, "This job has no video to continue from.")
            return
        link = interaction.message.jump_url if interaction.message is not None else None
        await interaction.response.send_modal(ExtendModal(job, video_sources(interaction, job), link))


class DeleteButton(_ResultButton, template=r"kling:delete:(?P<job_id>\d+)"):
    action = "delete"

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await known_job(interaction, self.job_id)
        if job is None:
            return
        if interaction.user.id != job.user_id and not interaction.permissions.manage_messages:
            await say_privately(
                interaction, "Only the member who asked for this video, or a moderator, can delete it."
            )
            return
        posts = {m for m in (job.progress_message_id, job.result_message_id) if m is not None}
        if interaction.message is not None:
            posts.add(interaction.message.id)
        channel = interaction.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        for message_id in sorted(posts):
            try:
                await channel.get_partial_message(message_id).delete()
            except discord.NotFound:
                pass
            except discord.HTTPException as error:
                log.info("job %s: cannot delete message %s (%s)", job.id, message_id, error.code)
        log.info("job %s: posts deleted by %s", job.id, interaction.user.id)
        await say_privately(interaction, "Deleted the video and its progress message.")


RESULT_BUTTONS = (RetryButton, RemixButton, ExtendButton, DeleteButton)


def prompt_input(default: str) -> discord.ui.TextInput[Any]:
    return discord.ui.TextInput(
        label="Prompt", style=discord.TextStyle.paragraph, default=default, max_length=MAX_PROMPT
    )


class RemixModal(discord.ui.Modal, title="Remix this video"):
    def __init__(self, job: JobRow) -> None:
        super().__init__(timeout=None)
        self.job = job
        request = results.stored_request(job)
        self.prompt: discord.ui.TextInput[Any] = prompt_input(request.prompt)
        self.negative_prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Negative prompt",
            style=discord.TextStyle.paragraph,
            default=request.negative_prompt,
            required=False,
            max_length=MAX_PROMPT,
        )
        self.duration: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Duration (5 or 10 seconds)", default=str(request.duration), max_length=10
        )
        for item in (self.prompt, self.negative_prompt, self.duration):
            self.add_item(item)

    async def on_submit(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        async def build() -> results.FollowUp:
            return results.remix(
                self.job,
                prompt=self.prompt.value,
                negative_prompt=self.negative_prompt.value,
                duration=self.duration.value,
            )

        await submit_follow_up(interaction, self.job, build)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        log.error("remix of job %s failed", self.job.id, exc_info=error)
        await say_privately(interaction, "Something went wrong inside the bot; nothing was charged.")


class ExtendModal(discord.ui.Modal, title="Extend this video"):
    def __init__(self, job: JobRow, sources: list[str], link: str | None) -> None:
        super().__init__(timeout=None)
        self.job, self.sources, self.link = job, sources, link
        self.prompt: discord.ui.TextInput[Any] = prompt_input(results.stored_request(job).prompt)
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        bot = interaction.client

        async def build() -> results.FollowUp:
            frame = await results.last_frame_of(
                self.job,
                sources=self.sources,
                sunra=bot.sunra,
                images=bot.images,
                workdir=bot.runner.workdir,
                max_bytes=int(bot.settings.jobs.max_video_mb * 1_000_000),
            )
            return results.extend(self.job, prompt=self.prompt.value, frame=frame, link=self.link)

        await submit_follow_up(interaction, self.job, build)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        log.error("extend of job %s failed", self.job.id, exc_info=error)
        await say_privately(interaction, "Something went wrong inside the bot; nothing was charged.")


class ResultsCog(commands.Cog):
    def __init__(self, bot: KlingBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*RESULT_BUTTONS)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*RESULT_BUTTONS)


async def setup(bot: KlingBot) -> None:
    await bot.add_cog(ResultsCog(bot))
