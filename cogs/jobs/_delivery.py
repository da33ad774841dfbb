"""The Discord side of a job: the public progress message, the final post, and its fallbacks.

Nothing here uses an interaction token: a Kling job can outlive it (15 minutes), so progress and results
go through the bot's own channel messages. Every post that ends a job carries the job's mark (a nonce
Discord enforces for a few minutes, and an embed footer that stays) so a restarted bot can find it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord

from bot.jobs import Phase, Progress
from bot.request import AnimateRequest
from bot.store.jobs import JobRow
from bot.text import EMBED_DESCRIPTION_LIMIT, clip, escape_member_text
from cogs._ui import NO_MENTIONS
from cogs.jobs._cancel import CancelButton
from cogs.jobs._results import DeleteButton, ExtendButton, RemixButton, RetryButton
from cogs.showcase._post import ShowcaseButton

log = logging.getLogger(__name__)

# Discord error codes this module acts on.
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
CANNOT_DM = 50007
TOO_LARGE = 40005
# Slack for a host clock behind or ahead of Discord's when looking for posts newer than a job.
CLOCK_SKEW_SECONDS = 60
# How far back a restarted bot looks for a post it may already have made.
HISTORY_LOOKBACK = 100
EMBED_COLOUR = discord.Colour(0x5865F2)
FAILED_COLOUR = discord.Colour(0xED4245)
DONE_COLOUR = discord.Colour(0x57F287)
DONE_STATUS = "✅ Done"


def job_mark(job_id: int) -> str:
    """The footer every message about a job carries; also how a restarted bot recognises its posts."""
    return f"Kling 2.6 Pro · job {job_id}"


def outcome_mark(job_id: int) -> str:
    """The footer of the one message that ends a job (video or failure); the progress message has
    `job_mark` alone, so the two are never confused."""
    return f"{job_mark(job_id)} · final"


def job_nonce(job_id: int, kind: str, instance: str = "") -> str:
    """≤ 25 characters. Discord answers a repeated nonce with the first message for a few minutes;
    `instance` (random per database) keeps a new database's job 1 from being taken for an old one's."""
    return f"k{kind}{instance[:8]}{job_id}"[:25]


def only_user(user_id: int) -> discord.AllowedMentions:
    """Mentions nobody but the requester, whatever text the message carries."""
    return discord.AllowedMentions(
        everyone=False, roles=False, users=[discord.Object(user_id)], replied_user=False
    )


def progress_text(progress: Progress) -> str:
    started = f" · started <t:{int(progress.started_at)}:R>" if progress.started_at else ""
    if progress.phase is Phase.WAITING:
        place = f" — place {progress.position}" if progress.position else ""
        return f"⏳ Waiting in the bot's queue{place}"
    if progress.phase is Phase.QUEUED:
        place = f" — position {progress.position}" if progress.position is not None else ""
        return f"⏳ In Kling's queue{place}{started}"
    if progress.phase is Phase.GENERATING:
        return f"🎬 Generating{started}"
    return "📦 Finishing: fetching the video"


def final_status(job: JobRow) -> str:
    """The progress message's last status line."""
    if job.state in ("completed", "delivering", "delivered"):
        return DONE_STATUS
    return "🚫 Cancelled" if job.state == "cancelled" else "❌ Ended without a video"


def progress_embed(job: JobRow, request: AnimateRequest, status: str) -> discord.Embed:
    description = clip(escape_member_text(request.prompt), EMBED_DESCRIPTION_LIMIT)
    embed = discord.Embed(title="Animating with Kling", description=description, colour=EMBED_COLOUR)
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>", inline=True)
    embed.add_field(name="Settings", value=request.describe_settings(), inline=True)
    if request.extends_link:
        embed.add_field(name="Continues", value=request.extends_link, inline=False)
    embed.add_field(name="Status", value=status, inline=False)
    if job.start_image_url:
        embed.set_thumbnail(url=job.start_image_url)
    embed.set_footer(text=job_mark(job.id))
    return embed


class ShownView(discord.ui.View):
    """A view that is only shown: a press comes back by its custom_id to the DynamicItem its cog registered.
    Stopped at once, so discord.py does not also keep it (and run the same item's callback a second time)."""

    def __init__(self, *items: discord.ui.Item[Any]) -> None:
        super().__init__(timeout=None)
        for item in items:
            self.add_item(item)
        self.stop()


class CancelButtonView(ShownView):
    def __init__(self, job_id: int) -> None:
        super().__init__(CancelButton(job_id))


class ResultButtonsView(ShownView):
    """The buttons under a finished video; each is a DynamicItem registered by its cog, so it works
    after restarts. Showcase only where there is a server to showcase in."""

    def __init__(self, job: JobRow) -> None:
        buttons = (RetryButton, RemixButton, ExtendButton, ShowcaseButton, DeleteButton)
        super().__init__(*(b(job.id) for b in buttons if b is not ShowcaseButton or job.guild_id is not None))


@dataclass
class _Shown:
    text: str = ""
    at: float = 0.0
    pending: Progress | None = None
    # The channel refused an edit or post (403/404): further edits would only count as invalid
    # requests against the bot's IP, so this job's progress message is left alone from then on.
    refused: bool = False
    timer: asyncio.Task[None] | None = field(default=None, repr=False)


class DiscordReporter:
    """Implements bot.jobs.Reporter with the bot's own messages."""

    def __init__(self, client: discord.Client, *, edit_interval: float, instance: str = "") -> None:
        self.client = client
        self.instance = instance
        self.edit_interval = edit_interval
        self._shown: dict[int, _Shown] = {}
        self._requests: dict[int, AnimateRequest] = {}
        self._lanes: dict[tuple[int, str], asyncio.Lock] = {}

    def _lane(self, channel_id: int, kind: str) -> asyncio.Lock:
        """One request at a time per channel and kind (post, edit). discord.py learns a rate limit
        bucket from each answer; concurrent requests in one bucket overshoot it, and every 429
        counts toward Discord's invalid-request ban. Discord allows ~1 post/s per channel anyway."""
        return self._lanes.setdefault((channel_id, kind), asyncio.Lock())

    # ----- progress ----------------------------------------------------------------------------------------

    async def post_progress(self, job: JobRow, request: AnimateRequest, progress: Progress) -> int | None:
        text = progress_text(progress)
        self._requests[job.id] = request
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            async with self._lane(job.channel_id, "post"):
                message = await channel.send(
                    embed=progress_embed(job, request, text),
                    view=CancelButtonView(job.id),
                    allowed_mentions=NO_MENTIONS,
                    nonce=job_nonce(job.id, "p", self.instance),
                )
        except discord.HTTPException as error:
            # The job still runs; its result will find another way (URL, then DM).
            log.warning("job %s: cannot post the progress message (%s)", job.id, error.code)
            return None
        self._shown[job.id] = _Shown(text=text, at=time.monotonic())
        return message.id

    async def recover_progress(self, job: JobRow, request: AnimateRequest) -> int | None:
        """After a restart: the progress message a previous process posted without recording it, or
        a new one."""
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        found = await self._find_footer(job, channel, self._after_creation(job), job_mark(job.id))
        if found is not None:
            self._requests[job.id] = request
            return found
        return await self.post_progress(job, request, Progress(Phase.WAITING))

    async def show_progress(self, job: JobRow, progress: Progress) -> None:
        """Edits the progress message, at most once per `edit_interval`; newer news replaces older."""
        if job.progress_message_id is None:
            return
        shown = self._shown.setdefault(job.id, _Shown())
        if progress_text(progress) == shown.text:
            return
        shown.pending = progress
        if shown.timer is not None and not shown.timer.done():
            return
        wait = max(0.0, shown.at + self.edit_interval - time.monotonic())
        shown.timer = asyncio.create_task(self._edit_later(job, wait), name=f"progress-{job.id}")

    async def _edit_later(self, job: JobRow, wait: float) -> None:
        if wait:
            await asyncio.sleep(wait)
        shown = self._shown.get(job.id)
        if shown is None or shown.pending is None:
            return
        progress, shown.pending = shown.pending, None
        text = progress_text(progress)
        if text == shown.text:
            return
        shown.text, shown.at = text, time.monotonic()
        try:
            await self._edit_status(job, text, colour=EMBED_COLOUR, keep_button=True)
        except Exception:  # a courtesy edit must never surface as an unretrieved task error
            log.exception("job %s: progress edit failed", job.id)

    async def close(self) -> None:
        """Stops pending progress edits (at shutdown; the next process carries on)."""
        timers = [shown.timer for shown in self._shown.values() if shown.timer is not None]
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)

    async def _edit_status(
        self, job: JobRow, text: str, *, colour: discord.Colour, keep_button: bool
    ) -> None:
        if job.progress_message_id is None or self._shown.get(job.id, _Shown()).refused:
            return
        request = self._requests.get(job.id) or AnimateRequest.model_validate(job.params)
        embed = progress_embed(job, request, text)
        embed.colour = colour
        message = self.client.get_partial_messageable(
            job.channel_id, guild_id=job.guild_id
        ).get_partial_message(job.progress_message_id)
        try:
            async with self._lane(job.channel_id, "edit"):
                await message.edit(
                    embed=embed,
                    view=CancelButtonView(job.id) if keep_button else None,
                    allowed_mentions=NO_MENTIONS,
                )
        except discord.HTTPException as error:
            # A deleted message or a channel we lost: progress is a courtesy, never retried.
            log.info("job %s: progress edit refused (%s)", job.id, error.code)
            self._note_refusal(job.id, error)

    def _note_refusal(self, job_id: int, error: discord.HTTPException) -> None:
        if error.status in (403, 404):
            shown = self._shown.setdefault(job_id, _Shown())
            shown.refused, shown.pending = True, None

    def _stop_progress(self, job_id: int) -> None:
        """No more progress edits for this job (its final status edit follows)."""
        shown = self._shown.get(job_id)
        if shown is None:
            return
        shown.pending = None
        if shown.timer is not None and shown.timer is not asyncio.current_task():
            shown.timer.cancel()

    async def _close_progress(self, job: JobRow) -> None:
        """The progress message's last edit (its final status, no Cancel button); then forgets the job."""
        colour = DONE_COLOUR if final_status(job) == DONE_STATUS else FAILED_COLOUR
        await self._edit_status(job, final_status(job), colour=colour, keep_button=False)
        self._forget(job.id)

    def _forget(self, job_id: int) -> None:
        self._stop_progress(job_id)
        self._shown.pop(job_id, None)
        self._requests.pop(job_id, None)

    # ----- the end of a job --------------------------------------------------------------------------------

    async def deliver(self, job: JobRow, video: Path | None, *, reencoded: bool = False) -> int | None:
        """Posts the video: the file when it fits, else its URL; then a DM. Returns the message id.
        A `reencoded` file is said to be one, with the original's link beside it."""
        self._stop_progress(job.id)
        content = f"<@{job.user_id}> your video is ready!"
        if reencoded and video is not None:
            content += (
                " It was re-encoded to fit this channel's upload limit; the original (the link expires): "
                f"{job.video_url}"
            )
        extends = AnimateRequest.model_validate(job.params).extends_link
        if extends:
            content += f" It continues {extends}"
        message_id = await self._post_outcome(
            job, content, video=video, colour=DONE_COLOUR, view=ResultButtonsView(job)
        )
        await self._close_progress(job)
        return message_id

    async def notify_end(self, job: JobRow) -> int | None:
        self._stop_progress(job.id)
        reason = job.error_message or "The job could not finish."
        content = f"<@{job.user_id}> your /animate job ended without a video. {reason}"
        message_id = await self._post_outcome(job, content, video=None, colour=FAILED_COLOUR, with_url=False)
        await self._close_progress(job)
        return message_id

    async def _post_outcome(
        self,
        job: JobRow,
        content: str,
        *,
        video: Path | None,
        colour: discord.Colour,
        with_url: bool = True,
        view: discord.ui.View | None = None,
    ) -> int | None:
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        embed = discord.Embed(colour=colour)
        embed.set_footer(text=outcome_mark(job.id))
        reference = None
        if job.progress_message_id is not None:
            reference = discord.MessageReference(
                message_id=job.progress_message_id, channel_id=job.channel_id, fail_if_not_exists=False
            )
        url_text = f"{content}\n{job.video_url}" if with_url and job.video_url else content
        attempts: list[tuple[str, discord.File | None]] = []
        if video is not None:
            attempts.append((content, discord.File(video, filename=f"kling-{job.id}.mp4")))
        attempts.append((url_text, None))
        for text, file in attempts:
            try:
                async with self._lane(job.channel_id, "post"):
                    message = await self._send(
                        channel, job, text, embed, reference, file, self.instance, view
                    )
                return message.id
            except discord.HTTPException as error:
                log.warning("job %s: channel refused the result (%s %s)", job.id, error.status, error.code)
                if file is None or error.code in (UNKNOWN_CHANNEL, MISSING_ACCESS):
                    self._note_refusal(job.id, error)
                if error.code in (UNKNOWN_CHANNEL, MISSING_ACCESS) or error.status >= 500:
                    break  # the URL would be refused the same way; go straight to the DM
                if error.code not in (TOO_LARGE, MISSING_PERMISSIONS) and error.status != 413:
                    break
            finally:
                if file is not None:
                    file.close()
        return await self._direct_message(job, url_text, embed)

    @staticmethod
    async def _send(
        channel: discord.PartialMessageable,
        job: JobRow,
        text: str,
        embed: discord.Embed,
        reference: discord.MessageReference | None,
        file: discord.File | None,
        instance: str,
        view: discord.ui.View | None = None,
    ) -> discord.Message:
        # One nonce for every attempt: Discord answers a repeat with the message it already made.
        # MISSING (not None) is how discord.py spells "leave this field out" for `file`; `reference` is
        # the exception: send() accepts None there and refuses MISSING (TypeError).
        return await channel.send(
            text,
            embed=embed,
            reference=reference,  # type: ignore[arg-type]
            file=file if file is not None else discord.utils.MISSING,
            view=view if view is not None else discord.utils.MISSING,
            allowed_mentions=only_user(job.user_id),
            nonce=job_nonce(job.id, "r", instance),
        )

    async def _direct_message(self, job: JobRow, text: str, embed: discord.Embed) -> int | None:
        try:
            user = self.client.get_user(job.user_id) or await self.client.fetch_user(job.user_id)
            message = await user.send(
                f"{text}\n(I could not post in <#{job.channel_id}>.)",
                embed=embed,
                allowed_mentions=only_user(job.user_id),
                nonce=job_nonce(job.id, "d", self.instance),
            )
        except discord.HTTPException as error:
            log.error(
                "job %s: could not reach the member in the channel or by DM (%s); the result stays in the "
                "database",
                job.id,
                error.code,
            )
            return None
        return message.id

    async def find_outcome(self, job: JobRow) -> int | None:
        """Looks for a post about this job that a previous process made before it died: in the
        channel first, then in the DM with the requester (where the fallback may have put it)."""
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        after = self._after_creation(job)
        found = await self._find_footer(job, channel, after, outcome_mark(job.id))
        if found is None:
            try:
                user = self.client.get_user(job.user_id) or await self.client.fetch_user(job.user_id)
                found = await self._find_footer(job, await user.create_dm(), after, outcome_mark(job.id))
            except discord.HTTPException as error:
                log.info("job %s: cannot open the DM to look for a result (%s)", job.id, error.code)
        if found is not None:
            # The previous process died between its post and the progress message's last edit.
            self._stop_progress(job.id)
            await self._close_progress(job)
        return found

    @staticmethod
    def _after_creation(job: JobRow) -> discord.Object:
        # Only messages newer than the job: a mark from before (say, of a lost database whose job ids
        # started again at 1) can never be mistaken for this job's post.
        created = dt.datetime.fromtimestamp(job.created_at - CLOCK_SKEW_SECONDS, dt.UTC)
        return discord.Object(discord.utils.time_snowflake(created))

    async def _find_footer(
        self, job: JobRow, channel: discord.abc.Messageable, after: discord.Object, mark: str
    ) -> int | None:
        me = self.client.user
        try:
            async for message in channel.history(limit=HISTORY_LOOKBACK, after=after, oldest_first=False):
                if me is not None and message.author.id != me.id:
                    continue
                if any(embed.footer.text == mark for embed in message.embeds):
                    return message.id
        except discord.HTTPException as error:
            log.info("job %s: cannot read the history (%s)", job.id, error.code)
        return None
