"""Community showcases: the rules, without Discord (its side is cogs/showcase/).

A showcase is a finished video shared to the server's showcase channel (a text channel, or a forum where
each video becomes a post). Members vote on it, one vote each (a row per member; pressing again takes it
back); the post's Vote label shows the count read back from the store, edited at most once every
`VOTE_EDIT_SECONDS` per post, so a crowd of voters costs a handful of edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import ValidationError

from bot.blocklist import normalise
from bot.errors import InputRefused
from bot.i18n import _
from bot.request import AnimateRequest
from bot.store import showcases as sql
from bot.store.db import Database
from bot.store.jobs import JobRow
from bot.store.showcases import PAGE_SIZE, Showcase, ShowcaseServer, Sort

log = logging.getLogger(__name__)
T = TypeVar("T")

VOTE_EDIT_SECONDS = 5.0
# Discord caps edits of messages older than an hour (error 30046) and rate limits the rest: wait, then
# let the label catch up, up to this long between tries.
VOTE_RETRY_SECONDS = 60.0
VOTE_RETRY_MAX_SECONDS = 900.0
TITLE_MAX = 100
MAX_PAGE = 1_000_000_000
# Auto-showcases due when a process died are made after a restart within this long of the delivery.
AUTO_RESUME_SECONDS = 86_400.0
Period = Literal["week", "month", "all"]
PERIOD_DAYS: dict[Period, int | None] = {"week": 7, "month": 30, "all": None}

_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>|@(?:everyone|here)")
_MARKDOWN = re.compile(r"[*_`~|>#\[\]]")


def shows_nothing(text: str) -> bool:
    """Whether the text would be drawn as nothing: only spaces and invisible characters."""
    return not normalise(text).strip()


def forum_title(prompt: str, *, fallback: str) -> str:
    """A forum post's title from the start of the prompt: 1-100 characters, one line, no mentions or
    markdown; `fallback` when nothing is left."""
    text = _MENTION.sub(" ", prompt)
    # Again once the markdown is out: "@every*one" is "@everyone" without its "*".
    text = _MENTION.sub(" ", _MARKDOWN.sub("", text))
    text = " ".join(text.split())
    if len(text) > TITLE_MAX:
        cut = text[: TITLE_MAX - 1]
        if " " in cut[TITLE_MAX // 2 :]:
            cut = cut.rsplit(" ", 1)[0]
        text = cut.rstrip(" ,.;:-") + "…"
    return fallback[:TITLE_MAX] if shows_nothing(text) else text


@dataclass(frozen=True, slots=True)
class Audience:
    """Who may see a channel: whether it is age-restricted, and the server's roles (ids; the server's
    id is @everyone) whose members may view it."""

    nsfw: bool
    roles: frozenset[int]


def audience_refusal(made_in: Audience, showcase: Audience, everyone: int) -> str | None:
    """Why a video made in `made_in` may not be showcased in `showcase`, a channel with a wider
    audience (issue 18): age-restricted into not age-restricted, or into a channel some role sees that
    could not see where it was made; None when it may."""
    if made_in.nsfw and not showcase.nsfw:
        return _(
            "This video was made in an age-restricted channel, and the showcase channel is not "
            "age-restricted, so I can't showcase it there."
        )
    if showcase.roles - made_in.roles:
        if everyone in showcase.roles and everyone not in made_in.roles:
            return _(
                "This video was made in a channel not everyone here can see, and the showcase channel is "
                "open to everyone who could not see it there, so I can't showcase it."
            )
        return _(
            "This video was made in a channel not everyone here can see, and the showcase channel is open "
            "to members who could not see it there, so I can't showcase it."
        )
    return None


def period_start(period: Period, now: float) -> float | None:
    days = PERIOD_DAYS[period]
    return None if days is None else now - days * 86_400


def weekly_due(server: ShowcaseServer, now: float) -> bool:
    """Whether the weekly post is due: this week's slot (weekday and hour, UTC) has come and the last
    post was made before it."""
    if not server.weekly_post or server.channel_id is None:
        return False
    today = dt.datetime.fromtimestamp(now, dt.UTC)
    start_of_week = (today - dt.timedelta(days=today.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    slot = (start_of_week + dt.timedelta(days=server.weekly_day, hours=server.weekly_hour)).timestamp()
    if slot > now:
        slot -= 7 * 86_400
    return server.last_weekly is None or server.last_weekly < slot


def job_settings_text(job: JobRow) -> str:
    """The job's settings as /animate's progress message shows them ("5 s · audio · loop"); only shown,
    so a row the current model cannot read shows a dash rather than failing the page."""
    try:
        return AnimateRequest.model_validate(job.params).describe_settings()
    except ValidationError:
        return "—"


async def clamped_page(
    fetch: Callable[[int], Awaitable[tuple[list[T], int]]], page: int
) -> tuple[list[T], int, int]:
    """(the items on a 0-based page of PAGE_SIZE, the page actually shown, the number of pages), where
    `fetch(page)` gives that page's items and the total. A page past the end (items removed while paging)
    shows the last one."""
    # A page number from a custom_id can be anything: past MAX_PAGE it is past the end all the same, and
    # its offset (page × PAGE_SIZE) would not fit the database's integers.
    page = min(max(0, page), MAX_PAGE)
    items, total = await fetch(page)
    pages = max(1, -(-total // PAGE_SIZE))
    if page >= pages:
        page = pages - 1
        items, total = await fetch(page)
        pages = max(1, -(-total // PAGE_SIZE))
    return items, page, pages


class ShowcaseService:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    async def server(self, guild_id: int) -> ShowcaseServer:
        return await sql.server(self.db, guild_id)

    async def configure(self, guild_id: int, **values: object) -> ShowcaseServer:
        await sql.update_server(self.db, guild_id, dict(values), at=self._clock())
        return await self.server(guild_id)

    async def set_opt_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        await sql.set_opt_out(self.db, guild_id, user_id, opted_out, at=self._clock())

    async def auto_showcase_wanted(self, job: JobRow) -> bool:
        if job.guild_id is None or job.state != "delivered":
            return False
        server = await self.server(job.guild_id)
        if not server.auto or server.channel_id is None:
            return False
        return not await sql.opted_out(self.db, job.guild_id, job.user_id)

    async def start(self, job: JobRow, *, shared_by: str) -> tuple[Showcase, bool]:
        """Records the job's showcase (the post follows); (the showcase, whether it is new). Raises
        InputRefused when the job has no video or the server no showcase channel."""
        if job.guild_id is None:
            raise InputRefused(_("Videos made in DMs cannot be showcased."))
        if job.state != "delivered" or not job.video_url:
            raise InputRefused(_("Only a finished video can be showcased."))
        server = await self.server(job.guild_id)
        if server.channel_id is None:
            raise InputRefused(
                _(
                    "This server has no showcase channel yet. "
                    "An admin can set one with `/showcase-admin channel`."
                )
            )
        return await sql.create(
            self.db,
            guild_id=job.guild_id,
            job_id=job.id,
            author_id=job.user_id,
            shared_by=shared_by,
            prompt=str(job.params.get("prompt", "")),
            settings=job_settings_text(job),
            at=self._clock(),
        )

    async def posted(
        self, showcase: Showcase, *, channel_id: int, message_id: int, video_url: str | None
    ) -> None:
        await sql.set_posted(
            self.db, showcase.id, channel_id=channel_id, message_id=message_id, video_url=video_url
        )

    async def abandon(self, showcase: Showcase) -> None:
        """The post could not be made: the video may be showcased again later."""
        await sql.remove(self.db, showcase.id, at=self._clock())

    async def unposted(self, *, before: float) -> list[Showcase]:
        """Showcases recorded before `before` (this process's start) whose post was never recorded."""
        return await sql.unposted(self.db, before=before)

    async def auto_due(self) -> list[int]:
        """Jobs whose auto-showcase a process died before making, from the last AUTO_RESUME_SECONDS."""
        return await sql.auto_due(self.db, since=self._clock() - AUTO_RESUME_SECONDS)

    async def get(self, showcase_id: int) -> Showcase | None:
        return await sql.get(self.db, showcase_id)

    async def find(
        self, guild_id: int, *, showcase_id: int | None, message_id: int | None
    ) -> Showcase | None:
        if message_id is not None:
            found = await sql.by_message(self.db, guild_id, message_id)
            if found is not None:
                return found
        if showcase_id is not None:
            found = await sql.get(self.db, showcase_id)
            if found is not None and found.guild_id == guild_id and found.removed_at is None:
                return found
        return None

    async def for_job(self, job_id: int) -> Showcase | None:
        return await sql.by_job(self.db, job_id)

    async def remove(self, showcase: Showcase) -> bool:
        return await sql.remove(self.db, showcase.id, at=self._clock())

    async def vote(self, showcase_id: int, user_id: int) -> tuple[bool, int] | None:
        """(whether the member's vote now counts, the new count); None when the showcase is gone."""
        return await sql.toggle_vote(self.db, showcase_id, user_id, at=self._clock())

    async def page(
        self, guild_id: int, *, sort: Sort, page: int, author_id: int | None = None
    ) -> tuple[list[Showcase], int, int]:
        """(the showcases on the page, the page actually shown, the number of pages). A page past the end
        (a showcase removed while paging) shows the last one."""
        return await clamped_page(
            lambda n: sql.page(self.db, guild_id, sort=sort, page=n, author_id=author_id), page
        )

    async def top(self, guild_id: int, period: Period, *, limit: int = 10) -> list[Showcase]:
        return await sql.top_since(self.db, guild_id, period_start(period, self._clock()), limit=limit)

    async def top_creators(
        self, guild_id: int, period: Period, *, limit: int = 5
    ) -> list[tuple[int, int, int]]:
        return await sql.top_creators(self.db, guild_id, period_start(period, self._clock()), limit=limit)

    async def weekly_due(self) -> list[ShowcaseServer]:
        now = self._clock()
        return [s for s in await sql.servers_with_weekly_post(self.db) if weekly_due(s, now)]

    async def weekly_done(self, guild_id: int) -> None:
        await sql.set_last_weekly(self.db, guild_id, self._clock())


class EditRefused(Exception):
    """Discord refused an edit for now (30046 on an old message, or a rate limit): try again later."""


class VoteLabels:
    """Keeps each showcase's Vote label in step with the store, editing a post at most once every
    `interval` seconds however many members vote: presses only mark the post; the edit reads the count."""

    def __init__(
        self,
        edit: Callable[[Showcase], Awaitable[None]],
        load: Callable[[int], Awaitable[Showcase | None]],
        *,
        interval: float = VOTE_EDIT_SECONDS,
        retry: float = VOTE_RETRY_SECONDS,
        retry_max: float = VOTE_RETRY_MAX_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._edit = edit
        self._load = load
        self._interval = interval
        self._retry = retry
        self._retry_max = retry_max
        self._clock = clock
        self._last_edit: dict[int, float] = {}
        self._dirty: set[int] = set()
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def touch(self, showcase_id: int) -> None:
        """A vote changed: the label is brought up to date soon."""
        self._dirty.add(showcase_id)
        if showcase_id not in self._tasks:
            self._tasks[showcase_id] = asyncio.create_task(
                self._run(showcase_id), name=f"vote-label-{showcase_id}"
            )

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, showcase_id: int) -> None:
        pause = self._retry
        try:
            while showcase_id in self._dirty:
                wait = self._last_edit.get(showcase_id, -1e18) + self._interval - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._dirty.discard(showcase_id)
                showcase = await self._load(showcase_id)
                if showcase is None or showcase.removed_at is not None or showcase.message_id is None:
                    return
                try:
                    await self._edit(showcase)
                except EditRefused as refused:
                    # The vote is stored; only the label lags. Try again later, less and less often.
                    log.info("showcase %s: vote label not edited yet (%s)", showcase_id, refused)
                    self._dirty.add(showcase_id)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, self._retry_max)
                    continue
                self._last_edit[showcase_id] = self._clock()
                pause = self._retry
        except Exception:
            log.exception("showcase %s: vote label could not be updated", showcase_id)
        finally:
            with contextlib.suppress(KeyError):
                del self._tasks[showcase_id]
