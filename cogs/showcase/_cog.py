"""Community showcases: /showcase-admin (channel, remove, auto, weekly, blocklist), the Showcase and Vote
buttons, /showcase opt-out|opt-in, /gallery, /history and /top. Discord in, bot/ calls out; the rules live
in bot/showcase.py and bot/blocklist.py, the posts and Vote button in _post.py, the pages in _pages.py,
the weekly post in _weekly.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import discord
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from bot.blocklist import MAX_PATTERN
from bot.errors import InputRefused
from bot.i18n import _, join
from bot.showcase import Period, ShowcaseService, VoteLabels, audience_refusal
from bot.store.jobs import JobRow
from bot.store.showcases import Showcase, ShowcaseServer, Sort
from cogs._ui import NO_MENTIONS, ManagerGroup, reply, say_privately
from cogs.showcase._pages import (
    GalleryButton,
    HistoryButton,
    forget_hosted,
    gallery_view,
    history_view,
    showcase_media,
    top_view,
)
from cogs.showcase._post import (
    ShowcaseButton,
    ShowcasePublisher,
    VoteButton,
    audience_of,
    missing_permissions,
    tag_problem,
)
from cogs.showcase._weekly import WeeklyPost

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

Interaction = discord.Interaction[Any]
SET_CHANNEL_FIRST = _("Set the channel first: `/showcase-admin channel`.")
DAYS = [
    locale_str("Monday"),
    locale_str("Tuesday"),
    locale_str("Wednesday"),
    locale_str("Thursday"),
    locale_str("Friday"),
    locale_str("Saturday"),
    locale_str("Sunday"),
]
_MESSAGE_LINK = re.compile(r"/channels/\d+/(\d+)/(\d+)")
# A block-list entry as admins type it (Discord enforces the length).
Pattern = app_commands.Range[str, 1, MAX_PATTERN]
_SQLITE_MAX = 1 << 63  # a larger number is no id and cannot even be looked up


class ShowcaseCog(commands.Cog):
    admin = ManagerGroup(
        name="showcase-admin", description=locale_str("Showcase and moderation settings of this server")
    )
    blocklist = ManagerGroup(
        name="blocklist",
        description=locale_str("Words and phrases that prompts may not contain"),
        parent=admin,
    )
    member = app_commands.Group(
        name="showcase",
        description=locale_str("Your showcase preferences"),
        guild_only=True,
        allowed_contexts=app_commands.AppCommandContext(guild=True),
    )

    def __init__(self, bot: KlingBot) -> None:
        self.bot = bot
        self.service: ShowcaseService = bot.showcases
        self.publisher = ShowcasePublisher(bot)
        self.labels = VoteLabels(self.publisher.edit_votes, self.service.get)
        self._tasks: set[asyncio.Task[None]] = set()
        self.weekly_post = WeeklyPost(bot, self.service, self.publisher)
        self._weekly_task: asyncio.Task[None] | None = None
        self._started = bot.clock()  # the fleet's time, as the showcases' own

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ShowcaseButton, VoteButton, GalleryButton, HistoryButton)
        self.bot.runner.delivered_listeners.append(self._on_delivered)
        self._spawn(self.resume(), "showcase-resume")
        self._weekly_task = asyncio.create_task(self.weekly_post.run_forever(), name="showcase-weekly")

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ShowcaseButton, VoteButton, GalleryButton, HistoryButton)
        with contextlib.suppress(ValueError):
            self.bot.runner.delivered_listeners.remove(self._on_delivered)
        tasks = [t for t in (self._weekly_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.labels.close()

    def _spawn(self, work: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----- sharing ----------------------------------------------------------------------------------------

    async def share(self, job: JobRow, *, shared_by: str) -> Showcase:
        """Posts the job's video in the showcase channel (once); the showcase. Raises InputRefused with a
        sentence for the member: no channel, a forum whose tags the bot may not use, or a showcase
        channel with a wider audience than where the video was made."""
        if job.guild_id is not None:
            await self.check(job, await self.service.server(job.guild_id))
        showcase, new = await self.service.start(job, shared_by=shared_by)
        if not new:
            if showcase.message_id is None:
                raise InputRefused(_("This video is being showcased right now."))
            return showcase
        return await self._publish(showcase, job)

    async def check(self, job: JobRow, server: ShowcaseServer) -> None:
        """Raises InputRefused when the showcase channel may not take this video now."""
        channel = self.bot.get_channel(server.channel_id) if server.channel_id is not None else None
        if isinstance(channel, discord.ForumChannel):
            problem = tag_problem(channel, server, channel.guild.me)
            if problem is not None:
                raise InputRefused(_("{problem} Please tell a server admin.", problem=problem))
        if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
            return  # no channel yet (start() says so), or gone (the post says so)
        made_in = self.bot.get_channel(job.channel_id)
        if isinstance(made_in, discord.Thread):
            made_in = made_in.parent
        if not isinstance(made_in, discord.abc.GuildChannel) or made_in.guild.id != channel.guild.id:
            raise InputRefused(
                _(
                    "I can no longer see the channel this video was made in, so I can't tell who may see "
                    "it: it can't be showcased."
                )
            )
        refusal = audience_refusal(audience_of(made_in), audience_of(channel), channel.guild.id)
        if refusal is not None:
            raise InputRefused(refusal)

    async def _publish(self, showcase: Showcase, job: JobRow) -> Showcase:
        """The post and its record: one step that a restart completes (resume) if the process dies."""
        server = await self.service.server(showcase.guild_id)
        instance = await self.bot.job_store.get_meta("instance") or ""
        try:
            posted = await self.publisher.post(showcase, job, server, instance=instance)
        except (discord.HTTPException, LookupError) as error:
            await self.service.abandon(showcase)
            log.warning("showcase %s: post refused (%s)", showcase.id, error)
            raise InputRefused(
                _(
                    "I couldn't post in the showcase channel: it is gone, or I'm missing permissions there. "
                    "Please tell a server admin (`/showcase-admin channel` checks it)."
                )
            ) from error
        except (aiohttp.ClientError, OSError) as error:
            # No answer: the post may have landed all the same. Its mark says whether it did.
            log.warning("showcase %s: no answer to the post (%r); looking for it", showcase.id, error)
            landed = await self.publisher.find_post(showcase, server)
            if landed is None:
                await self.service.abandon(showcase)
                raise InputRefused(_("I couldn't reach Discord to post it. Please try again.")) from error
            posted = landed
        await self.service.posted(
            showcase, channel_id=posted.channel_id, message_id=posted.message_id, video_url=posted.video_url
        )
        stored = await self.service.get(showcase.id)
        assert stored is not None
        return stored

    async def resume(self) -> None:
        """After a restart: completes the showcases a previous process recorded but did not post or did
        not record as posted (looking for the post's mark first, so nothing is posted twice), then makes
        the auto-showcases it died before making."""
        await self.bot.wait_until_ready()
        # Only servers this process holds (its shards): another process of the fleet owns the others.
        for showcase in await self.service.unposted(before=self._started):
            if self.bot.get_guild(showcase.guild_id) is None:
                continue
            try:
                await self._complete(showcase)
            except Exception:
                log.exception("showcase %s: could not be completed after the restart", showcase.id)
        for job_id in await self.service.auto_due():
            job = await self.bot.job_store.get(job_id)
            if job is not None and job.guild_id is not None and self.bot.get_guild(job.guild_id) is not None:
                await self._auto_showcase(job_id)

    async def _complete(self, showcase: Showcase) -> None:
        """Records the showcase's post if a previous process made it, else posts it now (the channel may
        have changed meanwhile, so it is checked again)."""
        server = await self.service.server(showcase.guild_id)
        found = await self.publisher.find_post(showcase, server)
        if found is not None:
            await self.service.posted(
                showcase, channel_id=found.channel_id, message_id=found.message_id, video_url=found.video_url
            )
            log.info("showcase %s: its post was made before the restart; recorded", showcase.id)
            return
        job = await self.bot.job_store.get(showcase.job_id)
        try:
            if job is None:
                raise InputRefused(_("its video is no longer known"))
            await self.check(job, server)
            await self._publish(showcase, job)
        except InputRefused as refusal:
            await self.service.abandon(showcase)
            log.warning("showcase %s: not posted after the restart: %s", showcase.id, refusal.user_message)

    async def take_down_for_job(self, job_id: int) -> bool:
        """Takes down the job's showcase, if it has one (its member deleted the video); whether it had."""
        showcase = await self.service.for_job(job_id)
        if showcase is None:
            return False
        await self.publisher.take_down(showcase)
        return await self.service.remove(showcase)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        forget_hosted(payload.message_id)

    def _on_delivered(self, job_id: int) -> None:
        self._spawn(self._auto_showcase(job_id), f"auto-showcase-{job_id}")

    async def _auto_showcase(self, job_id: int) -> None:
        job = await self.bot.job_store.get(job_id)
        if job is None or not await self.service.auto_showcase_wanted(job):
            return
        try:
            await self.share(job, shared_by="auto")
        except InputRefused as refusal:
            # Never dropped silently: the operator's log says which video and why.
            log.warning("job %s: not auto-showcased: %s", job_id, refusal.user_message)

    # ----- /showcase-admin --------------------------------------------------------------------------------

    @admin.command(
        name="channel", description=locale_str("Where showcased videos go: a text, forum or media channel")
    )
    @app_commands.describe(
        channel=locale_str("A text channel, or a forum or media channel where each video becomes a post"),
        tag=locale_str("Forum only: the tag every post gets"),
    )
    async def channel(
        self,
        interaction: Interaction,
        channel: discord.TextChannel | discord.ForumChannel,
        tag: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        assert interaction.guild is not None
        resolved = interaction.guild.get_channel(channel.id)
        if isinstance(resolved, discord.TextChannel | discord.ForumChannel):
            channel = resolved  # the cached channel knows its overwrites and tags
        missing = missing_permissions(channel, interaction.guild.me)
        if missing:
            await reply(
                interaction,
                _(
                    "I can't post in {channel}: I'm missing {missing} there. "
                    "Please grant them and try again.",
                    channel=channel.mention,
                    missing=", ".join(missing),
                ),
            )
            return
        tag_id: int | None = None
        if tag is not None:
            if not isinstance(channel, discord.ForumChannel):
                await reply(
                    interaction, _("Tags are for forum channels; leave `tag` empty for a text channel.")
                )
                return
            found = next((t for t in channel.available_tags if t.name.casefold() == tag.casefold()), None)
            if found is None:
                names = ", ".join(t.name for t in channel.available_tags)
                await reply(
                    interaction,
                    _(
                        "{channel} has no tag named “{tag}”. Its tags: {names}.",
                        channel=channel.mention,
                        tag=tag,
                        names=names or _("none"),
                    ),
                )
                return
            tag_id = found.id
        if isinstance(channel, discord.ForumChannel):
            wanted = ShowcaseServer(interaction.guild.id, channel.id, tag_id, False, False, 0, 18, None)
            problem = tag_problem(channel, wanted, interaction.guild.me)
            if problem is not None:
                await reply(interaction, _("{problem} Nothing was changed.", problem=problem))
                return
        await self.service.configure(interaction.guild.id, channel_id=channel.id, forum_tag_id=tag_id)
        text = _("Showcased videos go to {channel}.", channel=channel.mention)
        if isinstance(channel, discord.ForumChannel):
            chosen = self.publisher.tag_for(channel, await self.service.server(interaction.guild.id))
            text = (
                _(
                    "Each showcased video becomes a post in {channel} with the tag “{tag}”.",
                    channel=channel.mention,
                    tag=chosen.name,
                )
                if chosen is not None
                else _("Each showcased video becomes a post in {channel}.", channel=channel.mention)
            )
        await reply(interaction, text)

    @channel.autocomplete("tag")
    async def tag_choices(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        picked = getattr(interaction.namespace, "channel", None)
        forum = interaction.guild.get_channel(picked.id) if picked is not None and interaction.guild else None
        if not isinstance(forum, discord.ForumChannel):
            return []
        needle = current.casefold()
        return [
            app_commands.Choice(name=t.name, value=t.name)
            for t in forum.available_tags
            if needle in t.name.casefold()
        ][:25]

    @admin.command(name="remove", description=locale_str("Take a showcased video down"))
    @app_commands.describe(post=locale_str("The showcase post's link or message id, or its number (#12)"))
    async def remove_showcase(self, interaction: Interaction, post: app_commands.Range[str, 1, 200]) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        showcase = await self.service.find(interaction.guild_id, **parse_post_reference(post))
        if showcase is None:
            await say_privately(
                interaction, _("I found no showcase for that link, id or number in this server.")
            )
            return
        await self.publisher.take_down(showcase)
        await self.service.remove(showcase)
        await say_privately(
            interaction, _("Showcase #{id} was taken down; its votes are kept.", id=showcase.id)
        )

    @admin.command(name="auto", description=locale_str("Showcase every finished video (members may opt out)"))
    @app_commands.describe(
        enabled=locale_str("On: every finished video is showcased unless its member opted out")
    )
    async def auto(self, interaction: Interaction, enabled: bool) -> None:
        assert interaction.guild_id is not None
        server = await self.service.configure(interaction.guild_id, auto=enabled)
        text = _(
            "Every finished video is now showcased, except those of members who opted out with "
            "`/showcase opt-out`."
        )
        if not enabled:
            text = _("Videos are showcased only when their member presses **Showcase**.")
        elif server.channel_id is None:
            text = join([text, SET_CHANNEL_FIRST], " ")
        await reply(interaction, text)

    @admin.command(
        name="weekly", description=locale_str("Post the week's top videos in the showcase channel")
    )
    @app_commands.describe(
        enabled=locale_str("Post every week"),
        day=locale_str("Which day (UTC)"),
        hour=locale_str("At what hour (0-23, UTC)"),
    )
    @app_commands.choices(day=[app_commands.Choice(name=d, value=i) for i, d in enumerate(DAYS)])
    async def weekly(
        self,
        interaction: Interaction,
        enabled: bool,
        day: int = 0,
        hour: app_commands.Range[int, 0, 23] = 18,
    ) -> None:
        assert interaction.guild_id is not None
        server = await self.service.configure(
            interaction.guild_id, weekly_post=enabled, weekly_day=day, weekly_hour=hour
        )
        if not enabled:
            await reply(interaction, _("No weekly post."))
            return
        text = _(
            "The week's top videos will be posted every {day} at {hour}:00 UTC.",
            day=_(DAYS[day].message),
            hour=f"{hour:02d}",
        )
        await reply(
            interaction, text if server.channel_id is not None else join([text, SET_CHANNEL_FIRST], " ")
        )

    # ----- /showcase-admin blocklist ----------------------------------------------------------------------

    @blocklist.command(
        name="add", description=locale_str("Refuse prompts with this word or phrase (* and ? wildcards)")
    )
    @app_commands.describe(
        word=locale_str("A whole word or phrase; * is any run of letters, ? one letter (gor* → gory)")
    )
    async def block_word(self, interaction: Interaction, word: Pattern) -> None:
        assert interaction.guild_id is not None
        pattern, added = await self.bot.prompt_filter.add(
            interaction.guild_id, word, actor_id=interaction.user.id
        )
        text = (
            _("`{pattern}` is now refused in prompts.", pattern=pattern)
            if added
            else _("`{pattern}` was already on the block list.", pattern=pattern)
        )
        await reply(interaction, text)

    @blocklist.command(name="remove", description=locale_str("Allow a blocked word or phrase again"))
    @app_commands.describe(word=locale_str("The entry as the block list shows it"))
    async def unblock_word(self, interaction: Interaction, word: Pattern) -> None:
        assert interaction.guild_id is not None
        removed = await self.bot.prompt_filter.remove(
            interaction.guild_id, word, actor_id=interaction.user.id
        )
        shown = " ".join(word.split())
        text = (
            _("`{pattern}` is allowed in prompts again.", pattern=shown)
            if removed
            else _("`{pattern}` was not on the block list.", pattern=shown)
        )
        await reply(interaction, text)

    @unblock_word.autocomplete("word")
    async def remove_choices(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        needle = current.casefold()
        found = [
            p for p in await self.bot.prompt_filter.patterns(interaction.guild_id) if needle in p.casefold()
        ]
        return [app_commands.Choice(name=p, value=p) for p in found[:25]]

    @blocklist.command(name="list", description=locale_str("The words and phrases prompts may not contain"))
    async def list_patterns(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        patterns = await self.bot.prompt_filter.patterns(interaction.guild_id)
        if not patterns:
            await reply(interaction, _("The block list is empty: every prompt is allowed."))
            return
        shown = ", ".join(f"`{p}`" for p in patterns)
        if len(shown) > 1900:
            shown = shown[:1900].rsplit(",", 1)[0] + ", …"
        await reply(interaction, _("**Blocked in prompts ({n}):** {shown}", n=len(patterns), shown=shown))

    # ----- members ----------------------------------------------------------------------------------------

    @member.command(
        name="opt-out", description=locale_str("Keep your videos out of this server's auto-showcase")
    )
    async def opt_out(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await self.service.set_opt_out(interaction.guild_id, interaction.user.id, True)
        await reply(
            interaction,
            _("Your videos will not be showcased automatically here. You can still press **Showcase**."),
        )

    @member.command(
        name="opt-in", description=locale_str("Let this server's auto-showcase share your videos again")
    )
    async def opt_in(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await self.service.set_opt_out(interaction.guild_id, interaction.user.id, False)
        await reply(interaction, _("Your videos may be showcased automatically here again."))

    @app_commands.command(
        name="gallery", description=locale_str("Page through this server's showcased videos")
    )
    @app_commands.describe(
        sort=locale_str("Newest or most voted first"), member=locale_str("Only this member's videos")
    )
    @app_commands.choices(
        sort=[
            app_commands.Choice(name=locale_str("newest"), value="newest"),
            app_commands.Choice(name=locale_str("votes"), value="votes"),
        ]
    )
    @app_commands.guild_only()
    async def gallery(
        self,
        interaction: Interaction,
        sort: str = "newest",
        member: discord.Member | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        member_id = member.id if member is not None else None
        view = await gallery_view(
            self.bot,
            interaction.guild_id,
            sort=cast(Sort, sort),
            member_id=member_id,
            page=0,
            locale=interaction.locale,
        )
        await interaction.edit_original_response(view=view, allowed_mentions=NO_MENTIONS)

    @app_commands.command(
        name="history", description=locale_str("Your own videos: state, settings, cost and links")
    )
    async def history(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        view = await history_view(self.bot, interaction.user.id, 0, locale=interaction.locale)
        await interaction.edit_original_response(view=view, allowed_mentions=NO_MENTIONS)

    @app_commands.command(
        name="top", description=locale_str("The most voted videos and the most active creators")
    )
    @app_commands.describe(period=locale_str("This week, this month or all time"))
    @app_commands.choices(
        period=[
            app_commands.Choice(name=locale_str("week"), value="week"),
            app_commands.Choice(name=locale_str("month"), value="month"),
            app_commands.Choice(name=locale_str("all"), value="all"),
        ]
    )
    @app_commands.guild_only()
    async def top(self, interaction: Interaction, period: str = "week") -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        chosen = cast(Period, period)
        showcases = await self.service.top(interaction.guild_id, chosen)
        view = top_view(
            chosen,
            showcases,
            await self.service.top_creators(interaction.guild_id, chosen),
            await showcase_media(self.bot, showcases),
            locale=interaction.locale,
        )
        await interaction.edit_original_response(view=view, allowed_mentions=NO_MENTIONS)


def parse_post_reference(text: str) -> dict[str, int | None]:
    """A message link, a message id or a showcase number (#12) → find() arguments."""
    text = text.strip()
    nothing: dict[str, int | None] = {"message_id": None, "showcase_id": None}
    link = _MESSAGE_LINK.search(text)
    if link is not None:
        message_id = int(link.group(2))
        return {"message_id": message_id, "showcase_id": None} if message_id < _SQLITE_MAX else nothing
    digits = text.lstrip("#")
    # isdecimal, not isdigit: "²" and "①" are digits int() cannot read.
    if not digits.isdecimal() or int(digits) >= _SQLITE_MAX:
        return nothing
    number = int(digits)
    return {"message_id": number if number > 1 << 22 else None, "showcase_id": number}
