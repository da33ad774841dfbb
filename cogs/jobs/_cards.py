"""A job's messages as Components V2 cards (discord.py's LayoutView): the progress card with its Cancel
button, and the result card whose media gallery plays the uploaded video inline.

A V2 message carries no `content` and no embeds, so the job's mark (how a restarted bot recognises its
posts) is the card's last line, a small-print text display. Limits from Discord's reference
(https://discord.com/developers/docs/components/reference): at most 40 components and 4,000 characters
of text displays per message; a link button's URL at most 512 characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import discord

from bot.i18n import _, _n, render
from bot.request import AnimateRequest
from bot.store.jobs import JobRow
from cogs._buttons import ShowcaseLook
from cogs._text import clip, escape_member_text
from cogs.jobs._cancel import CancelButton
from cogs.jobs._results import DeleteButton, ExtendButton, RemixButton, RetryButton

EMBED_COLOUR = discord.Colour(0x5865F2)
FAILED_COLOUR = discord.Colour(0xED4245)
DONE_COLOUR = discord.Colour(0x57F287)
LINK_BUTTON_URL_LIMIT = 512
TEXT_DISPLAY_TOTAL = 4000
# The prompt takes what the card's other lines leave, and never more than this (a card, not a page).
PROMPT_SHOWN = 1500
MARK_PREFIX = "-# "


def job_mark(job_id: int) -> str:
    """The mark every message about a job carries; also how a restarted bot recognises its posts."""
    return f"Kling 2.6 Pro · job {job_id}"


def outcome_mark(job_id: int) -> str:
    """The mark of the one message that ends a job (video or failure); the progress message has
    `job_mark` alone, so the two are never confused."""
    return f"{job_mark(job_id)} · final"


def video_filename(job_id: int) -> str:
    return f"kling-{job_id}.mp4"


class Card(discord.ui.LayoutView):
    """A layout that is only shown: a press comes back by its custom_id to the DynamicItem its cog
    registered. Stopped at once, so discord.py does not also keep it (and run a callback twice)."""

    def __init__(self, *items: discord.ui.Item[Any]) -> None:
        super().__init__(timeout=None)
        for item in items:
            self.add_item(item)
        self.stop()


def result_buttons(job: JobRow, locale: object = None) -> list[discord.ui.Item[Any]]:
    """Retry / Remix / Extend / Showcase / Delete, labelled in `locale`'s language: each a DynamicItem
    registered by its cog, so it works after restarts. Showcase only where there is a server to showcase
    in."""
    kinds = (RetryButton, RemixButton, ExtendButton, ShowcaseLook, DeleteButton)
    return [
        kind(job.id, locale=locale) for kind in kinds if kind is not ShowcaseLook or job.guild_id is not None
    ]


def _prompt_text(request: AnimateRequest, others: Iterable[str]) -> str:
    room = TEXT_DISPLAY_TOTAL - sum(len(text) for text in others) - 16
    return clip(escape_member_text(request.prompt), max(1, min(PROMPT_SHOWN, room)))


def _mark(text: str) -> discord.ui.TextDisplay[Any]:
    return discord.ui.TextDisplay(MARK_PREFIX + text)


def progress_card(
    job: JobRow,
    request: AnimateRequest,
    status: str,
    *,
    colour: discord.Colour,
    cancel: bool,
    locale: object = None,
) -> Card:
    """The progress message: prompt, requester (named, never pinged: NO_MENTIONS), settings, the video
    it continues, the status line, the start picture, and the Cancel button while it may be pressed.
    Its sentences are in `locale`'s language (the job's: see `JobRow.locale`; None: English)."""
    lines = [
        render(
            _(
                "**Requested by** {member} · **Settings** {settings}",
                member=f"<@{job.user_id}>",
                settings=request.describe_settings(),
            ),
            locale,
        )
    ]
    if request.extends_link:
        lines.append(render(_("**Continues** {link}", link=request.extends_link), locale))
    lines.append(render(_("**Status** {status}", status=status), locale))
    title = render(_("### Animating with Kling"), locale)
    prompt = _prompt_text(request, [title, *lines, job_mark(job.id)])
    head: discord.ui.Item[Any] = discord.ui.TextDisplay(f"{title}\n{prompt}")
    if job.start_image_url and len(job.start_image_url) <= 2048:
        head = discord.ui.Section(head, accessory=discord.ui.Thumbnail(job.start_image_url))
    items: list[discord.ui.Item[Any]] = [head, discord.ui.TextDisplay("\n".join(lines))]
    if cancel:
        items.append(discord.ui.ActionRow(CancelButton(job.id, locale=locale)))
    items.append(_mark(job_mark(job.id)))
    return Card(discord.ui.Container(*items, accent_colour=colour))


def facts_line(job: JobRow, request: AnimateRequest) -> str:
    voices = len(request.voice_ids)
    return _(
        "**Duration** {seconds} s · **Sound** {sound} · **Voices** {voices} · **Cost** {cost}",
        seconds=request.duration,
        sound=_("on") if request.audio else _("off"),
        voices=voices or _("none"),
        cost=_n(job.cost_credits, "{n} credit", "{n} credits"),
    )


def result_card(
    job: JobRow,
    *,
    filename: str | None,
    reencoded: bool = False,
    note: str = "",
    locale: object = None,
) -> Card:
    """The finished video: played inline from `attachment://filename` when a file is uploaded, else the
    API's link (a link button when it has at most 512 characters, else the link in text, else a
    sentence). `note` is a line of its own (where the card went instead of the channel). Public, so its
    sentences are in `locale`'s language (the job's: see `JobRow.locale`; None: English)."""
    request = AnimateRequest.model_validate(job.params)
    link = job.video_url or ""
    lines = [render(facts_line(job, request), locale)]
    if request.extends_link:
        lines.append(render(_("**Continues** {link}", link=request.extends_link), locale))
    link_line = ""
    if filename is None:
        link_line = render(
            _("The video is too large to upload here; open it with its link (the link expires)."), locale
        )
    elif reencoded:
        link_line = render(
            _("Re-encoded to fit this upload limit; the original is at its link (the link expires)."), locale
        )
    button_link = bool(link_line) and 0 < len(link) <= LINK_BUTTON_URL_LIMIT
    if link_line and not button_link:
        budget = TEXT_DISPLAY_TOTAL - 400 - sum(len(line) for line in lines)
        too_long = render(_("The link is too long to show here."), locale)
        link_line += f"\n{link}" if link and len(link) <= budget else f"\n{too_long}"
    note = render(note, locale)
    header = render(_("🎬 {member} your video is ready!", member=f"<@{job.user_id}>"), locale)
    texts = [header, *lines, link_line, note, outcome_mark(job.id)]
    prompt = _prompt_text(request, texts)
    items: list[discord.ui.Item[Any]] = [discord.ui.TextDisplay(f"{header}\n{prompt}")]
    if filename is not None:
        items.append(discord.ui.MediaGallery(discord.MediaGalleryItem(f"attachment://{filename}")))
    items.append(discord.ui.TextDisplay("\n".join(lines)))
    if link_line:
        items.append(discord.ui.TextDisplay(link_line))
    if note:
        items.append(discord.ui.TextDisplay(note))
    items.append(discord.ui.Separator())
    items.append(discord.ui.ActionRow(*result_buttons(job, locale)))
    if button_link:
        label = render(_("Original video") if reencoded else _("Open the video"), locale)
        items.append(discord.ui.ActionRow(discord.ui.Button(label=label, url=link)))
    items.append(_mark(outcome_mark(job.id)))
    return Card(discord.ui.Container(*items, accent_colour=DONE_COLOUR))


def _texts(components: Iterable[Any]) -> Iterator[str]:
    for component in components:
        content = getattr(component, "content", None)
        if isinstance(content, str):
            yield content
        yield from _texts(getattr(component, "children", ()) or ())
        accessory = getattr(component, "accessory", None)
        if accessory is not None:
            yield from _texts((accessory,))


def carries_mark(message: discord.Message, mark: str) -> bool:
    """Whether the message carries `mark`: as a card's small-print line, or (posts from before cards)
    as an embed footer."""
    if any(embed.footer.text == mark for embed in message.embeds):
        return True
    line = MARK_PREFIX + mark
    return any(text == line or text.endswith("\n" + line) for text in _texts(message.components))
