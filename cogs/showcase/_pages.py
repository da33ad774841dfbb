"""What /gallery, /history, /top and the weekly post show: embeds and their page buttons.

Page buttons carry everything in their `custom_id` (what is listed and which page), so they work after
a restart and after any timeout: `kling:gal:<sort>:<member or 0>:<page>`, `kling:hist:<page>`.
"""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.showcase import Period, job_settings_text, shows_nothing
from bot.store.jobs import JobRow
from bot.store.showcases import Showcase, Sort

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
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


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


def page_buttons(prefix: str, page: int, pages: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(
        discord.ui.Button(
            label="Previous", emoji="◀️", custom_id=f"{prefix}:{max(0, page - 1)}:p", disabled=page <= 0
        )
    )
    view.add_item(discord.ui.Button(label=f"{page + 1} / {pages}", custom_id=f"{prefix}:i", disabled=True))
    view.add_item(
        discord.ui.Button(
            label="Next",
            emoji="▶️",
            custom_id=f"{prefix}:{min(pages - 1, page + 1)}:n",
            disabled=page >= pages - 1,
        )
    )
    return view


def gallery_prefix(sort: Sort, member_id: int | None) -> str:
    return f"kling:gal:{SORT_CODE[sort]}:{member_id or 0}"


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
    return embed, page_buttons(gallery_prefix(sort, member_id), page, pages)


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
    return embed, page_buttons("kling:hist", page, pages)


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
