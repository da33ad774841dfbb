"""The Discord side of showcases: the post in a text, forum or media channel, its Vote label, taking it
down, and finding a post a previous process made but did not record.

A post is a Components V2 card (discord.py's LayoutView): the video in a media gallery, the prompt, the
settings, the author (named, never pinged) and the Vote button with its count. The video is the
Discord-hosted copy from the job's result message (the API's links expire); when the result was only a
link, the card shows that link and says so. Posts made before the cards (an embed and a row of buttons)
keep their look: their Vote label is edited the old way.

The post carries its mark: the Vote button's custom_id (`kling:vote:<showcase id>`) and, in a text
channel, a nonce Discord enforces for a few minutes; after a crash `find_post` looks for it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.errors import InputRefused
from bot.i18n import _, render
from bot.invite import REQUIRED_PERMISSIONS, SHOWCASE_FORUM_PERMISSIONS
from bot.showcase import Audience, EditRefused, forum_title, shows_nothing
from bot.store.jobs import JobRow
from bot.store.showcases import Showcase, ShowcaseServer
from cogs._buttons import ShowcaseLook
from cogs._text import clip, escape_member_text
from cogs._ui import NO_MENTIONS, IdButton, say_privately

if TYPE_CHECKING:
    from cogs.showcase._cog import ShowcaseCog

log = logging.getLogger(__name__)

SHOWCASE_COLOUR = discord.Colour.gold()
# Discord's codes: edits to old messages capped (30046); unknown channel / message; a tag is required.
OLD_MESSAGE_EDITS = 30046
UNKNOWN_CHANNEL, UNKNOWN_MESSAGE, MISSING_ACCESS = 10003, 10008, 50001
TAG_REQUIRED = 40067
LINK_NOTE = _(" · the video was too large to upload here; its link may expire")

# What the bot needs in a showcase channel, by channel kind: a text channel's are /animate's own.
TEXT_PERMISSIONS = REQUIRED_PERMISSIONS
FORUM_PERMISSIONS = SHOWCASE_FORUM_PERMISSIONS


# Discord's limit on a V2 message's text (all text displays together), with room for the rest of the card.
CARD_PROMPT_LIMIT = 3000
# A restarted bot looks this far back in a text channel for a post it may already have made.
HISTORY_LOOKBACK = 100
CLOCK_SKEW_SECONDS = 60


def vote_label(count: int) -> str:
    return _("Vote ({count})", count=count)


def showcase_cog(interaction: discord.Interaction[Any]) -> ShowcaseCog:
    cog = interaction.client.get_cog("ShowcaseCog")
    assert type(cog).__name__ == "ShowcaseCog"
    return cast("ShowcaseCog", cog)


class VoteButton(IdButton, kind="vote"):
    """One vote per member (`kling:vote:<showcase id>`); pressing again takes it back. The label, with the
    count, catches up within seconds."""

    emoji, style = "👍", discord.ButtonStyle.primary

    def __init__(self, showcase_id: int, count: int = 0, *, locale: object = None) -> None:
        super().__init__(showcase_id, label=vote_label(count), locale=locale)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        cog = showcase_cog(interaction)
        showcase = await cog.service.get(self.number)
        if showcase is not None and showcase.guild_id != interaction.guild_id:
            await say_privately(interaction, _("This Vote button belongs to another server's showcase."))
            return
        result = await cog.service.vote(self.number, interaction.user.id)
        if result is None:
            await say_privately(interaction, _("This showcase was taken down, so it takes no votes."))
            return
        voted, count = result
        cog.labels.touch(self.number)
        text = (
            _("Your vote is counted ({count} in all). Press again to change your mind.", count=count)
            if voted
            else _("Your vote was taken back ({count} in all). Press again to change your mind.", count=count)
        )
        await say_privately(interaction, text)


class ShowcaseButton(ShowcaseLook):
    """Shares a finished video in the server's showcase channel: `kling:show:<job id>` (its look and id
    are ShowcaseLook's, which cogs/jobs/ shows under each video)."""

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await interaction.client.job_store.get(self.number)
        if job is None:
            await say_privately(interaction, _("I no longer know this video, so it cannot be showcased."))
            return
        if job.guild_id != interaction.guild_id:
            await say_privately(interaction, _("This Showcase button belongs to a video of another server."))
            return
        if interaction.user.id != job.user_id and not interaction.permissions.manage_messages:
            await say_privately(
                interaction, _("Only the member who made this video, or a moderator, can showcase it.")
            )
            return
        try:
            showcase = await showcase_cog(interaction).share(job, shared_by=str(interaction.user.id))
        except InputRefused as refusal:
            await say_privately(interaction, refusal.user_message)
            return
        where = f"<#{showcase.channel_id}>" if showcase.channel_id else _("the showcase channel")
        await say_privately(
            interaction,
            _(
                "Showcased in {where} as #{number}. Members can vote on it there.",
                where=where,
                number=showcase.id,
            ),
        )


class VoteView(discord.ui.View):
    """Only shown: a press comes back to the VoteButton the cog registered, by its custom_id."""

    def __init__(self, showcase_id: int, count: int, *, locale: object = None) -> None:
        super().__init__(timeout=None)
        self.add_item(VoteButton(showcase_id, count, locale=locale))
        self.stop()


def missing_permissions(channel: discord.TextChannel | discord.ForumChannel, me: discord.Member) -> list[str]:
    """The permissions the bot lacks in a showcase channel, as Discord's UI names them."""
    wanted = FORUM_PERMISSIONS if isinstance(channel, discord.ForumChannel) else TEXT_PERMISSIONS
    granted = channel.permissions_for(me)
    names = {"send_messages": "Create Posts"} if isinstance(channel, discord.ForumChannel) else {}
    return [
        names.get(name, name.replace("_", " ").title())
        for name, value in wanted
        if value and not getattr(granted, name)
    ]


def forum_tag(
    forum: discord.ForumChannel, chosen_id: int | None, me: discord.Member
) -> discord.ForumTag | None:
    """The tag a post gets: the admin's choice if it still exists; else, where the forum requires one, the
    first tag the bot may apply (moderated tags need Manage Threads)."""
    tags = list(forum.available_tags)
    if chosen_id is not None:
        for tag in tags:
            if tag.id == chosen_id:
                return tag
    if not forum.flags.require_tag:
        return None
    may_moderate = forum.permissions_for(me).manage_threads
    return next((tag for tag in tags if may_moderate or not tag.moderated), None)


def tag_problem(forum: discord.ForumChannel, server: ShowcaseServer, me: discord.Member) -> str | None:
    """Why a forum or media channel cannot take the bot's posts as its tags stand: it requires a tag
    and the bot may apply none (moderated tags need Manage Threads); None when it can."""
    if not forum.flags.require_tag:
        return None
    tag = forum_tag(forum, server.forum_tag_id, me)
    if tag is not None and (not tag.moderated or forum.permissions_for(me).manage_threads):
        return None
    return _(
        "{forum} requires a tag on every post, and the only tags there are ones only moderators may apply, "
        "so I can't post there. Add a tag anyone may use, or give me Manage Threads there.",
        forum=forum.mention,
    )


def audience_of(channel: discord.abc.GuildChannel) -> Audience:
    """Who may see the channel: its age restriction and the roles (@everyone included) that may view it."""
    nsfw = bool(getattr(channel, "nsfw", False))
    roles = frozenset(r.id for r in channel.guild.roles if channel.permissions_for(r).view_channel)
    return Audience(nsfw, roles)


def video_filename(job_id: int) -> str:
    return f"kling-{job_id}.mp4"


def showcase_card(
    showcase: Showcase, media_url: str | None, note: str = "", *, locale: object = None
) -> discord.ui.LayoutView:
    """The post: a container with the title and author, the video (`attachment://…` or a link), the
    prompt as typed (markdown and mentions escaped), the settings and the Vote button; public, so its
    sentences are in the server's language (`locale`: its preferred locale; None: English). Only shown:
    a press comes back to the VoteButton the cog registered, by its custom_id."""
    view = discord.ui.LayoutView(timeout=None)
    card: discord.ui.Container[discord.ui.LayoutView] = discord.ui.Container(accent_colour=SHOWCASE_COLOUR)
    title = _(
        "## 🏆 Showcase #{number}\n🎬 A video by {author}",
        number=showcase.id,
        author=f"<@{showcase.author_id}>",
    )
    card.add_item(discord.ui.TextDisplay(render(title, locale)))
    if media_url:
        card.add_item(discord.ui.MediaGallery(discord.MediaGalleryItem(media_url)))
    prompt = clip(escape_member_text(showcase.prompt), CARD_PROMPT_LIMIT)
    if not shows_nothing(prompt):
        card.add_item(discord.ui.TextDisplay(prompt))
    card.add_item(discord.ui.TextDisplay(f"-# {showcase.settings or '—'}{render(note, locale)}"))
    card.add_item(discord.ui.ActionRow(VoteButton(showcase.id, showcase.vote_count, locale=locale)))
    view.add_item(card)
    view.stop()
    return view


def showcase_nonce(showcase_id: int, instance: str) -> str:
    """≤ 25 characters; Discord answers a repeated nonce with the first message for a few minutes."""
    return f"ks{instance[:8]}{showcase_id}"[:25]


def custom_ids(components: Iterable[Any]) -> Iterator[str]:
    """Every custom_id in a message's components, however nested (V2 containers, sections, rows)."""
    for component in components:
        custom_id = getattr(component, "custom_id", None)
        if isinstance(custom_id, str):
            yield custom_id
        for attribute in ("children", "components"):
            yield from custom_ids(getattr(component, attribute, None) or [])
        accessory = getattr(component, "accessory", None)
        if accessory is not None:
            yield from custom_ids([accessory])


@dataclass(frozen=True, slots=True)
class Posted:
    channel_id: int  # the text channel, or the forum post's thread
    message_id: int
    video_url: str | None


class ShowcasePublisher:
    def __init__(self, client: discord.Client) -> None:
        self.client = client
        # showcase id → (a post from before the cards; else its card's media URL and note), learnt once.
        self._layouts: dict[int, tuple[bool, str | None, str]] = {}

    async def post(
        self, showcase: Showcase, job: JobRow, server: ShowcaseServer, *, instance: str = ""
    ) -> Posted:
        """Posts the showcase as a card. Raises discord.HTTPException when the channel refuses, and
        LookupError when the showcase channel no longer exists."""
        assert server.channel_id is not None
        channel = self.client.get_channel(server.channel_id)
        if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
            raise LookupError(
                "the showcase channel no longer exists or is not a text, forum or media channel"
            )
        file, video_url, note = await self._video(job, channel.guild.filesize_limit)
        media = f"attachment://{file.filename}" if file is not None else video_url
        view = showcase_card(showcase, media, note, locale=channel.guild.preferred_locale)
        try:
            if isinstance(channel, discord.ForumChannel):
                tag = forum_tag(channel, server.forum_tag_id, channel.guild.me)
                created = await channel.create_thread(
                    name=forum_title(
                        showcase.prompt,
                        fallback=render(_("Showcase #{id}", id=showcase.id), channel.guild.preferred_locale),
                    ),
                    file=file or discord.utils.MISSING,
                    view=view,
                    applied_tags=[tag] if tag is not None else discord.utils.MISSING,
                    allowed_mentions=NO_MENTIONS,
                )
                message = created.message
                where = created.thread.id
            else:
                message = await channel.send(
                    file=file or discord.utils.MISSING,
                    view=view,
                    allowed_mentions=NO_MENTIONS,
                    nonce=showcase_nonce(showcase.id, instance),
                )
                where = channel.id
        finally:
            if file is not None:
                file.close()
        self._layouts[showcase.id] = (False, media, note)
        return Posted(where, message.id, self.posted_url(message, video_url))

    @staticmethod
    def posted_url(message: discord.Message, fallback: str | None) -> str | None:
        return next((a.url for a in message.attachments), None) or fallback

    async def find_post(self, showcase: Showcase, server: ShowcaseServer) -> Posted | None:
        """The post a previous process made for this showcase but did not record, found by its mark (the
        Vote button's custom_id) among the bot's messages newer than the showcase; None when there is
        none (or the channel cannot be read)."""
        if server.channel_id is None:
            return None
        channel = self.client.get_channel(server.channel_id)
        mark = VoteButton(showcase.id).custom_id
        me = self.client.user
        after = discord.Object(
            discord.utils.time_snowflake(
                dt.datetime.fromtimestamp(showcase.created_at - CLOCK_SKEW_SECONDS, dt.UTC)
            )
        )
        try:
            if isinstance(channel, discord.ForumChannel):
                for thread in channel.threads:
                    if thread.owner_id != (me.id if me else None) or thread.id < after.id:
                        continue
                    first = await thread.fetch_message(thread.id)
                    if mark in custom_ids(first.components):
                        return Posted(thread.id, first.id, self.posted_url(first, None))
            elif isinstance(channel, discord.TextChannel):
                async for message in channel.history(limit=HISTORY_LOOKBACK, after=after, oldest_first=False):
                    if (
                        me is not None
                        and message.author.id == me.id
                        and mark in custom_ids(message.components)
                    ):
                        return Posted(channel.id, message.id, self.posted_url(message, None))
        except discord.HTTPException as error:
            log.info("showcase %s: cannot look for its post (%s)", showcase.id, error.code)
        return None

    async def _video(self, job: JobRow, limit: int) -> tuple[discord.File | None, str | None, str]:
        """The video from the job's result message: (the file to upload, else a link to show, a note)."""
        if job.result_message_id is not None:
            source = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            try:
                result = await source.fetch_message(job.result_message_id)
            except discord.HTTPException as error:
                log.info("job %s: result message not readable (%s)", job.id, error.code)
            else:
                for attachment in result.attachments:
                    if attachment.size <= limit:
                        return await attachment.to_file(filename=video_filename(job.id)), None, ""
                    return None, attachment.url, ""
        return None, job.video_url, LINK_NOTE

    async def edit_votes(self, showcase: Showcase) -> None:
        """Shows the stored count on the post's Vote button: a card is rebuilt whole (a V2 edit replaces
        every component), a post from before the cards gets its old row of buttons. Raises EditRefused
        when Discord refuses for now (30046, a rate limit); a deleted post, or one in a channel the bot
        can no longer see, is ignored (the vote is stored all the same)."""
        assert showcase.channel_id is not None and showcase.message_id is not None
        message = self.client.get_partial_messageable(showcase.channel_id).get_partial_message(
            showcase.message_id
        )
        try:
            if showcase.id not in self._layouts:
                self._layouts[showcase.id] = self._layout_of(showcase, await message.fetch())
            classic, media, note = self._layouts[showcase.id]
            guild = self.client.get_guild(showcase.guild_id)
            locale = guild.preferred_locale if guild is not None else None  # a public post
            if classic:
                await message.edit(view=VoteView(showcase.id, showcase.vote_count, locale=locale))
            else:
                view = showcase_card(showcase, media, note, locale=locale)
                await message.edit(view=view, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as error:
            if error.code in (UNKNOWN_CHANNEL, UNKNOWN_MESSAGE, MISSING_ACCESS) or error.status in (403, 404):
                log.info("showcase %s: its post is gone or out of reach (%s)", showcase.id, error.code)
                return
            if error.code == OLD_MESSAGE_EDITS or error.status == 429 or error.status >= 500:
                raise EditRefused(f"{error.status} {error.code}") from error
            raise

    @staticmethod
    def _layout_of(showcase: Showcase, message: discord.Message) -> tuple[bool, str | None, str]:
        """(whether the post is from before the cards; else the media URL its card shows, its note)."""
        if not message.flags.components_v2:
            return True, None, ""
        uploaded = video_filename(showcase.job_id)
        if any(a.filename == uploaded for a in message.attachments):
            return False, f"attachment://{uploaded}", ""
        return False, showcase.video_url, LINK_NOTE if showcase.video_url else ""

    def tag_for(self, forum: discord.ForumChannel, server: ShowcaseServer) -> discord.ForumTag | None:
        return forum_tag(forum, server.forum_tag_id, forum.guild.me)

    async def take_down(self, showcase: Showcase) -> None:
        """Deletes the post (a forum post, whose first message has its thread's id: the whole thread).
        Already gone is fine."""
        if showcase.channel_id is None or showcase.message_id is None:
            return
        try:
            if showcase.channel_id == showcase.message_id:
                await self.client.http.delete_channel(showcase.channel_id)
            else:
                await self.client.http.delete_message(showcase.channel_id, showcase.message_id)
        except discord.NotFound:
            pass
