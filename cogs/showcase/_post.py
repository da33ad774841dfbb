"""The Discord side of showcases: the post in a text or forum channel, its Vote label, taking it down.

The video is the Discord-hosted copy from the job's result message (the API's links expire); when the
result was only a link, the post links it and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.errors import InputRefused
from bot.i18n import _
from bot.invite import REQUIRED_PERMISSIONS, SHOWCASE_FORUM_PERMISSIONS
from bot.showcase import EditRefused, forum_title
from bot.store.jobs import JobRow
from bot.store.showcases import Showcase, ShowcaseServer
from bot.text import EMBED_DESCRIPTION_LIMIT, clip, escape_member_text
from cogs._ui import NO_MENTIONS, IdButton, say_privately

if TYPE_CHECKING:
    from cogs.showcase._cog import ShowcaseCog

log = logging.getLogger(__name__)

SHOWCASE_COLOUR = discord.Colour.gold()
# Discord's codes: edits to old messages capped (30046); unknown channel / message; a tag is required.
OLD_MESSAGE_EDITS = 30046
UNKNOWN_CHANNEL, UNKNOWN_MESSAGE = 10003, 10008
TAG_REQUIRED = 40067

# What the bot needs in a showcase channel, by channel kind: a text channel's are /animate's own.
TEXT_PERMISSIONS = REQUIRED_PERMISSIONS
FORUM_PERMISSIONS = SHOWCASE_FORUM_PERMISSIONS


def vote_label(count: int) -> str:
    return f"Vote ({count})"


def showcase_cog(interaction: discord.Interaction[Any]) -> ShowcaseCog:
    cog = interaction.client.get_cog("ShowcaseCog")
    assert type(cog).__name__ == "ShowcaseCog"
    return cast("ShowcaseCog", cog)


class VoteButton(IdButton, kind="vote"):
    """One vote per member (`kling:vote:<showcase id>`); pressing again takes it back. The label, with the
    count, catches up within seconds."""

    emoji, style = "👍", discord.ButtonStyle.primary

    def __init__(self, showcase_id: int, count: int = 0) -> None:
        super().__init__(showcase_id, label=vote_label(count))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        cog = showcase_cog(interaction)
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


class ShowcaseButton(IdButton, kind="show"):
    """Shares a finished video in the server's showcase channel: `kling:show:<job id>`."""

    label, emoji = "Showcase", "🏆"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await interaction.client.job_store.get(self.number)
        if job is None:
            await say_privately(interaction, _("I no longer know this video, so it cannot be showcased."))
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

    def __init__(self, showcase_id: int, count: int) -> None:
        super().__init__(timeout=None)
        self.add_item(VoteButton(showcase_id, count))
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


def showcase_embed(showcase: Showcase) -> discord.Embed:
    embed = discord.Embed(
        title=f"Showcase #{showcase.id}",
        description=clip(escape_member_text(showcase.prompt), EMBED_DESCRIPTION_LIMIT),
        colour=SHOWCASE_COLOUR,
    )
    embed.add_field(name="By", value=f"<@{showcase.author_id}>", inline=True)
    embed.add_field(name="Settings", value=showcase.settings or "—", inline=True)
    return embed


@dataclass(frozen=True, slots=True)
class Posted:
    channel_id: int  # the text channel, or the forum post's thread
    message_id: int
    video_url: str | None


class ShowcasePublisher:
    def __init__(self, client: discord.Client) -> None:
        self.client = client

    async def post(self, showcase: Showcase, job: JobRow, server: ShowcaseServer) -> Posted:
        """Posts the showcase. Raises discord.HTTPException when the channel refuses, and LookupError when
        the showcase channel no longer exists."""
        assert server.channel_id is not None
        channel = self.client.get_channel(server.channel_id)
        if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
            raise LookupError("the showcase channel no longer exists or is not a text or forum channel")
        file, video_url, note = await self._video(job, channel.guild.filesize_limit)
        content = f"🎬 A video by <@{showcase.author_id}>{note}"
        embed = showcase_embed(showcase)
        view = VoteView(showcase.id, showcase.vote_count)
        try:
            if isinstance(channel, discord.ForumChannel):
                tag = forum_tag(channel, server.forum_tag_id, channel.guild.me)
                created = await channel.create_thread(
                    name=forum_title(showcase.prompt, fallback=f"Showcase #{showcase.id}"),
                    content=content,
                    embed=embed,
                    file=file or discord.utils.MISSING,
                    view=view,
                    applied_tags=[tag] if tag is not None else discord.utils.MISSING,
                    allowed_mentions=NO_MENTIONS,
                )
                message = created.message
                where = created.thread.id
            else:
                message = await channel.send(
                    content,
                    embed=embed,
                    file=file or discord.utils.MISSING,
                    view=view,
                    allowed_mentions=NO_MENTIONS,
                )
                where = channel.id
        finally:
            if file is not None:
                file.close()
        posted_url = next((a.url for a in message.attachments), None) or video_url
        return Posted(where, message.id, posted_url)

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
                        return await attachment.to_file(filename=f"kling-{job.id}.mp4"), None, ""
                    return None, attachment.url, ""
        return None, job.video_url, "\n(The video was too large to upload here; its link may expire.)"

    async def edit_votes(self, showcase: Showcase) -> None:
        """Shows the stored count on the post's Vote button. Raises EditRefused when Discord refuses for
        now (30046, a rate limit); a deleted post is ignored."""
        assert showcase.channel_id is not None and showcase.message_id is not None
        message = self.client.get_partial_messageable(showcase.channel_id).get_partial_message(
            showcase.message_id
        )
        try:
            await message.edit(view=VoteView(showcase.id, showcase.vote_count))
        except discord.HTTPException as error:
            if error.code in (UNKNOWN_CHANNEL, UNKNOWN_MESSAGE):
                return
            if error.code == OLD_MESSAGE_EDITS or error.status == 429 or error.status >= 500:
                raise EditRefused(f"{error.status} {error.code}") from error
            raise

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
