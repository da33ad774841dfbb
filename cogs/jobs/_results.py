"""The buttons under a finished video (Retry, Remix, Extend, Delete) and their forms: Discord in, bot/ out.

Each button is a DynamicItem whose custom_id carries the job id, so a press works after any number of
restarts. A press that opens a modal answers with the modal itself (one SQLite read before it); every
other press defers first. The new job goes through the runner exactly like /animate's: the presser's
credits, caps and the fair queue.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot import results
from bot.command_access import JobElsewhere
from bot.errors import BotError, InputRefused
from bot.i18n import _, render
from bot.jobs import Command, job_options
from bot.jobs.runner import ImageInput
from bot.media import PreparedImage
from bot.quota.rules import JobOptions
from bot.request import MAX_PROMPT
from bot.store.jobs import JobRow
from cogs._ui import (
    IdButton,
    answering,
    handles_forms,
    installed_guild_id,
    job_here,
    reply,
    say_privately,
    stored_id,
)
from cogs.jobs._submit import Submission, member_role_ids, refused_before_form, submit_job

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

Build = Callable[[], Awaitable[results.FollowUp]]


async def submit_follow_up(
    interaction: discord.Interaction[KlingBot],
    build: Build,
    *,
    options: JobOptions | None = None,
    anywhere: bool = False,
) -> None:
    """Defers, then submits through the one path (`submit_job`: /animate's access, the block list, the
    caps); every refusal is private. `anywhere`: the Animate menu's form, which also works in a DM and
    with a member's own install; the buttons work only in a server.

    `options`: the job's likely price options, quoted before `build` runs, so a member without credits
    waits for nothing.
    """
    bot = interaction.client
    try:
        await interaction.response.defer(ephemeral=True, thinking=True)
    except discord.HTTPException as error:
        log.warning("interaction %s: acknowledgement failed (%s); nothing done", interaction.id, error.code)
        return

    # The Animate menu also works in a DM or a member's own install (no server's rules there).
    guild_id = installed_guild_id(interaction)

    async def prepare() -> Submission:
        if not anywhere and interaction.guild_id is None:
            raise InputRefused(_("This works only in a server channel."))
        role_ids = member_role_ids(interaction) if guild_id else ()
        if options is not None:
            await bot.quota.quote(
                guild_id=guild_id, user_id=interaction.user.id, role_ids=role_ids, options=options
            )
        follow = await build()
        command = Command(
            interaction_id=interaction.id,
            guild_id=guild_id,
            channel_id=interaction.channel_id or 0,
            user_id=interaction.user.id,
            role_ids=role_ids,
            upload_limit=interaction.filesize_limit,
            request=follow.request,
        )
        make_start = follow.make_start
        if make_start is None:
            return Submission(command, follow.start, follow.end)

        async def inputs() -> tuple[ImageInput, ImageInput | None]:
            return await make_start(), None

        return Submission(command, inputs=inputs)

    await submit_job(interaction, prepare, defer=False)


async def known_job(interaction: discord.Interaction[KlingBot], job_id: int) -> JobRow | None:
    """The job, or None after telling the presser privately that this database does not know it, or that
    it was made in another server or channel than the press."""
    job = await interaction.client.job_store.get(job_id)
    if job is None:
        await say_privately(interaction, results.UNKNOWN_JOB)
        return None
    try:
        job_here(interaction, job)
    except JobElsewhere as refusal:
        log.warning("job %s named from guild %s by %s", job_id, interaction.guild_id, interaction.user.id)
        await say_privately(interaction, refusal.user_message)
        return None
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


class _ResultButton(IdButton):
    """A button under a finished video: `kling:<kind>:<job id>` (≤ 40 characters)."""

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        await self.act(interaction)  # the kit answers an unexpected error

    async def act(self, interaction: discord.Interaction[KlingBot]) -> None:
        raise NotImplementedError


class RetryButton(_ResultButton, kind="retry"):
    label, emoji = _("Retry"), "🔁"

    async def act(self, interaction: discord.Interaction[KlingBot]) -> None:
        job = await known_job(interaction, self.number)
        if job is None:
            return

        async def build() -> results.FollowUp:
            return results.retry(job)

        await submit_follow_up(interaction, build, options=job_options(results.stored_request(job)))


class RemixButton(_ResultButton, kind="remix"):
    label, emoji = _("Remix"), "🎨"

    async def act(self, interaction: discord.Interaction[KlingBot]) -> None:
        job = await known_job(interaction, self.number)
        if job is None:
            return
        try:
            results.retry(job)  # the same images must still be there
        except BotError as refusal:
            await say_privately(interaction, refusal.user_message)
            return
        if not await refused_before_form(interaction):
            await RemixModal(job, locale=str(interaction.locale)).show(interaction)


class ExtendButton(_ResultButton, kind="extend"):
    label, emoji = _("Extend"), "⏩"

    async def act(self, interaction: discord.Interaction[KlingBot]) -> None:
        job = await known_job(interaction, self.number)
        if job is None:
            return
        if not video_sources(interaction, job):
            await say_privately(interaction, _("This job has no video to continue from."))
            return
        if not await refused_before_form(interaction):
            await ExtendModal(job, locale=str(interaction.locale)).show(interaction)


class DeleteButton(_ResultButton, kind="delete"):
    label, emoji = _("Delete"), "🗑️"
    style = discord.ButtonStyle.danger

    async def act(self, interaction: discord.Interaction[KlingBot]) -> None:
        routed = await interaction.client.job_store.get(self.number)
        if routed is not None and routed.through_interaction and interaction.message is not None:
            await self._delete_card(interaction)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await known_job(interaction, self.number)
        if job is None:
            return
        if interaction.user.id != job.user_id and not interaction.permissions.manage_messages:
            await say_privately(
                interaction, _("Only the member who asked for this video, or a moderator, can delete it.")
            )
            return
        posts = {m for m in (job.progress_message_id, job.result_message_id) if m is not None}
        if interaction.message is not None:
            posts.add(interaction.message.id)
        channel = interaction.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        kept = 0
        for message_id in sorted(posts):
            try:
                await channel.get_partial_message(message_id).delete()
            except discord.NotFound:
                pass  # already gone
            except discord.HTTPException as error:
                log.info("job %s: cannot delete message %s (%s)", job.id, message_id, error.code)
                kept += 1
        log.info("job %s: posts deleted by %s (%d could not be)", job.id, interaction.user.id, kept)
        text = (
            _("Deleted the video and its progress message.")
            if not kept
            else _("Discord did not let me delete the post here; a moderator can remove it.")
        )
        # A deleted video does not stay on show: its showcase post goes too (the votes are kept).
        take_down = getattr(interaction.client.get_cog("ShowcaseCog"), "take_down_for_job", None)
        if take_down is not None and await take_down(job.id):
            text = _("{done} Its showcase post was taken down too.", done=text)
        await say_privately(interaction, text)

    async def _delete_card(self, interaction: discord.Interaction[KlingBot]) -> None:
        """A job delivered through its interaction (a DM, a member's own install in a server without the
        bot): the bot may not touch that channel, so the card the button is on is deleted through this
        press's own interaction (a deferred update's original is that message). Only its member may."""
        job = await known_job(interaction, self.number)  # refusals are this press's first, private answer
        if job is None:
            return
        if interaction.user.id != job.user_id:
            await say_privately(
                interaction, _("Only the member who asked for this video, or a moderator, can delete it.")
            )
            return
        await interaction.response.defer()
        try:
            await interaction.delete_original_response()
            text = _("Deleted the video and its progress message.")
        except discord.NotFound:
            text = _("Deleted the video and its progress message.")
        except discord.HTTPException as error:
            log.info("job %s: cannot delete its card (%s)", job.id, error.code)
            text = _("Discord did not let me delete the post here; a moderator can remove it.")
        log.info("job %s: card deleted by %s", job.id, interaction.user.id)
        await reply(interaction, text)


RESULT_BUTTONS = (RetryButton, RemixButton, ExtendButton, DeleteButton)


FORM_TEMPLATE = re.compile(r"kling:(?P<action>remix|extend)form:(?P<job_id>\d+)")


def form_custom_id(action: str, job_id: int) -> str:
    return f"kling:{action}form:{job_id}"


def prompt_input(default: str, locale: str = "en-US") -> discord.ui.TextInput[Any]:
    return discord.ui.TextInput(
        label=render(_("Prompt"), locale),
        custom_id="prompt",
        style=discord.TextStyle.paragraph,
        default=default,
        max_length=MAX_PROMPT,
    )


def negative_prompt_input(default: str | None, locale: str = "en-US") -> discord.ui.TextInput[Any]:
    return discord.ui.TextInput(
        label=render(_("Negative prompt"), locale),
        custom_id="negative_prompt",
        style=discord.TextStyle.paragraph,
        default=default,
        required=False,
        max_length=MAX_PROMPT,
    )


def duration_input(default: str, locale: str = "en-US") -> discord.ui.TextInput[Any]:
    """The duration as typed ("5" or "10"; the form's handler checks it)."""
    return discord.ui.TextInput(
        label=render(_("Duration (5 or 10 seconds)"), locale),
        custom_id="duration",
        default=default,
        max_length=10,
    )


class Form(discord.ui.Modal):
    """A modal that is only shown: its submission is handled by ResultsCog.on_interaction from the
    custom_id (which carries the job id), so a form opened before a restart still works after it."""

    async def show(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_modal(self)
        self.stop()  # discord.py forgets it; the submission comes back by its custom_id


class RemixModal(Form):
    """Its title and labels are in the presser's language (`locale`); the values are read by custom_id."""

    def __init__(self, job: JobRow, *, locale: str = "en-US") -> None:
        super().__init__(
            title=render(_("Remix this video"), locale), custom_id=form_custom_id("remix", job.id)
        )
        request = results.stored_request(job)
        self.add_item(prompt_input(request.prompt, locale))
        self.add_item(negative_prompt_input(request.negative_prompt, locale))
        self.add_item(duration_input(str(request.duration), locale))


class ExtendModal(Form):
    def __init__(self, job: JobRow, *, locale: str = "en-US") -> None:
        super().__init__(
            title=render(_("Extend this video"), locale), custom_id=form_custom_id("extend", job.id)
        )
        self.add_item(prompt_input(results.stored_request(job).prompt, locale))


def submitted_values(data: Any) -> dict[str, str]:
    """{text input custom_id: value} of a modal submission (inputs in action rows or in labels)."""
    values: dict[str, str] = {}
    pending = list(data.get("components", []))
    while pending:
        component = pending.pop()
        pending += component.get("components", [])
        if isinstance(component.get("component"), dict):
            pending.append(component["component"])
        if component.get("type") == 4 and "custom_id" in component:
            values[component["custom_id"]] = str(component.get("value") or "")
    return values


def post_link(job: JobRow) -> str | None:
    if job.result_message_id is None:
        return None
    return f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}/{job.result_message_id}"


async def submit_form(interaction: discord.Interaction[KlingBot], action: str, job_id: int) -> None:
    bot = interaction.client
    values = submitted_values(interaction.data or {})
    job = await known_job(interaction, job_id)
    if job is None:
        return
    known: JobRow = job

    async def remix() -> results.FollowUp:
        return results.remix(
            known,
            prompt=values.get("prompt", ""),
            negative_prompt=values.get("negative_prompt"),
            duration=values.get("duration", ""),
        )

    async def extend() -> results.FollowUp:
        async def frame() -> PreparedImage:
            # Called by the runner once the credit is reserved: video work for a paying member only.
            return await results.last_frame_of(
                known,
                sources=video_sources(interaction, known),
                sunra=bot.sunra,
                images=bot.images,
                workdir=bot.runner.workdir,
                max_bytes=int(bot.settings.jobs.max_video_mb * 1_000_000),
            )

        request = results.extend(known, prompt=values.get("prompt", ""), link=post_link(known))
        return results.FollowUp(request, start=None, make_start=frame)

    if action == "remix":
        # The form's own duration decides the price: quoting the old job's first would name the wrong one.
        await submit_follow_up(interaction, remix)
        return
    await submit_follow_up(interaction, extend, options=job_options(results.stored_request(known)))


class ResultsCog(commands.Cog):
    def __init__(self, bot: KlingBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        handles_forms(FORM_TEMPLATE)
        self.bot.add_dynamic_items(*RESULT_BUTTONS)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*RESULT_BUTTONS)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[KlingBot]) -> None:
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        match = FORM_TEMPLATE.fullmatch(str(data.get("custom_id", "")))
        if match is not None:
            work = submit_form(interaction, match["action"], stored_id(match["job_id"]))
            await answering(interaction, work, f"{match['action']} form of job {match['job_id']}")
