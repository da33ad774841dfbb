"""What /gallery, /history, /top and the weekly post show: Components V2 messages whose media gallery
holds the page's videos (the Discord-hosted copy, read fresh from its post; the API's link for a video
never posted), each listed with its prompt, author and votes, and their page buttons. A video whose post
is gone is listed with a placeholder, never left as a broken tile.

Page buttons carry everything in their `custom_id` (what is listed and which page), so they work after
a restart and after any timeout: `kling:gal:<sort>:<member or 0>:<page>`, `kling:hist:<page>`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.i18n import _, _n, join, render, stored_sentence
from bot.showcase import Period, clamped_page, job_settings_text, shows_nothing
from bot.store.jobs import JobRow
from bot.store.showcases import PAGE_SIZE, Showcase, Sort
from cogs._text import escape_member_text
from cogs._ui import NO_MENTIONS, say_privately, stored_id

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)
Interaction = discord.Interaction[Any]

GALLERY_COLOUR = discord.Colour.gold()
PERIOD_TITLE: dict[Period, str] = {
    "week": _("## Top videos this week"),
    "month": _("## Top videos this month"),
    "all": _("## Top videos of all time"),
}
STATE_NAME: dict[str, str] = {
    "delivered": _("delivered"),
    "failed": _("failed"),
    "cancelled": _("cancelled"),
    "refused": _("refused"),
    "uncertain": _("uncertain"),
}
SORT_CODE: dict[Sort, str] = {"newest": "n", "votes": "v"}
SORT_FROM_CODE: dict[str, Sort] = {code: sort for sort, code in SORT_CODE.items()}
STATE_ICON = {
    "delivered": "✅",
    "failed": "❌",
    "cancelled": "🚫",
    "refused": "⛔",
    "uncertain": "❔",
}


def _excerpt(text: str, limit: int = 80) -> str:
    one_line = " ".join(text.split()).replace("[", "(").replace("]", ")")
    cut = one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"
    return escape_member_text(cut)


def jump_url(guild_id: int, showcase: Showcase) -> str | None:
    if showcase.channel_id is None or showcase.message_id is None:
        return None
    return f"https://discord.com/channels/{guild_id}/{showcase.channel_id}/{showcase.message_id}"


def showcase_line(showcase: Showcase, *, rank: int | None = None) -> str:
    url = jump_url(showcase.guild_id, showcase)
    title = _excerpt(showcase.prompt)
    if shows_nothing(title):
        title = _("Showcase #{id}", id=showcase.id)
    name = _("[{title}]({url})", title=title, url=url) if url else title
    lead = f"**{rank}.** " if rank is not None else ""
    when = f"<t:{int(showcase.created_at)}:R>"
    return join([lead, name, f" — <@{showcase.author_id}> · 👍 {showcase.vote_count} · {when}"], "")


PageLook = dict[str, Any]


def page_buttons(
    prefix: str,
    page: int,
    pages: int,
    button: Callable[[int, str, PageLook], discord.ui.Item[Any]],
    locale: object = None,
) -> discord.ui.ActionRow[discord.ui.LayoutView]:
    """Previous, "page / pages", Next, labelled in `locale`'s language. Only shown: a press comes back to
    the button class the cog registered, by its custom_id (`<prefix>:<page>:p|n`; the indicator's
    `<prefix>:i` is never pressed)."""
    row: discord.ui.ActionRow[discord.ui.LayoutView] = discord.ui.ActionRow()
    previous: PageLook = {"label": render(_("Previous"), locale), "emoji": "◀️", "disabled": page <= 0}
    row.add_item(button(max(0, page - 1), "p", previous))
    row.add_item(discord.ui.Button(label=f"{page + 1} / {pages}", custom_id=f"{prefix}:i", disabled=True))
    following: PageLook = {"label": render(_("Next"), locale), "emoji": "▶️", "disabled": page >= pages - 1}
    row.add_item(button(min(pages - 1, page + 1), "n", following))
    return row


# Room for the listed rows in a V2 message (Discord: 4,000 characters of text in all).
LIST_TEXT_MAX = 3400
GONE = _("🎞️ *video no longer available*")


def card(
    heading: str,
    rows: Sequence[str],
    media: Sequence[tuple[str, str]],
    buttons: discord.ui.ActionRow[discord.ui.LayoutView] | None = None,
    *,
    locale: object = None,
) -> discord.ui.LayoutView:
    """A page: the heading, a media gallery of (URL, caption) videos (at most 10), the listed rows (cut
    to fit Discord's text limit) and the page buttons, its sentences in `locale`'s language (a
    discord.Locale; None: English). Only shown: presses come back by custom_id."""
    view = discord.ui.LayoutView(timeout=None)
    box: discord.ui.Container[discord.ui.LayoutView] = discord.ui.Container(accent_colour=GALLERY_COLOUR)
    box.add_item(discord.ui.TextDisplay(render(heading, locale)))
    if media:
        box.add_item(
            discord.ui.MediaGallery(
                *(
                    discord.MediaGalleryItem(url, description=render(caption, locale)[:1024])
                    for url, caption in media[:10]
                )
            )
        )
    if rows:
        text = "\n".join(render(row, locale) for row in rows)
        if len(text) > LIST_TEXT_MAX:
            text = text[: LIST_TEXT_MAX - 1].rsplit("\n", 1)[0] + "\n…"
        box.add_item(discord.ui.TextDisplay(text))
    view.add_item(box)
    if buttons is not None:
        view.add_item(buttons)
    view.stop()
    return view


# A post read for its video is not read again for this long (Discord's signed attachment URLs last a day),
# so paging back and forth costs no further requests; at most this many posts are remembered.
HOSTED_TTL_SECONDS = 600.0
HOSTED_REMEMBERED = 2000
_hosted: dict[int, tuple[float, bool, str | None]] = {}


async def hosted_copy(client: discord.Client, channel_id: int, message_id: int) -> tuple[bool, str | None]:
    """(whether the post still exists, its first attachment's URL, fresh from Discord: the hosted copy
    outlives the API's link, and its signed URL is renewed each time the post is read)."""
    now = time.monotonic()
    known = _hosted.get(message_id)
    if known is not None and now - known[0] < HOSTED_TTL_SECONDS:
        return known[1], known[2]
    try:
        message = await client.get_partial_messageable(channel_id).fetch_message(message_id)
    except discord.HTTPException as error:
        log.info("message %s: not readable (%s)", message_id, error.code)
        found: tuple[bool, str | None] = (False, None)
        if error.status >= 500 or error.status == 429:
            return found  # Discord's trouble, not the post's: ask again next time
    else:
        found = (True, next((a.url for a in message.attachments), None))
    if len(_hosted) >= HOSTED_REMEMBERED:
        _hosted.clear()
    _hosted[message_id] = (now, *found)
    return found


def forget_hosted(message_id: int) -> None:
    """A post was deleted: its video is gone now, not in HOSTED_TTL_SECONDS."""
    _hosted.pop(message_id, None)


async def showcase_media(client: discord.Client, showcases: Sequence[Showcase]) -> dict[int, str | None]:
    """Each showcase's video URL now (None: its post and file are gone), read concurrently."""

    async def one(showcase: Showcase) -> str | None:
        if showcase.channel_id is None or showcase.message_id is None:
            return None
        exists, url = await hosted_copy(client, showcase.channel_id, showcase.message_id)
        return (url or showcase.video_url) if exists else None

    found = await asyncio.gather(*(one(s) for s in showcases))
    return {s.id: url for s, url in zip(showcases, found, strict=True)}


def _media_rows(
    showcases: Sequence[Showcase], media: dict[int, str | None], *, start: int
) -> tuple[list[str], list[tuple[str, str]]]:
    rows, tiles = [], []
    for n, showcase in enumerate(showcases):
        rank = start + n + 1
        url = media.get(showcase.id)
        line = showcase_line(showcase, rank=rank)
        if url:
            tiles.append(
                (url, f"{rank}. {' '.join(showcase.prompt.split())[:200]} · 👍 {showcase.vote_count}")
            )
        else:
            line = join([line, GONE], "\n  ")
        rows.append(line)
    return rows, tiles


async def edit_page(interaction: Interaction, view: discord.ui.LayoutView) -> None:
    """Shows another page in the message whose button was pressed; a message deleted meanwhile is fine."""
    try:
        await interaction.edit_original_response(view=view, allowed_mentions=NO_MENTIONS)
    except discord.NotFound:
        log.info("interaction %s: the paged message is gone", interaction.id)


class GalleryButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"kling:gal:(?P<sort>[nv]):(?P<member>\d+):(?P<page>\d+):[pn]",
):
    """A page of /gallery: `kling:gal:<sort>:<member or 0>:<page>:<p|n>`."""

    def __init__(
        self, sort: Sort, member_id: int | None, page: int, end: str = "n", look: PageLook | None = None
    ) -> None:
        look = look or {"label": "Page"}
        custom_id = f"{self.prefix(sort, member_id)}:{page}:{end}"
        super().__init__(discord.ui.Button(custom_id=custom_id, **look))
        self.sort, self.member_id, self.page = sort, member_id, page

    @staticmethod
    def prefix(sort: Sort, member_id: int | None) -> str:
        return f"kling:gal:{SORT_CODE[sort]}:{member_id or 0}"

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> GalleryButton:
        return cls(
            SORT_FROM_CODE[match["sort"]], stored_id(match["member"]) or None, stored_id(match["page"])
        )

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        if interaction.guild_id is None:
            await say_privately(interaction, _("This works only in a server channel."))
            return
        await interaction.response.defer()
        view = await gallery_view(
            interaction.client,
            interaction.guild_id,
            sort=self.sort,
            member_id=self.member_id,
            page=self.page,
            locale=interaction.locale,
        )
        await edit_page(interaction, view)


class HistoryButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"kling:hist:(?P<page>\d+):[pn]"
):
    """A page of /history: `kling:hist:<page>:<p|n>`; it lists the presser's own jobs, whoever's message
    the button is on."""

    PREFIX = "kling:hist"

    def __init__(self, page: int, end: str = "n", look: PageLook | None = None) -> None:
        look = look or {"label": "Page"}
        super().__init__(discord.ui.Button(custom_id=f"{self.PREFIX}:{page}:{end}", **look))
        self.page = page

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> HistoryButton:
        return cls(stored_id(match["page"]))

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        await interaction.response.defer()
        view = await history_view(
            interaction.client, interaction.user.id, self.page, locale=interaction.locale
        )
        await edit_page(interaction, view)


async def gallery_view(
    bot: KlingBot, guild_id: int, *, sort: Sort, member_id: int | None, page: int, locale: object = None
) -> discord.ui.LayoutView:
    items, page, pages = await bot.showcases.page(guild_id, sort=sort, page=page, author_id=member_id)
    media = await showcase_media(bot, items)
    return gallery_page(items, media, sort=sort, member_id=member_id, page=page, pages=pages, locale=locale)


async def history_view(
    bot: KlingBot, user_id: int, page: int, *, locale: object = None
) -> discord.ui.LayoutView:
    jobs, page, pages = await clamped_page(
        lambda n: bot.job_store.history(user_id, offset=n * PAGE_SIZE, limit=PAGE_SIZE), page
    )
    return history_page(jobs, await job_media(bot, jobs), page=page, pages=pages, locale=locale)


async def job_media(client: discord.Client, jobs: Sequence[JobRow]) -> dict[int, tuple[bool, str | None]]:
    """Each delivered job's video now: (whether its post exists, the URL to show). A posted video shows
    the Discord-hosted copy (the API's link expires); one never posted shows the API's link."""

    async def one(job: JobRow) -> tuple[bool, str | None]:
        if job.result_message_id is None:
            return False, job.video_url
        exists, url = await hosted_copy(client, job.channel_id, job.result_message_id)
        return exists, url

    delivered = [j for j in jobs if j.state == "delivered"]
    found = await asyncio.gather(*(one(j) for j in delivered))
    return {j.id: f for j, f in zip(delivered, found, strict=True)}


def gallery_page(
    items: Sequence[Showcase],
    media: dict[int, str | None],
    *,
    sort: Sort,
    member_id: int | None,
    page: int,
    pages: int,
    locale: object = None,
) -> discord.ui.LayoutView:
    member = f"<@{member_id}>"
    if not items:
        heading = (
            _("## Showcase gallery\nNo showcased videos by {member} yet.", member=member)
            if member_id
            else _("## Showcase gallery\nNo showcased videos yet.")
        )
    elif sort == "votes":
        heading = (
            _("## Showcase gallery\nShowcased videos by {member}, most voted first.", member=member)
            if member_id
            else _("## Showcase gallery\nShowcased videos, most voted first.")
        )
    else:
        heading = (
            _("## Showcase gallery\nShowcased videos by {member}, newest first.", member=member)
            if member_id
            else _("## Showcase gallery\nShowcased videos, newest first.")
        )
    rows, tiles = _media_rows(items, media, start=page * PAGE_SIZE)

    def button(page: int, end: str, look: PageLook) -> GalleryButton:
        return GalleryButton(sort, member_id, page, end, look)

    buttons = page_buttons(GalleryButton.prefix(sort, member_id), page, pages, button, locale)
    return card(heading, rows, tiles, buttons, locale=locale)


def _history_line(job: JobRow, found: tuple[bool, str | None] | None, locale: object = None) -> str:
    params = job.params
    icon = STATE_ICON.get(job.state, "⏳")
    settings = job_settings_text(job)
    cost: str = _n(job.cost_credits, "{n} credit", "{n} credits")
    if job.state != "delivered":
        cost = _("nothing charged")
    if job.state not in STATE_ICON:
        cost = _("{credits} reserved", credits=_n(job.cost_credits, "{n} credit", "{n} credits"))
    state = STATE_NAME.get(job.state, job.state)
    head = _("{icon} **job {id}** · {state}", icon=icon, id=job.id, state=state)
    parts: list[str] = [head, settings, cost, f"<t:{int(job.created_at)}:R>"]
    lines: list[str] = [join(parts, " · "), _excerpt(str(params.get("prompt", "")), 70)]
    if job.state == "delivered" and found is not None:
        posted, url = found
        if posted and job.guild_id is not None and job.result_message_id is not None:
            post = f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.result_message_id}"
            lines.append(_("[its post]({url})", url=post))
        elif job.result_message_id is None and url:
            lines.append(_("[video]({url}) (could not be posted; this link may expire)", url=url))
        elif not posted:
            lines.append(GONE)
    elif job.error_message and job.state in ("failed", "cancelled", "uncertain"):
        # Stored in English when the job ended; read back into the reader's language, then cut and escaped.
        lines.append(_excerpt(render(stored_sentence(job.error_message), locale), 150))
    return join(lines, "\n  ")


def history_page(
    jobs: Sequence[JobRow],
    media: dict[int, tuple[bool, str | None]],
    *,
    page: int,
    pages: int,
    locale: object = None,
) -> discord.ui.LayoutView:
    rows = [_history_line(job, media.get(job.id), locale) for job in jobs]
    tiles = [
        (
            url,
            _(
                "job {id} · {prompt}",
                id=job.id,
                prompt=" ".join(str(job.params.get("prompt", "")).split())[:200],
            ),
        )
        for job in jobs
        for _posted, url in [media.get(job.id, (False, None))]
        if url
    ]
    heading = _("## Your videos") if jobs else _("## Your videos\nYou have no videos yet.")
    buttons = page_buttons(HistoryButton.PREFIX, page, pages, HistoryButton, locale)
    return card(heading, rows, tiles, buttons, locale=locale)


def top_view(
    period: Period,
    showcases: Sequence[Showcase],
    creators: Sequence[tuple[int, int, int]],
    media: dict[int, str | None],
    *,
    locale: object = None,
) -> discord.ui.LayoutView:
    """The top videos and creators; public when posted weekly (then `locale` is the server's)."""
    heading = PERIOD_TITLE[period]
    if not showcases:
        heading = join([heading, _("No showcased videos in this period yet.")])
    rows, tiles = _media_rows(showcases, media, start=0)
    if creators:
        rows.append(join(["", _("**Most active creators**")]))
        rows.extend(
            join(
                [f"**{i + 1}.** <@{user}> — ", _n(videos, "{n} video", "{n} videos"), f" · 👍 {votes}"],
                "",
            )
            for i, (user, videos, votes) in enumerate(creators)
        )
    return card(heading, rows, tiles, locale=locale)
