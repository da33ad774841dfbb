"""A member's own install (issue 20 item 4), the whole bot against the fake Discord: where the bot cannot post
(a server that did not add it, the DM with the bot), the progress card is a followup of the interaction,
edited into the result card with the video file while the token lives; after the token's end, or after a
restart that forgot it, the file goes to the member's DM, once. Nothing is ever posted in the channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, InteractionRecord, MessageRecord
from tests.fakes.discord_server._components import buttons, components_text, media_urls
from tests.fakes.sunra_server import FakeSunra, JobFailure, JobPlan
from tests.world import SUNRA_KEY, World, loosen_rate_limits, running_world

FLAG_V2 = 1 << 15
OUTSIDE = {"quota": {"dm_credits": 100, "global_daily_usd": 100}}
MEMBER_BUTTONS = ("retry", "remix", "extend", "delete")  # no Showcase: no server added the bot


async def from_own_install(world: World, *, context: int, channel_id: int) -> InteractionRecord:
    """/animate from the member's own install: in a server without the bot (context 0) or in the DM with
    the bot (context 1)."""
    options = {"image": world.image(), "prompt": "the cat waves @everyone"}
    payload = p.slash_command(
        world.discord,
        options=options,
        guild_id=p.snowflake() if context == 0 else None,
        channel_id=channel_id,
        user_install=True,
        context=context,
    )
    return await world.discord.dispatch_interaction(payload)


def posts_in(world: World, channel_id: int) -> list[Any]:
    """Every request that tried to post or edit a message in the channel itself."""
    return [
        r
        for r in world.discord.requests
        if r.path.startswith(f"/channels/{channel_id}/messages") and r.method in ("POST", "PATCH")
    ]


def assert_result_card(message: MessageRecord, job_id: int, video: bytes) -> None:
    card = message.message
    assert card["flags"] & FLAG_V2 and card["content"] == "" and card["embeds"] == []
    [attachment] = card["attachments"]
    assert attachment["filename"] == f"kling-{job_id}.mp4"
    assert media_urls(card["components"]) == [f"attachment://kling-{job_id}.mp4"]
    assert any(f.filename == f"kling-{job_id}.mp4" and f.data == video for f in message.files)
    assert [b["custom_id"] for b in buttons(card["components"])] == [
        f"kling:{kind}:{job_id}" for kind in MEMBER_BUTTONS
    ]
    assert "the cat waves @\u200beveryone" in components_text(card["components"])


async def test_in_a_server_without_the_bot_the_video_arrives_through_the_interaction(tmp_path: Path) -> None:
    async with running_world(tmp_path, **OUTSIDE) as world:
        channel = p.snowflake()  # a channel of a server that never added the bot
        world.sunra.next_job(seconds=3.0, queue_seconds=1.0)
        interaction = await from_own_install(world, context=0, channel_id=channel)
        assert "it will arrive here" in await world.private_answer(interaction)
        job = await world.ended(interaction)
        assert job.state == "delivered" and job.deliver_via == "interaction" and job.guild_id is None
        # The progress card was a public followup (not the private answer) and became the result card.
        assert job.result_message_id == job.progress_message_id is not None
        result = world.discord.message(job.result_message_id)
        assert result.kind == "followup" and result.interaction_id == interaction.id
        assert not result.message["flags"] & 64
        assert [b["custom_id"] for b in buttons(result.payload["components"])] == [f"kling:cancel:{job.id}"]
        assert_result_card(result, job.id, world.sunra.video_bytes(job.request_id or ""))
        # Edited through the webhook as the job moved (Cancel kept), then into the result card.
        *moves, edit = result.edits
        assert moves and all(m.via == "webhook" for m in moves)
        assert all(f"kling:cancel:{job.id}" in str(m.payload["components"]) for m in moves)
        assert "Generating" in " ".join(components_text(m.payload["components"]) for m in moves)
        mentions = edit.payload["allowed_mentions"]  # the result may name the member alone
        assert mentions["parse"] == [] and [int(u) for u in mentions["users"]] == [job.user_id]
        assert world.outcome_messages(job.id) == [result]
        assert posts_in(world, channel) == []
        assert [m for m in world.discord.messages if m.kind == "channel" and m.channel_id == channel] == []
        assert len([f for f in world.discord.followups if f.interaction_id == interaction.id]) <= 5


async def test_in_the_dm_with_the_bot_the_video_arrives_through_the_interaction(tmp_path: Path) -> None:
    async with running_world(tmp_path, **OUTSIDE) as world:
        dm = int(world.discord.open_dm(p.DEFAULT_USER_ID)["id"])
        interaction = await from_own_install(world, context=1, channel_id=dm)
        job = await world.ended(interaction)
        assert job.state == "delivered" and job.result_message_id == job.progress_message_id
        result = world.discord.message(job.result_message_id or 0)
        assert result.kind == "followup"
        assert_result_card(result, job.id, world.sunra.video_bytes(job.request_id or ""))
        assert world.outcome_messages(job.id) == [result] and posts_in(world, dm) == []


async def test_a_job_that_outlives_the_token_sends_the_file_to_the_dm_once(tmp_path: Path) -> None:
    async with running_world(tmp_path, **OUTSIDE) as world:
        world.discord.token_lifetime = 2.0
        assert world.bot.reporter is not None
        world.bot.reporter.routes.token_seconds = 1.5
        world.sunra.next_job(seconds=3.0)
        channel = p.snowflake()
        interaction = await from_own_install(world, context=0, channel_id=channel)
        job = await world.ended(interaction, within=30)
        assert job.state == "delivered" and job.result_message_id != job.progress_message_id
        [outcome] = world.outcome_messages(job.id)
        dm = int(world.discord.open_dm(p.DEFAULT_USER_ID)["id"])
        assert outcome.kind == "channel"  # the bot's own DM with the member
        assert outcome.channel_id == dm and outcome.id == job.result_message_id
        assert_result_card(outcome, job.id, world.sunra.video_bytes(job.request_id or ""))
        assert "no longer lets me answer your /animate" in components_text(outcome.message["components"])
        assert posts_in(world, channel) == []
        # The dead token was not tried again and again: Discord counts each refusal against the IP.
        assert world.discord.invalid_requests <= 1


async def test_a_restart_mid_job_delivers_the_file_in_the_dm_and_never_in_the_channel(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(discord)
        channel = p.snowflake()
        async with running_world(tmp_path, discord=discord, sunra=sunra, **OUTSIDE) as world:
            sunra.next_job(seconds=3.0)
            interaction = await from_own_install(world, context=0, channel_id=channel)
            await world.until(
                lambda j: j.state == "submitted" and j.progress_message_id is not None, interaction
            )
        async with running_world(tmp_path, discord=discord, sunra=sunra, **OUTSIDE) as world:
            job = await world.ended(interaction, within=30)
            assert job.state == "delivered" and job.deliver_via == "interaction"
            [outcome] = world.outcome_messages(job.id)
            assert outcome.channel_id == int(discord.open_dm(p.DEFAULT_USER_ID)["id"])
            assert_result_card(outcome, job.id, sunra.video_bytes(job.request_id or ""))
            assert posts_in(world, channel) == [] and sunra.count("submit") == 1


async def test_an_answer_lost_after_the_result_landed_is_found_through_the_webhook(tmp_path: Path) -> None:
    # Progress edits slower than the job: the one edit of the progress followup is the result's.
    async with running_world(tmp_path, jobs={"progress_edit_seconds": 60}, **OUTSIDE) as world:
        world.sunra.next_job(seconds=2.0)
        interaction = await from_own_install(world, context=0, channel_id=p.snowflake())
        running = await world.until(lambda j: j.progress_message_id is not None, interaction)
        path = f"/messages/{running.progress_message_id}"
        world.discord.inject_disconnect(path, method="PATCH", after_processing=True)
        job = await world.ended(interaction, within=30)
        assert job.state == "delivered" and job.result_message_id == job.progress_message_id
        result = world.discord.message(job.result_message_id or 0)
        assert_result_card(result, job.id, world.sunra.video_bytes(job.request_id or ""))
        # Read back through the webhook, not made again: one result edit, nothing in the DM.
        assert len(result.edits) == 1 and world.outcome_messages(job.id) == [result]
        gets = [r for r in world.discord.requests if r.method == "GET" and "/webhooks/" in r.path]
        assert gets, "the bot must look for its result before posting it again"


async def test_a_closed_dm_after_the_token_ends_the_job_readably(tmp_path: Path) -> None:
    async with running_world(tmp_path, **OUTSIDE) as world:
        world.discord.token_lifetime = 2.0
        assert world.bot.reporter is not None
        world.bot.reporter.routes.token_seconds = 1.5
        world.discord.refuse_dm(p.DEFAULT_USER_ID)
        world.sunra.next_job(seconds=3.0)
        interaction = await from_own_install(world, context=0, channel_id=p.snowflake())
        job = await world.ended(interaction, within=30)
        # The video is paid for and kept: /quota lists it as not posted (its link is in /history).
        assert job.state == "delivered" and job.result_message_id is None and job.video_url
        assert world.outcome_messages(job.id) == []
        # /quota (where a server added the bot) gives it back, as for a channel the bot lost.
        quota = await world.discord.dispatch_interaction(p.slash_command(world.discord, name="quota"))
        callback = await world.discord.wait_for_callback(quota.id)
        assert callback.flags & 64 and f"{job.video_url} (could not be posted)" in callback.data["content"]


async def test_a_video_too_large_even_re_encoded_gets_the_link_card_through_the_interaction(
    tmp_path: Path,
) -> None:
    async with running_world(tmp_path, jobs={"max_video_mb": 0.2}, **OUTSIDE) as world:
        world.sunra.next_job(video_size=300_000)
        channel = p.snowflake()
        interaction = await from_own_install(world, context=0, channel_id=channel)
        job = await world.ended(interaction)
        assert job.state == "delivered" and job.result_message_id == job.progress_message_id
        card = world.discord.message(job.result_message_id or 0).message
        assert card["flags"] & FLAG_V2 and card["attachments"] == [] and media_urls(card["components"]) == []
        links = [b for b in buttons(card["components"]) if b.get("style") == 5]
        assert [b["url"] for b in links] == [job.video_url]
        assert posts_in(world, channel) == []


async def test_a_job_that_fails_says_so_through_the_interaction(tmp_path: Path) -> None:
    async with running_world(tmp_path, **OUTSIDE) as world:
        failure = JobFailure(reason="content_policy", code="content_policy", retryable=False)
        world.sunra.plan_jobs(JobPlan(fail=failure))
        channel = p.snowflake()
        interaction = await from_own_install(world, context=0, channel_id=channel)
        job = await world.ended(interaction)
        assert job.state == "failed" and job.notified
        [outcome] = world.outcome_messages(job.id)
        assert outcome.kind == "followup" and outcome.interaction_id == interaction.id
        assert "content moderation refused" in outcome.message["content"]
        progress = world.discord.message(job.progress_message_id or 0)
        assert buttons(progress.message["components"]) == []  # Cancel gone: the job is over
        assert "Ended without a video" in components_text(progress.message["components"])
        assert posts_in(world, channel) == []


async def test_retry_and_delete_work_on_a_card_of_a_members_own_install(tmp_path: Path) -> None:
    async with running_world(tmp_path, **OUTSIDE) as world:
        elsewhere, channel = p.snowflake(), p.snowflake()
        options = {"image": world.image(), "prompt": "the cat waves"}
        first = await world.discord.dispatch_interaction(
            p.slash_command(
                world.discord, options=options, guild_id=elsewhere, channel_id=channel, user_install=True
            )
        )
        job = await world.ended(first)
        assert job.state == "delivered" and job.result_message_id is not None

        async def press(action: str) -> InteractionRecord:
            click = p.button_click(
                world.discord,
                f"kling:{action}:{job.id}",
                message=job.result_message_id,
                guild_id=elsewhere,
                channel_id=channel,
                user_install=True,
                context=0,
            )
            return await world.discord.dispatch_interaction(click)

        retry = await press("retry")
        again = await world.ended(retry)
        assert again.id != job.id and again.state == "delivered" and again.deliver_via == "interaction"
        assert world.discord.message(again.result_message_id or 0).kind == "followup"
        deleted = await press("delete")
        await world.discord.wait_for(lambda: world.discord.message(job.result_message_id or 0).deleted)
        assert "Deleted the video" in await world.discord.wait_for(
            lambda: next(
                (f.payload.get("content") for f in world.discord.followups if f.interaction_id == deleted.id),
                None,
            )
        )
        assert posts_in(world, channel) == [] and world.sunra.count("submit") == 2


async def test_a_deleted_progress_followup_gives_way_to_a_new_followup_with_the_video(tmp_path: Path) -> None:
    async with running_world(tmp_path, **OUTSIDE) as world:
        world.sunra.next_job(seconds=2.0)
        interaction = await from_own_install(world, context=0, channel_id=p.snowflake())
        running = await world.until(lambda j: j.progress_message_id is not None, interaction)
        hook = f"{world.discord.api_url}/webhooks/{world.discord.application_id}/{interaction.token}"
        gone = f"{hook}/messages/{running.progress_message_id}"  # a moderator of that server removed it
        async with aiohttp.ClientSession() as session, session.delete(gone) as response:
            assert response.status == 204
        job = await world.ended(interaction)
        assert job.state == "delivered" and job.result_message_id not in (None, job.progress_message_id)
        [outcome] = world.outcome_messages(job.id)
        assert outcome.kind == "followup" and outcome.id == job.result_message_id
        assert_result_card(outcome, job.id, world.sunra.video_bytes(job.request_id or ""))
