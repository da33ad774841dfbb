"""What /gallery, /history, /top and the weekly post show: embeds and their page buttons.

Page buttons carry everything in their `custom_id` (what is listed and which page), so they work after
a restart and after any timeout: `kling:gal:<sort>:<member or 0>:<page>`, `kling:hist:<page>`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.showcase import Period, clamped_page, job_settings_text, shows_nothing
from bot.store.jobs import JobRow
from bot.store.showcases import PAGE_SIZE, Showcase, Sort
from bot.text import escape_member_text
from cogs._ui import NO_MENTIONS

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)
Interaction = discord.Interaction[Any]

GALLERY_COLOUR = discord.Colour.gold()
PERIOD_TITLE: dict[Period, str] = {"week": "this week", "month": "this month", "all": "of all time"}
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
        title = f"Showcase #{showcase.id}"
    name = f"[{title}]({url})" if url else title
    lead = f"**{rank}.** " if rank is not None else ""
    when = f"<t:{int(showcase.created_at)}:R>"
    return f"{lead}{name} — <@{showcase.author_id}> · 👍 {showcase.vote_count} · {when}"


PageLook = dict[str, Any]


def page_buttons(
    prefix: str, page: int, pages: int, button: Callable[[int, str, PageLook], discord.ui.Item[Any]]
) -> discord.ui.View:
    """Previous, "page / pages", Next. Only shown: a press comes back to the button class the cog
    registered, by its custom_id (`<prefix>:<page>:p|n`; the indicator's `<prefix>:i` is never pressed)."""
    view = discord.ui.View(timeout=None)
    previous: PageLook = {"label": "Previous", "emoji": "◀️", "disabled": page <= 0}
    view.add_item(button(max(0, page - 1), "p", previous))
    view.add_item(discord.ui.Button(label=f"{page + 1} / {pages}", custom_id=f"{prefix}:i", disabled=True))
    following: PageLook = {"label": "Next", "emoji": "▶️", "disabled": page >= pages - 1}
    view.add_item(button(min(pages - 1, page + 1), "n", following))
    view.stop()
    return view


async def edit_page(interaction: Interaction, embed: discord.Embed, view: discord.ui.View) -> None:
    """Shows another page in the message whose button was pressed; a message deleted meanwhile is fine."""
    try:
        await interaction.edit_original_response(embed=embed, view=view, allowed_mentions=NO_MENTIONS)
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
        return cls(SORT_FROM_CODE[match["sort"]], int(match["member"]) or None, int(match["page"]))

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        await interaction.response.defer()
        if interaction.guild_id is None:
            return
        items, page, pages = await interaction.client.showcases.page(
            interaction.guild_id, sort=self.sort, page=self.page, author_id=self.member_id
        )
        embed, view = gallery_page(items, sort=self.sort, member_id=self.member_id, page=page, pages=pages)
        await edit_page(interaction, embed, view)


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
        return cls(int(match["page"]))

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        await interaction.response.defer()
        embed, view = await history_view(interaction.client, interaction.user.id, self.page)
        await edit_page(interaction, embed, view)


async def history_view(bot: KlingBot, user_id: int, page: int) -> tuple[discord.Embed, discord.ui.View]:
    jobs, page, pages = await clamped_page(
        lambda n: bot.job_store.history(user_id, offset=n * PAGE_SIZE, limit=PAGE_SIZE), page
    )
    return history_page(jobs, page=page, pages=pages)


def gallery_page(
    items: Sequence[Showcase], *, sort: Sort, member_id: int | None, page: int, pages: int
) -> tuple[discord.Embed, discord.ui.View]:
    whose = f" by <@{member_id}>" if member_id else ""
    order = "most voted" if sort == "votes" else "newest"
    embed = discord.Embed(title="Showcase gallery", colour=GALLERY_COLOUR)
    if items:
        start = page * 10
        embed.description = f"Showcased videos{whose}, {order} first.\n\n" + "\n".join(
            showcase_line(s, rank=start + i + 1) for i, s in enumerate(items)
        )
    else:
        embed.description = f"No showcased videos{whose} yet."

    def button(page: int, end: str, look: PageLook) -> GalleryButton:
        return GalleryButton(sort, member_id, page, end, look)

    return embed, page_buttons(GalleryButton.prefix(sort, member_id), page, pages, button)


DESCRIPTION_MAX = 4096  # Discord's limit for an embed's description


def _history_line(job: JobRow, *, links: bool = True) -> str:
    params = job.params
    icon = STATE_ICON.get(job.state, "⏳")
    settings = job_settings_text(job)
    cost = f"{job.cost_credits} credits" if job.state == "delivered" else "nothing charged"
    if job.state not in STATE_ICON:
        cost = f"{job.cost_credits} credits reserved"
    parts = [f"{icon} **job {job.id}** · {job.state}", settings, cost, f"<t:{int(job.created_at)}:R>"]
    line = " · ".join(parts) + f"\n  {_excerpt(str(params.get('prompt', '')), 70)}"
    if job.state == "delivered" and job.video_url:
        where = "" if job.result_message_id else " (could not be posted; this link may expire)"
        if links or not job.result_message_id:
            line += f"\n  [video]({job.video_url}){where}"
        else:
            line += "\n  video posted in its channel"
    elif job.error_message and job.state in ("failed", "cancelled", "uncertain"):
        line += f"\n  {_excerpt(job.error_message, 150)}"
    return line


def history_page(jobs: Sequence[JobRow], *, page: int, pages: int) -> tuple[discord.Embed, discord.ui.View]:
    embed = discord.Embed(title="Your videos", colour=GALLERY_COLOUR)
    text = "\n".join(_history_line(job) for job in jobs)
    if len(text) > DESCRIPTION_MAX:
        # Very long links: keep only those of videos that could not be posted (their only copy).
        text = "\n".join(_history_line(job, links=False) for job in jobs)
        if len(text) > DESCRIPTION_MAX:
            text = text[: DESCRIPTION_MAX - 1].rsplit("\n", 1)[0] + "\n…"
    embed.description = text if jobs else "You have no videos yet."
    return embed, page_buttons(HistoryButton.PREFIX, page, pages, HistoryButton)


def top_embed(
    period: Period, showcases: Sequence[Showcase], creators: Sequence[tuple[int, int, int]]
) -> discord.Embed:
    embed = discord.Embed(title=f"Top videos {PERIOD_TITLE[period]}", colour=GALLERY_COLOUR)
    embed.description = (
        "\n".join(showcase_line(s, rank=i + 1) for i, s in enumerate(showcases))
        if showcases
        else "No showcased videos in this period yet."
    )
    if creators:
        embed.add_field(
            name="Most active creators",
            value="\n".join(
                f"**{i + 1}.** <@{user}> — {videos} video{'s' if videos != 1 else ''} · 👍 {votes}"
                for i, (user, videos, votes) in enumerate(creators)
            ),
            inline=False,
        )
    return embed
