"""The Discord side of a job: the public progress message, the final post, and its fallbacks.

A Kling job can outlive an interaction's token (15 minutes), so progress and results go through the
bot's own channel messages, as Components V2 cards (cogs/jobs/_cards.py). Every post that ends a job
carries the job's mark (a nonce Discord enforces for a few minutes, and the card's last line or an embed
footer, which stay) so a restarted bot can find it.

A job whose channel the bot cannot post in (`JobRow.through_interaction`: a DM, a group DM, a member's
own install in a server without the bot) is never posted there: its progress card is a followup of the
interaction, edited into the result card with the video while the token lives (cogs/jobs/_interaction.py),
and after that (or after a restart, which forgets the token) the result goes to the member's DM.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import discord

from bot.i18n import _, join, render, stored_sentence
from bot.jobs import Phase, Progress
from bot.request import AnimateRequest
from bot.store.jobs import JobRow
from cogs._ui import NO_MENTIONS
from cogs.jobs._cards import (
    DONE_COLOUR,
    EMBED_COLOUR,
    FAILED_COLOUR,
    carries_mark,
    job_mark,
    outcome_mark,
    progress_card,
    result_card,
    video_filename,
)
from cogs.jobs._interaction import InteractionRoutes, RouteClosed

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
DONE_STATUS = _("✅ Done")


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
    """The status line, a message rendered in the job's language with its card."""
    parts: list[str] = []
    if progress.phase is Phase.WAITING:
        parts.append(_("⏳ Waiting in the bot's queue"))
        if progress.position:
            parts.append(_(" — place {n}", n=progress.position))
    elif progress.phase is Phase.QUEUED:
        parts.append(_("⏳ In Kling's queue"))
        if progress.position is not None:
            parts.append(_(" — position {n}", n=progress.position))
    elif progress.phase is Phase.GENERATING:
        parts.append(_("🎬 Generating"))
    else:
        return _("📦 Finishing: fetching the video")
    if progress.started_at and progress.phase is not Phase.WAITING:
        parts.append(_(" · started {when}", when=f"<t:{int(progress.started_at)}:R>"))
    return join(parts, "")


def final_status(job: JobRow) -> str:
    """The progress message's last status line."""
    if job.state in ("completed", "delivering", "delivered"):
        return DONE_STATUS
    return _("🚫 Cancelled") if job.state == "cancelled" else _("❌ Ended without a video")


def job_locale(client: discord.Client, job: JobRow) -> object:
    """The language of a job's public messages (progress, result, failure): the one recorded with the job
    (the server's preferred locale when the server added the bot, else the member's: `JobRow.locale`),
    else the server's preferred locale now, else English (None)."""
    if job.locale:
        return job.locale
    guild = client.get_guild(job.guild_id) if job.guild_id is not None else None
    return guild.preferred_locale if guild is not None else None


@dataclass(frozen=True, slots=True)
class _Post:
    """One try at the message that ends a job: a card (with the video file when there is one), or the
    text and embed of a job that ended without a video."""

    view: discord.ui.LayoutView | None = None
    video: Path | None = None
    content: str | None = None
    embed: discord.Embed | None = None


def result_posts(
    job: JobRow, video: Path | None, *, reencoded: bool, locale: object, note: str = ""
) -> list[_Post]:
    """The tries at a result, in order: the card with the file when there is one, then the card with the
    link (for a file the place refuses, e.g. too large for a DM: 40005)."""
    posts: list[_Post] = []
    if video is not None:
        card = result_card(
            job, filename=video_filename(job.id), reencoded=reencoded, note=note, locale=locale
        )
        posts.append(_Post(view=card, video=video))
    posts.append(_Post(view=result_card(job, filename=None, note=note, locale=locale)))
    return posts


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
        # The interactions of jobs that go through them, in memory only (their tokens are credentials).
        self.routes = InteractionRoutes()

    def _lane(self, channel_id: int, kind: str) -> asyncio.Lock:
        """One request at a time per channel and kind (post, edit). discord.py learns a rate limit
        bucket from each answer; concurrent requests in one bucket overshoot it, and every 429
        counts toward Discord's invalid-request ban. Discord allows ~1 post/s per channel anyway."""
        return self._lanes.setdefault((channel_id, kind), asyncio.Lock())

    # ----- progress ----------------------------------------------------------------------------------------

    async def post_progress(self, job: JobRow, request: AnimateRequest, progress: Progress) -> int | None:
        text = progress_text(progress)
        self._requests[job.id] = request
        if job.through_interaction:
            return await self._post_progress_followup(job, request, text)
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            async with self._lane(job.channel_id, "post"):
                card = progress_card(
                    job, request, text, colour=EMBED_COLOUR, cancel=True, locale=job_locale(self.client, job)
                )
                message = await channel.send(
                    view=card,
                    allowed_mentions=NO_MENTIONS,
                    nonce=job_nonce(job.id, "p", self.instance),
                )
        except discord.HTTPException as error:
            # The job still runs; its result will find another way (URL, then DM).
            log.warning("job %s: cannot post the progress message (%s)", job.id, error.code)
            return None
        self._shown[job.id] = _Shown(text=text, at=time.monotonic())
        return message.id

    async def _post_progress_followup(self, job: JobRow, request: AnimateRequest, text: str) -> int | None:
        card = progress_card(
            job, request, text, colour=EMBED_COLOUR, cancel=True, locale=job_locale(self.client, job)
        )
        try:
            message_id = await self.routes.post(job.id, view=card, allowed_mentions=NO_MENTIONS)
        except (RouteClosed, discord.HTTPException) as error:
            log.warning(
                "job %s: cannot post the progress followup (%r); the result goes to the DM", job.id, error
            )
            return None
        self._shown[job.id] = _Shown(text=text, at=time.monotonic())
        return message_id

    async def recover_progress(self, job: JobRow, request: AnimateRequest) -> int | None:
        """After a restart: the progress message a previous process posted without recording it, or
        a new one. None for a job that goes through its interaction: this process has no token for it."""
        if job.through_interaction:
            return None
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
        card = progress_card(
            job, request, text, colour=colour, cancel=keep_button, locale=job_locale(self.client, job)
        )
        if job.through_interaction:
            await self._edit_followup(job, job.progress_message_id, card)
            return
        message = self.client.get_partial_messageable(
            job.channel_id, guild_id=job.guild_id
        ).get_partial_message(job.progress_message_id)
        try:
            async with self._lane(job.channel_id, "edit"):
                # content and embeds cleared: a progress message posted before cards becomes one.
                await message.edit(content=None, embed=None, view=card, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as error:
            # A deleted message or a channel we lost: progress is a courtesy, never retried.
            log.info("job %s: progress edit refused (%s)", job.id, error.code)
            self._note_refusal(job.id, error)

    async def _edit_followup(self, job: JobRow, message_id: int, card: discord.ui.LayoutView) -> None:
        """A progress edit through the interaction: only while its token lives (never retried)."""
        try:
            async with self._lane(job.id, "interaction"):
                await self.routes.edit(job.id, message_id, view=card, allowed_mentions=NO_MENTIONS)
        except RouteClosed:
            self._stop_progress(job.id)
        except discord.HTTPException as error:
            log.info("job %s: progress followup edit refused (%s)", job.id, error.code)
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
        """Posts the result card: the file played inline when there is one (a `reencoded` file says so,
        with the original's link), else the link; a channel that refuses gets it in the member's DM,
        with the file when it fits there. Returns the message id (None: nobody could be reached)."""
        self._stop_progress(job.id)
        if job.through_interaction:
            return await self._deliver_through_interaction(job, video, reencoded=reencoded)
        locale = job_locale(self.client, job)
        attempts = result_posts(job, video, reencoded=reencoded, locale=locale)
        where = _("(I could not post in {channel}, so here it is.)", channel=f"<#{job.channel_id}>")
        dm = result_posts(job, video, reencoded=reencoded, locale=locale, note=where)
        message_id = await self._post_outcome(job, attempts, dm)
        await self._close_progress(job)
        return message_id

    async def notify_end(self, job: JobRow) -> int | None:
        self._stop_progress(job.id)
        locale = job_locale(self.client, job)
        reason = stored_sentence(job.error_message) if job.error_message else _("The job could not finish.")
        ended = _(
            "{member} your /animate job ended without a video. {reason}",
            member=f"<@{job.user_id}>",
            reason=reason,
        )
        content = render(ended, locale)
        embed = discord.Embed(colour=FAILED_COLOUR)
        embed.set_footer(text=outcome_mark(job.id))
        if job.through_interaction:
            return await self._notify_end_through_interaction(job, content, embed)
        elsewhere = _("(I could not post in {channel}.)", channel=f"<#{job.channel_id}>")
        dm_text = f"{content}\n{render(elsewhere, locale)}"
        message_id = await self._post_outcome(
            job, [_Post(content=content, embed=embed)], [_Post(content=dm_text, embed=embed)]
        )
        await self._close_progress(job)
        return message_id

    async def _post_outcome(self, job: JobRow, attempts: list[_Post], dm: list[_Post]) -> int | None:
        """The first of `attempts` the channel takes; a refusal for the file's sake tries the next,
        any other refusal goes to the `dm` attempts."""
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        reference = None
        if job.progress_message_id is not None:
            reference = discord.MessageReference(
                message_id=job.progress_message_id, channel_id=job.channel_id, fail_if_not_exists=False
            )
        for post in attempts:
            try:
                async with self._lane(job.channel_id, "post"):
                    message = await self._send(
                        channel, job, post, reference, job_nonce(job.id, "r", self.instance)
                    )
                return message.id
            except discord.HTTPException as error:
                log.warning("job %s: channel refused the result (%s %s)", job.id, error.status, error.code)
                if post.video is None or error.code in (UNKNOWN_CHANNEL, MISSING_ACCESS):
                    self._note_refusal(job.id, error)
                if error.code in (UNKNOWN_CHANNEL, MISSING_ACCESS) or error.status >= 500:
                    break  # the link would be refused the same way; go straight to the DM
                if error.code not in (TOO_LARGE, MISSING_PERMISSIONS) and error.status != 413:
                    break
        return await self._direct_message(job, dm)

    @staticmethod
    async def _send(
        channel: discord.abc.Messageable,
        job: JobRow,
        post: _Post,
        reference: discord.MessageReference | None,
        nonce: str,
    ) -> discord.Message:
        # One nonce for every attempt: Discord answers a repeat with the message it already made.
        # MISSING (not None) is how discord.py spells "leave this field out"; `reference` is the
        # exception: send() accepts None there and refuses MISSING (TypeError).
        file = discord.File(post.video, filename=video_filename(job.id)) if post.video is not None else None
        try:
            if post.view is not None:  # a card: no content, no embeds (Components V2)
                return await channel.send(
                    view=post.view,
                    reference=reference,  # type: ignore[arg-type]
                    file=file if file is not None else discord.utils.MISSING,
                    allowed_mentions=only_user(job.user_id),
                    nonce=nonce,
                )
            return await channel.send(
                post.content,
                embed=post.embed if post.embed is not None else discord.utils.MISSING,
                reference=reference,  # type: ignore[arg-type]
                allowed_mentions=only_user(job.user_id),
                nonce=nonce,
            )
        finally:
            if file is not None:
                file.close()

    async def _direct_message(self, job: JobRow, attempts: list[_Post]) -> int | None:
        try:
            user = self.client.get_user(job.user_id) or await self.client.fetch_user(job.user_id)
            channel = await user.create_dm()
        except discord.HTTPException as error:
            log.error("job %s: cannot open the DM (%s); the result stays in the database", job.id, error.code)
            return None
        for post in attempts:
            try:
                message = await self._send(channel, job, post, None, job_nonce(job.id, "d", self.instance))
                return message.id
            except discord.HTTPException as error:
                if post.video is not None and (error.code == TOO_LARGE or error.status == 413):
                    continue  # the link card next
                log.error(
                    "job %s: could not reach the member in the channel or by DM (%s); the result stays in "
                    "the database",
                    job.id,
                    error.code,
                )
                return None
        return None

    async def find_outcome(self, job: JobRow) -> int | None:
        """Looks for a post about this job that a previous process made before it died: in the
        channel first, then in the DM with the requester (where the fallback may have put it)."""
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        after = self._after_creation(job)
        if job.through_interaction:  # never read (nor post in) a channel the bot cannot see
            found = await self._find_in_followup(job)
        else:
            found = await self._find_footer(job, channel, after, outcome_mark(job.id))
        if found is None:
            try:
                user = self.client.get_user(job.user_id) or await self.client.fetch_user(job.user_id)
                found = await self._find_footer(job, await user.create_dm(), after, outcome_mark(job.id))
            except discord.HTTPException as error:
                log.info("job %s: cannot open the DM to look for a result (%s)", job.id, error.code)
        if found is not None and found == job.progress_message_id:
            self._forget(job.id)  # the progress followup is the result itself: nothing to close
        elif found is not None:
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
                if carries_mark(message, mark):
                    return message.id
        except discord.HTTPException as error:
            log.info("job %s: cannot read the history (%s)", job.id, error.code)
        return None

    # ----- a job that goes through its interaction ---------------------------------------------------------

    async def _deliver_through_interaction(
        self, job: JobRow, video: Path | None, *, reencoded: bool
    ) -> int | None:
        """The result card through the interaction while its token lives (the progress followup edited
        into it, else a new followup), else in the member's DM; the file when it fits, else the link."""
        locale = job_locale(self.client, job)
        cards = result_posts(job, video, reencoded=reencoded, locale=locale)
        message_id = await self._through_interaction(job, cards)
        if message_id is not None:
            self._forget(job.id)  # the progress card became the result: no status edit after it
            self.routes.forget(job.id)
            return message_id
        dm = result_posts(job, video, reencoded=reencoded, locale=locale, note=self._dm_note(job))
        message_id = await self._direct_message(job, dm)
        await self._close_progress(job)
        self.routes.forget(job.id)
        return message_id

    async def _through_interaction(self, job: JobRow, cards: list[_Post]) -> int | None:
        """The first card Discord takes through the interaction; None when the interaction cannot be
        used (the DM is next). The progress followup is edited, so a repeat is still one message; a
        progress followup someone deleted gives way to a new followup."""
        target = job.progress_message_id
        posts = list(cards)
        while posts:
            post = posts[0]
            assert post.view is not None
            name, mentions = video_filename(job.id), only_user(job.user_id)
            try:
                async with self._lane(job.id, "interaction"):
                    if target is None:
                        return await self.routes.post(
                            job.id, view=post.view, video=post.video, filename=name, allowed_mentions=mentions
                        )
                    await self.routes.edit(
                        job.id,
                        target,
                        view=post.view,
                        video=post.video,
                        filename=name,
                        allowed_mentions=mentions,
                    )
                    return target
            except RouteClosed:
                return None
            except discord.HTTPException as error:
                log.warning(
                    "job %s: the interaction refused the result (%s %s)", job.id, error.status, error.code
                )
                if target is not None and error.code == UNKNOWN_MESSAGE:
                    target = None  # the progress followup is gone: a new followup instead
                elif post.video is not None and (error.code == TOO_LARGE or error.status == 413):
                    posts.pop(0)  # the link card next
                else:
                    return None
        return None

    async def _notify_end_through_interaction(
        self, job: JobRow, content: str, embed: discord.Embed
    ) -> int | None:
        try:
            async with self._lane(job.id, "interaction"):
                message_id: int | None = await self.routes.post(
                    job.id, content=content, embed=embed, allowed_mentions=only_user(job.user_id)
                )
        except (RouteClosed, discord.HTTPException) as error:
            log.info(
                "job %s: cannot tell the end through the interaction (%r); the DM is next", job.id, error
            )
            text = f"{content}\n{self._dm_note(job)}"
            message_id = await self._direct_message(job, [_Post(content=text, embed=embed)])
        await self._close_progress(job)
        self.routes.forget(job.id)
        return message_id

    def _dm_note(self, job: JobRow) -> str:
        note = _("Discord no longer lets me answer your /animate where you used it, so here it is.")
        return render(note, self.routes.locale(job.id) or job_locale(self.client, job))

    async def _find_in_followup(self, job: JobRow) -> int | None:
        """The progress followup, if it already became the result card (read through the webhook while
        the token lives: a post whose answer was lost is found, not made twice)."""
        if job.progress_message_id is None or not self.routes.live(job.id):
            return None
        try:
            message = await self.routes.fetch(job.id, job.progress_message_id)
        except (RouteClosed, discord.HTTPException) as error:
            log.info("job %s: cannot read the progress followup (%r)", job.id, error)
            return None
        if message is not None and carries_mark(message, outcome_mark(job.id)):
            return message.id
        return None
