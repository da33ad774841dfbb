"""The weekly post: the week's top videos, posted in each server's showcase channel (a text channel, or a
thread of a forum) at the hour its admins chose, once a week (`WeeklyPost`, run by ShowcaseCog).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord

from bot.i18n import _, render
from bot.showcase import ShowcaseService
from cogs._ui import NO_MENTIONS
from cogs.showcase._pages import showcase_media, top_view
from cogs.showcase._post import ShowcasePublisher, tag_problem

if TYPE_CHECKING:
    from bot.app import KlingBot

# The cog's logger, whichever of its modules logs (log lines keep their logger name).
log = logging.getLogger("cogs.showcase._cog")

WEEKLY_CHECK_SECONDS = 300.0


class WeeklyPost:
    """Posts the week's top videos in every server whose weekly post is due."""

    def __init__(self, bot: KlingBot, service: ShowcaseService, publisher: ShowcasePublisher) -> None:
        self.bot = bot
        self.service = service
        self.publisher = publisher

    async def run_forever(self) -> None:
        """Posts each server's weekly post when it is due, checking every WEEKLY_CHECK_SECONDS."""
        await self.bot.wait_until_ready()
        while True:
            try:
                await self.post_due()
            except Exception:
                log.exception("weekly showcase post failed")
            await asyncio.sleep(WEEKLY_CHECK_SECONDS)

    async def post_due(self) -> int:
        """Posts the week's top videos in every server whose weekly post is due; how many were posted. A
        week with nothing showcased posts nothing (and is done)."""
        done = 0
        for server in await self.service.weekly_due():
            assert server.channel_id is not None
            showcases = await self.service.top(server.guild_id, "week")
            if not showcases:
                log.info("guild %s: nothing showcased this week; no weekly post", server.guild_id)
                await self.service.weekly_done(server.guild_id)
                continue
            guild = self.bot.get_guild(server.guild_id)
            locale = guild.preferred_locale if guild is not None else None  # a public post
            view = top_view(
                "week",
                showcases,
                await self.service.top_creators(server.guild_id, "week"),
                await showcase_media(self.bot, showcases),
                locale=locale,
            )
            channel = self.bot.get_channel(server.channel_id)
            try:
                if isinstance(channel, discord.ForumChannel):
                    problem = tag_problem(channel, server, channel.guild.me)
                    if problem is not None:
                        log.warning("guild %s: no weekly post: %s", server.guild_id, problem)
                        await self.service.weekly_done(server.guild_id)
                        continue
                    await channel.create_thread(
                        name=render(_("Top videos of the week"), locale),
                        view=view,
                        allowed_mentions=NO_MENTIONS,
                        applied_tags=[t for t in [self.publisher.tag_for(channel, server)] if t is not None]
                        or discord.utils.MISSING,
                    )
                elif isinstance(channel, discord.TextChannel):
                    await channel.send(view=view, allowed_mentions=NO_MENTIONS)
                else:
                    continue
            except discord.HTTPException as error:
                log.warning("guild %s: weekly post refused (%s)", server.guild_id, error.code)
                continue
            await self.service.weekly_done(server.guild_id)
            done += 1
        return done
