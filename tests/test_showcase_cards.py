"""Showcases as Components V2 cards (issue 20), made once however the process dies (issue 19 item 8), the
failure kinds of issue 19 item 9, and where a video may be showcased (issue 18 items 2 and 3): through
discord.py, the fake Discord (which validates V2 payloads as Discord does) and restarts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.showcase import Audience, audience_refusal
from bot.store import showcases as sql
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.test_showcase import (
    ALICE,
    GUILD,
    admin,
    answer,
    button_labels,
    delivered_job,
    embed_answer,
    is_card,
    media_urls,
    press,
    set_channel,
    showcase_cog,
    text_of,
)
from tests.world import loosen_rate_limits, running_world

OTHER_GUILD = 1_300_000_000_000_000_001


def threads_of(fake: FakeDiscord, forum_id: int) -> list[dict[str, Any]]:
    return [c for c in fake.channels.values() if c.get("parent_id") == str(forum_id)]


async def showcase_world_setup(fake: FakeDiscord, *, forum: bool = False) -> int:
    loosen_rate_limits(fake)
    if forum:
        return int(fake.add_forum(GUILD, "gallery", tags=["video"])["id"])
    return int(fake.add_channel(GUILD, "showcase")["id"])


async def test_a_media_channel_takes_card_posts_whose_vote_label_keeps_up(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        media = fake.add_forum(GUILD, "clips", tags=["clip"], require_tag=True, media=True)
        media_id = int(media["id"])
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            assert await set_channel(world, media_id) == (
                f"Each showcased video becomes a post in <#{media_id}> with the tag “clip”."
            )
            job_id, result_id = await delivered_job(world, "a **bold** fox <@&123456789012345678>")
            assert (await press(world, f"kling:show:{job_id}", result_id)).startswith("Showcased in <#")
            [thread] = threads_of(fake, media_id)
            assert thread["applied_tags"] == [media["available_tags"][0]["id"]]
            post = fake.message(int(thread["id"])).message
            assert is_card(post) and media_urls(post) == [f"attachment://kling-{job_id}.mp4"]
            assert (
                "a \\*\\*bold\\*\\* fox <@\u200b&123456789012345678>" in text_of(post)
                and post["mention_roles"] == []
            )

            fake.ensure_member(GUILD, ALICE + 1)
            assert (await press(world, "kling:vote:1", int(thread["id"]), user_id=ALICE + 1)).startswith(
                "Your vote is counted (1 in all)"
            )
            await fake.wait_for(
                lambda: button_labels(fake.message(int(thread["id"])).message) == ["Vote (1)"]
            )
            edited = fake.message(int(thread["id"])).message
            assert is_card(edited) and media_urls(edited) == [f"attachment://kling-{job_id}.mp4"]
            assert edited["attachments"][0]["filename"] == f"kling-{job_id}.mp4"  # the video stays

        # After a restart the bot reads the post once to learn how its card shows the video.
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            fake.ensure_member(GUILD, ALICE + 2)
            assert (await press(world, "kling:vote:1", int(thread["id"]), user_id=ALICE + 2)).startswith(
                "Your vote is counted (2 in all)"
            )
            await fake.wait_for(
                lambda: button_labels(fake.message(int(thread["id"])).message) == ["Vote (2)"]
            )
            edited = fake.message(int(thread["id"])).message
            assert is_card(edited) and media_urls(edited) == [f"attachment://kling-{job_id}.mp4"]


async def test_a_vote_button_of_a_post_from_before_the_cards_keeps_working(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, _ = await delivered_job(world)
            old = fake.add_message(channel, "🎬 A video by someone", author_id=fake.bot_user_id)
            old.message["embeds"] = [{"type": "rich", "title": "Showcase #1", "description": "a fox dances"}]
            old.message["components"] = [
                {
                    "type": 1,
                    "components": [{"type": 2, "style": 1, "label": "Vote (0)", "custom_id": "kling:vote:1"}],
                }
            ]
            showcase, _ = await sql.create(
                world.db,
                guild_id=GUILD,
                job_id=job_id,
                author_id=ALICE,
                shared_by="auto",
                prompt="a fox dances",
                settings="5 s",
                at=1.0,
            )
            await sql.set_posted(world.db, showcase.id, channel_id=channel, message_id=old.id, video_url=None)
            fake.ensure_member(GUILD, ALICE + 1)
            assert (await press(world, "kling:vote:1", old.id, user_id=ALICE + 1)).startswith(
                "Your vote is counted (1 in all)"
            )
            await fake.wait_for(lambda: button_labels(fake.message(old.id).message) == ["Vote (1)"])
            kept = fake.message(old.id).message
            assert not is_card(kept) and kept["embeds"][0]["description"] == "a fox dances"


def posts_in(fake: FakeDiscord, channel: int, *, forum: bool) -> list[dict[str, Any]]:
    if forum:
        return [fake.message(int(t["id"])).message for t in threads_of(fake, channel)]
    return fake.channel_messages(channel)


async def test_a_crash_between_the_record_and_the_post_posts_once_after_the_restart(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, _ = await delivered_job(world)
            job = await world.bot.job_store.get(job_id)
            assert job is not None
            # The record is made, then the process dies before posting.
            await world.bot.showcases.start(job, shared_by=str(ALICE))
        assert fake.channel_messages(channel) == []
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await fake.wait_for(lambda: len(fake.channel_messages(channel)) == 1)
            for _ in range(100):
                showcase = await sql.by_job(world.db, job_id)
                if showcase is not None and showcase.message_id is not None:
                    break
                await asyncio.sleep(0.05)
            assert showcase is not None and showcase.message_id == int(
                fake.channel_messages(channel)[0]["id"]
            )
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await asyncio.sleep(0.5)
            assert len(fake.channel_messages(channel)) == 1  # a further restart posts nothing more


@pytest.mark.parametrize("forum", [False, True])
async def test_a_crash_between_the_post_and_its_record_finds_the_post_by_its_mark(
    tmp_path: Path, forum: bool
) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake, forum=forum)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, result_id = await delivered_job(world)
            await press(world, f"kling:show:{job_id}", result_id)
            [post] = posts_in(fake, channel, forum=forum)
            # As if the process died after Discord made the post and before it was recorded.
            await world.db.execute("UPDATE showcases SET channel_id = NULL, message_id = NULL")
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            for _ in range(200):
                showcase = await sql.by_job(world.db, job_id)
                if showcase is not None and showcase.message_id is not None:
                    break
                await asyncio.sleep(0.05)
            assert showcase is not None and showcase.message_id == int(post["id"])
            assert len(posts_in(fake, channel, forum=forum)) == 1  # not posted again
            again = await press(world, f"kling:show:{job_id}", result_id)
            assert again.startswith("Showcased in") and len(posts_in(fake, channel, forum=forum)) == 1


@pytest.mark.parametrize("forum", [False, True])
async def test_a_post_that_got_no_answer_is_found_by_its_mark_not_posted_twice(
    tmp_path: Path, forum: bool
) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake, forum=forum)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, result_id = await delivered_job(world)
            route = f"/channels/{channel}/threads" if forum else f"/channels/{channel}/messages"
            fake.inject_disconnect(route, method="POST", after_processing=True)
            shared = await press(world, f"kling:show:{job_id}", result_id)
            assert shared.startswith("Showcased in <#")
            [post] = posts_in(fake, channel, forum=forum)
            showcase = await sql.by_job(world.db, job_id)
            assert showcase is not None and showcase.message_id == int(post["id"])


async def test_an_auto_showcase_due_at_a_crash_is_made_after_the_restart(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            await answer(world, admin(world, "auto", [p.option("enabled", True)]))
            world.bot.runner.delivered_listeners.clear()  # the process dies before the auto-showcase
            await delivered_job(world, "made before the crash")
        assert fake.channel_messages(channel) == []
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]):
            await fake.wait_for(lambda: len(fake.channel_messages(channel)) == 1)
            assert "made before the crash" in text_of(fake.channel_messages(channel)[0]).split("\n")


async def test_a_video_from_an_age_restricted_channel_is_not_showcased_in_a_public_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake)
        assert fake.default_channel_id is not None
        fake.channels[fake.default_channel_id]["nsfw"] = True
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, result_id = await delivered_job(world)
            refused = await press(world, f"kling:show:{job_id}", result_id)
            assert refused.startswith("This video was made in an age-restricted channel")
            await answer(world, admin(world, "auto", [p.option("enabled", True)]))
            with caplog.at_level(logging.WARNING):
                other, _ = await delivered_job(world, "another one")
                await asyncio.sleep(0.5)
            assert fake.channel_messages(channel) == []
            assert await sql.by_job(world.db, job_id) is None
            assert any(
                f"job {other}: not auto-showcased: This video was made" in r.getMessage()
                for r in caplog.records
            )


async def test_a_video_from_a_channel_everyone_cannot_see_is_not_showcased_where_everyone_can(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake)
        made_in = fake.default_channel_id
        assert made_in is not None
        fake.set_overwrite(made_in, GUILD, deny=p.VIEW_CHANNEL)  # @everyone's role has the guild's id
        fake.set_overwrite(made_in, fake.bot_user_id, allow=p.VIEW_CHANNEL, member=True)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, result_id = await delivered_job(world)
            refused = await press(world, f"kling:show:{job_id}", result_id)
            assert refused == (
                "This video was made in a channel not everyone here can see, and the showcase channel is "
                "open to everyone who could not see it there, so I can't showcase it."
            )
            assert fake.channel_messages(channel) == []
            # A showcase channel just as private takes it.
            fake.set_overwrite(channel, GUILD, deny=p.VIEW_CHANNEL)
            fake.set_overwrite(channel, fake.bot_user_id, allow=p.VIEW_CHANNEL, member=True)
            await asyncio.sleep(0.2)
            assert (await press(world, f"kling:show:{job_id}", result_id)).startswith("Showcased in <#")


def test_a_wider_audience_is_refused_and_a_narrower_one_is_not() -> None:
    everyone, staff, members = 1, 2, 3
    public = Audience(False, frozenset({everyone, staff, members}))
    staff_only = Audience(False, frozenset({staff}))
    assert audience_refusal(staff_only, public, everyone) is not None
    assert audience_refusal(public, staff_only, everyone) is None
    assert audience_refusal(staff_only, staff_only, everyone) is None
    assert audience_refusal(Audience(True, public.roles), public, everyone) is not None
    assert audience_refusal(Audience(True, public.roles), Audience(True, public.roles), everyone) is None


async def test_a_forum_whose_only_tags_are_moderated_is_refused_when_set_and_when_showcasing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        forum = fake.add_forum(GUILD, "staff-picks", moderated_tags=["staff"], require_tag=True)
        forum_id = int(forum["id"])
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            said = await set_channel(world, forum_id)
            assert said.startswith(f"<#{forum_id}> requires a tag on every post, and the only tags there are")
            assert said.endswith("Nothing was changed.")
            assert (await sql.server(world.db, GUILD)).channel_id is None
            # Set before its tags were made moderated: the press and the auto-showcase say why.
            await world.bot.showcases.configure(GUILD, channel_id=forum_id, auto=True)
            with caplog.at_level(logging.WARNING):
                job_id, result_id = await delivered_job(world)
                await asyncio.sleep(0.5)
            refused = await press(world, f"kling:show:{job_id}", result_id)
            assert refused.startswith(f"<#{forum_id}> requires a tag") and refused.endswith(
                "tell a server admin."
            )
            assert threads_of(fake, forum_id) == []
            assert any(f"job {job_id}: not auto-showcased" in r.getMessage() for r in caplog.records)


async def test_the_weekly_post_of_a_week_with_nothing_to_show_posts_nothing(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            await answer(world, admin(world, "weekly", [p.option("enabled", True), p.option("hour", 0)]))
            cog = showcase_cog(world)
            assert await cog.weekly_post.post_due() == 0
            assert fake.channel_messages(channel) == []
            assert (await sql.server(world.db, GUILD)).last_weekly is not None  # done for the week
            assert await cog.weekly_post.post_due() == 0


async def test_a_vote_on_a_post_in_a_channel_the_bot_lost_is_counted_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, result_id = await delivered_job(world)
            await press(world, f"kling:show:{job_id}", result_id)
            post_id = int(fake.channel_messages(channel)[0]["id"])
            fake.set_overwrite(channel, fake.bot_user_id, deny=p.VIEW_CHANNEL, member=True)
            fake.ensure_member(GUILD, ALICE + 1)
            with caplog.at_level(logging.ERROR):
                voted = await press(world, "kling:vote:1", post_id, user_id=ALICE + 1)
                assert voted.startswith("Your vote is counted (1 in all)")
                await fake.wait_for(
                    lambda: any(
                        r.path.endswith(f"/messages/{post_id}") and r.status == 403 for r in fake.requests
                    )
                )
                await asyncio.sleep(0.3)
            assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
            assert (await sql.get(world.db, 1)) is not None and (await sql.vote_count(world.db, 1)) == 1


async def test_showcase_and_vote_buttons_pressed_in_another_server_do_nothing(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake)
        fake.add_guild("Elsewhere", guild_id=OTHER_GUILD)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, result_id = await delivered_job(world)
            elsewhere = await press(
                world,
                f"kling:show:{job_id}",
                None,
                guild_id=OTHER_GUILD,
                member_permissions=p.ALL_PERMISSIONS,
            )
            assert elsewhere == "This Showcase button belongs to a video of another server."
            assert fake.channel_messages(channel) == []
            await press(world, f"kling:show:{job_id}", result_id)
            vote = await press(world, "kling:vote:1", None, guild_id=OTHER_GUILD)
            assert vote == "This Vote button belongs to another server's showcase."
            assert await sql.vote_count(world.db, 1) == 0


async def test_history_and_gallery_show_the_hosted_copy_and_a_placeholder_for_a_gone_video(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as fake:
        channel = await showcase_world_setup(fake)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            kept, kept_result = await delivered_job(world, "kept")
            gone, gone_result = await delivered_job(world, "gone")
            await press(world, f"kling:show:{kept}", kept_result)
            await press(world, f"kling:show:{gone}", gone_result)
            fake.message(gone_result).deleted = True  # removed by a moderator in Discord
            showcase = await sql.by_job(world.db, gone)
            assert showcase is not None and showcase.message_id is not None
            fake.message(showcase.message_id).deleted = True

            history = await embed_answer(world, p.slash_command(fake, name="history", user_id=ALICE))
            hosted = fake.message(kept_result).message["attachments"][0]["url"]
            assert media_urls(history) == [hosted]  # the Discord-hosted copy, not the API's link
            text = text_of(history)
            assert f"/{kept_result})" in text and "video no longer available" in text
            job = await world.bot.job_store.get(kept)
            assert job is not None and job.video_url is not None and job.video_url not in text

            gallery = await embed_answer(world, p.slash_command(fake, name="gallery", user_id=ALICE))
            assert len(media_urls(gallery)) == 1 and media_urls(gallery)[0].startswith(fake.url)
            assert text_of(gallery).count("video no longer available") == 1


async def test_the_showcase_queries_a_restart_uses_on_both_engines(database_url: str) -> None:
    from bot.store import Database
    from tests.test_showcase import insert_delivered_job

    db = await Database.open(database_url)
    try:
        await sql.update_server(db, GUILD, {"channel_id": 5, "auto": True}, at=100.0)
        for job_id, at in ((1, 50.0), (2, 150.0), (3, 160.0), (4, 170.0)):
            await insert_delivered_job(db, job_id, user_id=ALICE + job_id, at=at)
        await sql.set_opt_out(db, GUILD, ALICE + 4, True, at=1.0)
        posted, _ = await sql.create(
            db,
            guild_id=GUILD,
            job_id=3,
            author_id=ALICE,
            shared_by="auto",
            prompt="p",
            settings="s",
            at=200.0,
        )
        # Job 1 was delivered before auto was on, 3 is showcased, 4's member opted out.
        assert await sql.auto_due(db, since=0.0) == [2]
        assert await sql.auto_due(db, since=155.0) == []
        assert [s.id for s in await sql.unposted(db, before=300.0)] == [posted.id]
        assert await sql.unposted(db, before=200.0) == []
        await sql.set_last_weekly(db, GUILD, 400.0)
        assert (await sql.server(db, GUILD)).last_weekly == 400.0
        assert await sql.auto_due(db, since=0.0) == [2]  # the weekly post is no admin's change
    finally:
        await db.close()
