"""/animate end to end: the real bot, discord.py and its HTTP client, against fakes on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.runner import MEMBER_BURST, MemberBurst
from bot.store.jobs import JobRow
from bot.sunra import RetryPolicy
from tests import images
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, InteractionRecord, MessageRecord
from tests.fakes.discord_server._components import buttons, components_text, media_urls
from tests.fakes.sunra_server import FakeSunra, JobFailure, JobPlan
from tests.world import SUNRA_KEY, World, balance_of, loosen_rate_limits, running_world, shown_text

EPHEMERAL = 64
FLAG_V2 = 1 << 15


async def test_a_good_picture_becomes_one_video_reply(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        interaction = await world.animate("the cat waves @everyone <@&123>")
        callback = await world.discord.wait_for_callback(interaction.id)
        assert callback.latency < 3.0 and callback.type == 5 and callback.flags & EPHEMERAL
        job = await world.ended(interaction)
        assert job.state == "delivered", job
        [outcome] = world.outcome_messages(job.id)
        assert outcome.kind == "channel"
        assert outcome.files[0].data == world.sunra.video_bytes(job.request_id or "")
        mentions = outcome.payload["allowed_mentions"]
        assert mentions["parse"] == [] and [int(u) for u in mentions["users"]] == [job.user_id]
        assert outcome.message["message_reference"]["message_id"] == str(job.progress_message_id)
        # A Components V2 card: no content, the uploaded video played by its media gallery, the prompt,
        # the facts, the author pinged once and the result buttons inside the layout.
        card = outcome.message
        assert card["flags"] & FLAG_V2 and card["content"] == "" and card["embeds"] == []
        [attachment] = card["attachments"]
        assert media_urls(card["components"]) == [f"attachment://{attachment['filename']}"]
        text = components_text(card["components"])
        assert "the cat waves @\u200beveryone" in text and text.count(f"<@{job.user_id}>") == 1
        assert "**Duration** 5 s" in text and "**Sound** on" in text and "**Cost** 10 credits" in text
        assert [b["custom_id"] for b in buttons(card["components"])] == [
            f"kling:{kind}:{job.id}" for kind in ("retry", "remix", "extend", "show", "delete")
        ]
        assert [u["id"] for u in card["mentions"]] == [str(job.user_id)]
        progress = world.discord.message(job.progress_message_id or 0)
        assert progress.message["flags"] & FLAG_V2 and progress.message["embeds"] == []
        # Shown as typed, its mention broken so that it renders as text (cogs/_text.py).
        assert "the cat waves @\u200beveryone" in components_text(progress.message["components"])
        assert progress.payload["allowed_mentions"]["parse"] == [] and progress.message["mentions"] == []
        # Cancel was inside the card while the job ran; the card's last edit took it away.
        assert [b["custom_id"] for b in buttons(progress.payload["components"])] == [f"kling:cancel:{job.id}"]
        assert buttons(progress.message["components"]) == []
        answer = await world.private_answer(interaction)
        assert "on its way" in answer
        assert world.sunra.count("submit") == 1


# ----------------------------------------------------------------------------------------------- bad input


def channel_posts(world: World) -> list[MessageRecord]:
    return [m for m in world.discord.messages if m.kind == "channel"]


async def assert_nothing_happened(world: World) -> None:
    assert world.sunra.count("submit") == 0 and world.sunra.count("upload_initiate") == 0
    assert channel_posts(world) == []
    charged = await world.db.fetchone("SELECT COUNT(*) FROM quota_ledger WHERE kind IN ('reserve', 'commit')")
    assert charged is not None and charged[0] == 0


@pytest.mark.parametrize(
    ("attachment", "options", "expected"),
    [
        (lambda w: w.discord.add_attachment("notes.txt", b"hello", "text/plain"), {}, "picture"),
        (lambda w: w.image(), {"voice_1": "v1"}, "<<<voice_1>>>"),
        (lambda w: w.image(), {"prompt": "<<<voice_1>>> says hi", "voice_1": "v1", "audio": False}, "audio"),
    ],
    ids=["not-a-picture", "voice-not-in-prompt", "voice-without-audio"],
)
async def test_bad_input_is_refused_at_once_privately_and_changes_nothing(
    tmp_path: Path, attachment: Callable[[World], dict[str, Any]], options: dict[str, Any], expected: str
) -> None:
    async with running_world(tmp_path) as world:
        interaction = await world.animate(image=attachment(world), **options)
        callback = await world.discord.wait_for_callback(interaction.id)
        assert callback.type == 4 and callback.flags & EPHEMERAL and callback.latency < 3.0
        assert expected.lower() in callback.data["content"].lower()
        await assert_nothing_happened(world)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (images.encode(images.noise((640, 480)), "PNG")[:30_000], "damaged"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000, "picture"),
        (images.png_claiming(40_000, 40_000), "megapixels"),
    ],
    ids=["truncated", "disguised", "decompression-bomb"],
)
async def test_bytes_that_lie_are_refused_after_the_deferral_privately(
    tmp_path: Path, data: bytes, expected: str
) -> None:
    async with running_world(tmp_path) as world:
        # The metadata looks fine (a PNG of a good size); only the bytes tell the truth.
        attachment = world.discord.add_attachment("cat.png", data, "image/png", width=640, height=480)
        interaction = await world.animate(image=attachment)
        answer = await world.private_answer(interaction)
        assert expected.lower() in answer.lower(), answer
        job = await world.ended(interaction)
        assert job.state == "refused" and job.notified
        await assert_nothing_happened(world)


async def test_missing_channel_permissions_are_named_privately(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        attach_files = 1 << 15
        world.discord.set_overwrite(p.DEFAULT_CHANNEL_ID, p.DEFAULT_BOT_ROLE_ID, deny=attach_files)
        interaction = await world.animate()
        callback = await world.discord.wait_for_callback(interaction.id)
        assert callback.flags & EPHEMERAL and "Attach Files" in callback.data["content"]
        await assert_nothing_happened(world)


# ----------------------------------------------------------------------------------------------- job ends


async def delivered(world: World, interaction: InteractionRecord) -> JobRow:
    """The job of ``interaction`` once ended, checked to be delivered with the fake's exact video."""
    job = await world.ended(interaction)
    assert job.state == "delivered", job
    [outcome] = world.outcome_messages(job.id)
    assert outcome.files[0].data == world.sunra.video_bytes(job.request_id or "")
    return job


async def test_a_failed_prediction_says_why_and_whether_to_retry_and_charges_nothing(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        before = await balance_of(world)
        world.sunra.fail_next_job(reason="The image was flagged by the safety filter", retryable=False)
        interaction = await world.animate()
        job = await world.ended(interaction)
        assert job.state == "failed" and job.retryable is False
        [outcome] = world.outcome_messages(job.id)
        text = outcome.message["content"]
        assert "safety filter" in text and "not help" in text.lower(), text
        assert outcome.files == [] and await balance_of(world) == before
        await world.assert_ledger_matches_jobs()


@pytest.mark.parametrize(
    "result", [{"video": None}, {"video": {"content_type": "video/mp4", "file_size": 5}}, {"data": {}}]
)
async def test_a_finished_job_without_a_video_ends_soon_with_the_credits_back(
    tmp_path: Path, result: dict[str, Any]
) -> None:
    async with running_world(tmp_path) as world:
        before = await balance_of(world)
        world.sunra.next_job(result=result)
        interaction = await world.animate()
        job = await world.ended(interaction)
        assert job.state == "failed" and job.retryable is True
        [outcome] = world.outcome_messages(job.id)
        assert outcome.message["content"] == (
            f"<@{job.user_id}> your /animate job ended without a video. Kling finished the job but sent "
            "back no video, so nothing was charged. Trying again may help."
        )
        assert outcome.files == [] and await balance_of(world) == before
        assert world.sunra.count("result") == RetryPolicy().attempts
        await world.assert_ledger_matches_jobs()


@pytest.mark.parametrize(
    ("plan", "sentence", "retryable"),
    [
        (
            JobPlan(fail=JobFailure(reason="content_policy", code="content_policy", retryable=False)),
            "Kling's content moderation refused the picture or the prompt. "
            "Trying again with the same picture and prompt will not help.",
            False,
        ),
        (
            JobPlan(final_status={"status": "FAILED", "error": "image_moderation"}),
            "Kling's content moderation refused the picture. "
            "Trying again with the same picture will not help; a different picture may.",
            False,
        ),
        (
            JobPlan(final_status={"status": "TIMEOUT"}),
            "Kling took too long to make this video and gave up. Trying again may help.",
            True,
        ),
        (
            JobPlan(fail=JobFailure(reason="E_4031", code="E_4031", message="E_4031", retryable=True)),
            "Kling could not make this video. Trying again may help.",
            True,
        ),
    ],
)
async def test_a_failure_reason_reaches_the_member_as_a_sentence(
    tmp_path: Path, plan: JobPlan, sentence: str, retryable: bool
) -> None:
    async with running_world(tmp_path) as world:
        before = await balance_of(world)
        world.sunra.plan_jobs(plan)
        interaction = await world.animate()
        job = await world.ended(interaction)
        assert job.state == "failed" and job.retryable is retryable
        [outcome] = world.outcome_messages(job.id)
        assert outcome.message["content"] == (
            f"<@{job.user_id}> your /animate job ended without a video. {sentence}"
        )
        assert await balance_of(world) == before
        await world.assert_ledger_matches_jobs()


async def test_cancel_works_for_the_requester_not_for_others_and_refunds(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        before = await balance_of(world)
        world.sunra.next_job(seconds=30, queue_seconds=1)
        interaction = await world.animate()
        job = await world.until(
            lambda j: j.state == "submitted" and j.progress_message_id is not None, interaction
        )
        custom_id = f"kling:cancel:{job.id}"
        progress_id = job.progress_message_id or 0

        bob = 4242
        world.discord.ensure_member(p.DEFAULT_GUILD_ID, bob)
        click = await world.discord.dispatch_interaction(
            p.button_click(world.discord, custom_id, message=progress_id, user_id=bob)
        )
        assert "only the member" in (await world.private_answer(click)).lower()
        assert (await world.job_for(interaction)).state == "submitted"

        click = await world.discord.dispatch_interaction(
            p.button_click(world.discord, custom_id, message=progress_id)
        )
        assert "cancelling" in (await world.private_answer(click)).lower()
        again = await world.discord.dispatch_interaction(
            p.button_click(world.discord, custom_id, message=progress_id)
        )
        await world.private_answer(again)  # a second press is harmless
        job = await world.ended(interaction)
        assert job.state == "cancelled" and world.sunra.count("cancel") == 1
        [outcome] = world.outcome_messages(job.id)
        assert "you cancelled it" in outcome.message["content"].lower()
        assert await balance_of(world) == before
        await world.assert_ledger_matches_jobs()


async def test_a_moderator_can_cancel_someone_elses_job(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.next_job(seconds=30, queue_seconds=1)
        interaction = await world.animate()
        job = await world.until(
            lambda j: j.state == "submitted" and j.progress_message_id is not None, interaction
        )
        moderator = 4343
        world.discord.ensure_member(p.DEFAULT_GUILD_ID, moderator)
        manage_messages = 1 << 13
        click = await world.discord.dispatch_interaction(
            p.button_click(
                world.discord,
                f"kling:cancel:{job.id}",
                message=job.progress_message_id,
                user_id=moderator,
                member_permissions=manage_messages,
            )
        )
        assert "cancelling" in (await world.private_answer(click)).lower()
        job = await world.ended(interaction)
        assert job.state == "cancelled"
        [outcome] = world.outcome_messages(job.id)
        assert f"cancelled by <@{moderator}>" in outcome.message["content"]
        assert outcome.payload["allowed_mentions"]["users"] == [str(job.user_id)] or [
            int(u) for u in outcome.payload["allowed_mentions"]["users"]
        ] == [job.user_id]


async def test_a_job_that_never_finishes_is_cancelled_at_its_lifetime(tmp_path: Path) -> None:
    async with running_world(tmp_path, jobs={"max_lifetime_minutes": 0.03}) as world:
        world.sunra.next_job(seconds=60)
        interaction = await world.animate()
        job = await world.ended(interaction)
        assert job.state == "cancelled" and job.error_code == "lifetime_exceeded"
        assert world.sunra.count("cancel") == 1
        [outcome] = world.outcome_messages(job.id)
        assert "did not finish within" in outcome.message["content"]


async def test_a_video_over_the_download_cap_is_delivered_by_its_url(tmp_path: Path) -> None:
    # Over the upload limit a video is re-encoded to fit (tests/test_results.py), but only up to the cap.
    async with running_world(tmp_path, jobs={"max_video_mb": 0.2}) as world:
        world.discord.set_upload_limit(p.DEFAULT_GUILD_ID, 100_000)
        world.sunra.next_job(video_size=300_000)
        interaction = await world.animate()
        job = await world.ended(interaction)
        assert job.state == "delivered"
        [outcome] = world.outcome_messages(job.id)
        assert outcome.files == [] and (job.video_url or "?") in shown_text(outcome.message)
        assert world.sunra.count("video") == 0  # known too large from its size: never downloaded


async def test_a_stale_upload_limit_falls_back_to_the_url_after_40005(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        world.discord.set_upload_limit(p.DEFAULT_GUILD_ID, 100_000)
        world.sunra.next_job(video_size=300_000)
        # The interaction claims 25 MiB (a boosted server that lost its boost since): Discord says 40005.
        payload = p.slash_command(
            world.discord,
            options={"image": world.image(), "prompt": "the cat waves"},
            attachment_size_limit=25 * 1024 * 1024,
        )
        interaction = await world.discord.dispatch_interaction(payload)
        job = await world.ended(interaction)
        assert job.state == "delivered"
        [outcome] = world.outcome_messages(job.id)
        assert outcome.files == [] and (job.video_url or "?") in shown_text(outcome.message)
        assert world.discord.invalid_requests <= 1


@pytest.mark.parametrize("code", [50013, 10003])
async def test_a_channel_that_refuses_gets_the_member_a_dm(tmp_path: Path, code: int) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.next_job(seconds=1.5)
        interaction = await world.animate()
        await world.until(lambda j: j.state == "submitted", interaction)
        world.discord.refuse(p.DEFAULT_CHANNEL_ID, code)
        job = await world.ended(interaction)
        assert job.state == "delivered" and job.video_url
        [outcome] = world.outcome_messages(job.id)
        assert outcome.channel_id != p.DEFAULT_CHANNEL_ID  # the DM channel
        # The file itself, played inline, with the result buttons.
        assert outcome.files[0].data == world.sunra.video_bytes(job.request_id or "")
        assert media_urls(outcome.message["components"]) == [f"attachment://kling-{job.id}.mp4"]
        assert f"kling:retry:{job.id}" in [b["custom_id"] for b in buttons(outcome.message["components"])]
        assert f"<#{p.DEFAULT_CHANNEL_ID}>" in shown_text(outcome.message)
        assert world.discord.invalid_requests <= 4  # each fallback tried once, never a loop


async def test_when_nobody_can_be_reached_the_result_stays_in_the_database(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.next_job(seconds=1.5)
        interaction = await world.animate()
        await world.until(lambda j: j.state == "submitted", interaction)
        world.discord.refuse(p.DEFAULT_CHANNEL_ID, 50013)
        world.discord.refuse_dm(p.DEFAULT_USER_ID)
        job = await world.ended(interaction)
        assert job.state == "delivered" and job.video_url and job.result_message_id is None
        assert world.outcome_messages(job.id) == []
        assert world.discord.invalid_requests <= 4
        # The member gets it back with /quota (private).
        world.discord.unrefuse(p.DEFAULT_CHANNEL_ID)
        quota = await world.discord.dispatch_interaction(p.slash_command(world.discord, name="quota"))
        callback = await world.discord.wait_for_callback(quota.id)
        assert callback.flags & EPHEMERAL and job.video_url in callback.data["content"]


async def test_a_dead_interaction_token_is_not_retried_and_the_job_still_delivers(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        interaction = await world.animate()
        await world.discord.wait_for_callback(interaction.id)
        world.discord.expire_token(interaction.token)  # the "on its way" edit gets 50027
        job = await world.ended(interaction)
        assert job.state == "delivered" and len(world.outcome_messages(job.id)) == 1
        webhook_calls = [r for r in world.discord.requests if r.path.startswith("/webhooks/")]
        assert len(webhook_calls) == 1 and world.discord.invalid_requests == 1


async def test_status_hiccups_while_waiting_only_slow_the_job_down(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.stream_enabled = False
        world.sunra.next_job(seconds=1.0)
        world.sunra.fail_next("status", 503, times=2)
        world.sunra.fail_next("status", 429, times=1)
        world.sunra.fail_next("status", malformed=True)
        interaction = await world.animate()
        job = await world.ended(interaction)
        assert job.state == "delivered" and world.sunra.count("submit") == 1
        assert world.sunra.count("status") < 40  # adaptive polling, not a tight loop


@pytest.mark.parametrize("stream", [True, False])
async def test_drift_in_what_sunra_shows_never_stalls_a_job(tmp_path: Path, stream: bool) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.stream_enabled = stream
        world.sunra.stream_ping_events = True
        world.sunra.stream_keepalive_seconds = 0.05
        world.sunra.status_extra = {
            "logs": "Rendering frames",  # a string, not a list
            "queue_position": "about 3",
            "metrics": {"inference_time": "12s", "gpu": None},
            "request_id": 12345,
            "eta": [1, {"unit": "s"}],
        }
        world.sunra.next_job(seconds=1.0, queue_seconds=0.3)
        interaction = await world.animate()
        await delivered(world, interaction)
        await world.assert_ledger_matches_jobs()


async def test_a_stream_stuck_on_keep_alives_never_holds_the_video_back(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.stream_stall_after = 1  # open, keep-alives only, never "completed"
        world.sunra.stream_keepalive_seconds = 0.05
        world.sunra.next_job(seconds=1.0, queue_seconds=0.2)
        interaction = await world.animate()
        await delivered(world, interaction)
        assert world.sunra.count("stream") == 1 and world.sunra.count("status") >= 1
        await world.assert_ledger_matches_jobs()


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_key_stops_new_submissions_and_says_so(tmp_path: Path, status: int) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.reject_key(status)
        first = await world.animate()
        job = await world.ended(first)
        assert job.state in ("refused", "failed")
        second = await world.animate()
        callback = await world.discord.wait_for_callback(second.id)
        assert callback.type == 4 and "not available" in callback.data["content"]
        assert world.sunra.count("submit") == 0


async def test_rate_limit_403s_only_delay_jobs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """sunra answers a key over its rate limit 403 (e.g. another process shares the key): the submit
    is sent again after the reset, the job is delivered and charged once, nobody is refused."""
    async with running_world(tmp_path) as world:
        world.sunra.fail_next("submit", 403, rate_limit=True, retry_after=0.3, times=2)
        world.sunra.fail_next("status", 403, rate_limit=True, retry_after=0.1)
        world.sunra.fail_next("result", 403, rate_limit=True, retry_after=0.1)
        first = await world.animate()
        second = await world.animate()
        for interaction in (first, second):
            await delivered(world, interaction)
        assert len(world.sunra.jobs) == 2 and world.sunra.count("submit") == 4
        assert world.bot.sunra.submissions_blocked is None
        assert not [r for r in caplog.records if r.levelno == logging.CRITICAL]
        await world.assert_ledger_matches_jobs()


# ----------------------------------------------------------------------------------------------- many at once


async def test_many_members_at_once_each_get_one_video_and_a_quick_answer(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        members = [7000 + n for n in range(24)]
        interactions = await asyncio.gather(
            *(world.animate(f"member {uid} waves", user_id=uid) for uid in members)
        )
        callbacks = [await world.discord.wait_for_callback(i.id, timeout=10) for i in interactions]
        assert max(c.latency for c in callbacks) < 3.0
        jobs = [await world.ended(i, within=60) for i in interactions]
        assert [j.state for j in jobs] == ["delivered"] * len(members)
        assert {j.user_id for j in jobs} == set(members)
        for job in jobs:
            assert len(world.outcome_messages(job.id)) == 1
        assert world.sunra.count("submit") == len(members)
        await world.assert_ledger_matches_jobs()


async def test_a_burst_from_one_member_reserves_exactly_what_they_can_afford(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"daily_credits": 30, "max_concurrent_jobs": 1}) as world:
        interactions = await asyncio.gather(*(world.animate(f"try {n}") for n in range(10)))
        answers = [await world.private_answer(i) for i in interactions]
        accepted = [a for a in answers if "on its way" in a]
        refused = [a for a in answers if "on its way" not in a]
        assert len(accepted) == 3, answers
        # Past eight at once between record and reservation, the rest wait for nothing (bot/jobs/runner.py).
        busy = [a for a in refused if a == MemberBurst.user_message]
        assert len(busy) <= 10 - MEMBER_BURST
        assert all("resets" in a and "credits" in a for a in refused if a not in busy), refused
        for interaction, answer in zip(interactions, answers, strict=True):
            if "on its way" in answer:
                assert (await world.ended(interaction, within=30)).state == "delivered"
        assert world.sunra.count("submit") == 3
        assert await balance_of(world) == 0
        await world.assert_ledger_matches_jobs()


async def test_the_fair_queue_serves_a_new_member_before_a_heavy_one(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"max_jobs_in_flight": 1, "max_concurrent_jobs": 3}) as world:
        world.sunra.plan_jobs(JobPlan(seconds=0.8), times=None)
        heavy = 7100
        first = []
        for n in range(3):
            # One at a time: sent together, their picture checks race and any could be submitted first.
            first.append(await world.animate(f"heavy {n}", user_id=heavy))
            assert "on its way" in await world.private_answer(first[-1])
        newcomer = await world.animate("newcomer", user_id=7200)
        answer = await world.private_answer(newcomer)
        assert "place 1 in line" in answer, answer  # ahead of the heavy user's two waiting jobs
        for interaction in [*first, newcomer]:
            assert (await world.ended(interaction, within=30)).state == "delivered"
        order = [job.input["prompt"] for job in sorted(world.sunra.jobs.values(), key=lambda j: j.created_at)]
        assert order == ["heavy 0", "newcomer", "heavy 1", "heavy 2"], order


async def test_commands_are_synced_only_when_they_change(tmp_path: Path) -> None:
    async with FakeDiscord() as discord:
        async with running_world(tmp_path, discord=discord):
            pass
        assert len(discord.command_puts) == 1
        async with running_world(tmp_path, discord=discord):
            pass
        assert len(discord.command_puts) == 1  # same definitions: no sync, no daily slot spent
        async with running_world(tmp_path, discord=discord, command_guild_ids=[p.DEFAULT_GUILD_ID]):
            pass
        assert len(discord.command_puts) == 2
        assert {c["name"] for c in discord.registered_commands()} >= {"animate", "quota"}


# ----------------------------------------------------------------------------------------------- restarts


@pytest.mark.parametrize("via_dm", [False, True], ids=["channel", "dm"])
async def test_a_restart_finds_the_post_it_already_made_and_does_not_post_again(
    tmp_path: Path, via_dm: bool
) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(discord)
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            sunra.next_job(seconds=1.0)
            interaction = await world.animate()
            if via_dm:
                await world.until(lambda j: j.state == "submitted", interaction)
                discord.refuse(p.DEFAULT_CHANNEL_ID, 10003)
            job = await world.ended(interaction)
            assert job.state == "delivered" and len(world.outcome_messages(job.id)) == 1
            # The process "died" between the post and its record: the row still says delivering.
            await world.db.execute("UPDATE jobs SET state = 'delivering' WHERE id = ?", (job.id,))
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            job = await world.until(lambda j: j.state == "delivered", interaction)
            assert len(world.outcome_messages(job.id)) == 1 and job.result_message_id is not None
            assert sunra.count("submit") == 1


async def test_a_restart_settles_a_job_caught_while_submitting_without_resubmitting(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(discord)
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            before = await balance_of(world)
            sunra.hang_next_submit(30)
            interaction = await world.animate()
            await world.until(lambda j: j.state == "submitting", interaction)
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            job = await world.ended(interaction)
            assert job.state == "uncertain" and job.notified
            [outcome] = world.outcome_messages(job.id)
            assert "not sent again" in outcome.message["content"]
            assert sunra.count("submit") == 1 and await balance_of(world) == before


async def test_a_submit_the_api_may_have_taken_is_never_sent_again(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        before = await balance_of(world)
        world.sunra.fail_next("submit", 500, after_processing=True)  # the job exists, the answer says 500
        interaction = await world.animate()
        job = await world.ended(interaction)
        assert job.state == "uncertain" and world.sunra.count("submit") == 1
        [outcome] = world.outcome_messages(job.id)
        assert "not sent again" in outcome.message["content"]
        assert await balance_of(world) == before
        await world.assert_ledger_matches_jobs()


async def test_a_rate_limited_submit_is_retried_and_delivers(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.fail_next("submit", 429, retry_after=0.1)
        interaction = await world.animate()
        job = await world.ended(interaction)
        assert job.state == "delivered" and world.sunra.count("submit") == 2 and len(world.sunra.jobs) == 1


async def test_a_bug_before_the_answer_still_ends_in_a_private_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_world(tmp_path) as world:

        async def broken(**_: Any) -> None:
            raise RuntimeError("simulated bug")

        monkeypatch.setattr(world.bot.quota, "quote", broken)
        interaction = await world.animate()
        callback = await world.discord.wait_for_callback(interaction.id)
        assert callback.flags & EPHEMERAL and "went wrong" in callback.data["content"]
        await assert_nothing_happened(world)


async def test_a_command_whose_acknowledgement_fails_is_dropped_without_a_trace(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        world.discord.inject_error("/callback", status=404, code=10062, message="Unknown interaction")
        interaction = await world.animate()
        job = await world.until(lambda j: j.state == "refused", interaction)
        assert job.notified and job.error_code == "not_acknowledged"
        await asyncio.sleep(0.3)
        await assert_nothing_happened(world)


async def test_a_busy_channel_does_not_hold_back_submissions_or_answers(tmp_path: Path) -> None:
    # Discord's real limit: 5 posts per 5 s in a channel, and each job posts twice (progress, result).
    async with (
        FakeDiscord() as discord,
        running_world(tmp_path, discord=discord, quota={"max_concurrent_jobs": 10}) as world,
    ):
        members = [7300 + n for n in range(12)]
        interactions = await asyncio.gather(*(world.animate(f"busy {uid}", user_id=uid) for uid in members))
        answers = [await world.private_answer(i, within=10) for i in interactions]
        assert all("on its way" in a for a in answers)
        # Every job reached the API long before the channel could show all the progress messages.
        await world.sunra.wait_until(lambda: world.sunra.count("submit") == len(members), within=5)
        assert len(channel_posts(world)) < len(members)
        jobs = [await world.ended(i, within=60) for i in interactions]
        assert all(j.state == "delivered" for j in jobs)
        for job in jobs:
            [outcome] = world.outcome_messages(job.id)
            assert outcome.message["message_reference"]["message_id"] == str(job.progress_message_id)
        bad = [(r.method, r.path, r.status) for r in world.discord.requests if r.status in (401, 403, 429)]
        assert world.discord.invalid_requests == 0, bad  # posts and edits go one at a time per channel


async def test_a_restart_never_takes_an_older_post_with_the_same_job_number_for_its_own(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(discord)
        async with running_world(tmp_path / "lost", discord=discord, sunra=sunra) as world:
            old = await world.ended(await world.animate("from a database that was lost"))
            assert len(world.outcome_messages(old.id)) == 1
        (tmp_path / "new").mkdir()
        async with running_world(tmp_path / "new", discord=discord, sunra=sunra) as world:
            discord.refuse(p.DEFAULT_CHANNEL_ID, 50001)
            discord.refuse_dm(p.DEFAULT_USER_ID)
            interaction = await world.animate("same job number, new database")
            job = await world.ended(interaction)
            assert job.id == old.id and job.result_message_id is None  # nobody could be reached
            # As if it died before posting, a few minutes after the old post.
            await world.db.execute(
                "UPDATE jobs SET state = 'delivering', created_at = created_at + 300 WHERE id = ?", (job.id,)
            )
            discord.unrefuse(p.DEFAULT_CHANNEL_ID)
            discord.unrefuse_dm(p.DEFAULT_USER_ID)
        async with running_world(tmp_path / "new", discord=discord, sunra=sunra) as world:
            job = await world.until(lambda j: j.state == "delivered", interaction)
            assert len(world.outcome_messages(job.id)) == 2  # the old one and this job's own, just posted
            assert job.result_message_id not in (None, *[m.id for m in world.outcome_messages(old.id)[:1]])


async def test_a_restart_adopts_a_progress_message_it_posted_but_did_not_record(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(discord)
        sunra.next_job(seconds=4)
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            interaction = await world.animate()
            job = await world.until(
                lambda j: j.state == "submitted" and bool(j.progress_message_id), interaction
            )
            progress_id = job.progress_message_id
            await world.db.execute("UPDATE jobs SET progress_message_id = NULL WHERE id = ?", (job.id,))
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            job = await world.ended(interaction)
            assert job.state == "delivered" and job.progress_message_id == progress_id
            progress_posts = [m for m in channel_posts(world) if m.id != job.result_message_id]
            assert [m.id for m in progress_posts] == [progress_id]  # adopted, not posted again
            [outcome] = world.outcome_messages(job.id)
            assert outcome.message["message_reference"]["message_id"] == str(progress_id)
            await world.discord.wait_for(
                lambda: "Done" in world.discord.message(progress_id or 0).content, timeout=5
            )


async def test_with_sound_switched_off_here_a_command_without_audio_makes_a_silent_video(
    tmp_path: Path,
) -> None:
    async with running_world(tmp_path) as world:
        await world.bot.quota.set_switches(
            guild_id=p.DEFAULT_GUILD_ID, actor_id=p.DEFAULT_OWNER_ID, allow_audio=False
        )
        before = await balance_of(world)
        job = await world.ended(await world.animate())
        assert job.state == "delivered" and job.cost_credits == 5
        [submitted] = world.sunra.jobs.values()
        assert submitted.input["generate_audio"] is False
        assert await balance_of(world) == before - 5

        asked = await world.animate(audio=True)
        callback = await world.discord.wait_for_callback(asked.id)
        assert callback.flags & EPHEMERAL and "sound is turned off" in callback.data["content"].lower()
        assert world.sunra.count("submit") == 1


async def test_a_job_waiting_in_the_bots_queue_can_be_cancelled_and_is_never_submitted(
    tmp_path: Path,
) -> None:
    async with running_world(tmp_path, quota={"max_jobs_in_flight": 1}) as world:
        before = await balance_of(world)
        world.sunra.next_job(seconds=3)
        first = await world.animate("first")
        await world.until(lambda j: j.state == "submitted", first)
        waiting = await world.animate("second")
        job = await world.until(lambda j: j.state == "queued" and bool(j.progress_message_id), waiting)
        progress = world.discord.message(job.progress_message_id or 0)
        await world.discord.wait_for(
            lambda: "place 1" in components_text(progress.message["components"]), timeout=5
        )
        click = await world.discord.dispatch_interaction(
            p.button_click(world.discord, f"kling:cancel:{job.id}", message=job.progress_message_id)
        )
        assert "cancelling" in (await world.private_answer(click)).lower()
        job = await world.ended(waiting)
        assert job.state == "cancelled" and job.request_id is None
        assert (await world.ended(first)).state == "delivered"
        assert [j.input["prompt"] for j in world.sunra.jobs.values()] == ["first"]
        assert await balance_of(world) == before - 10
        await world.assert_ledger_matches_jobs()


async def test_a_finished_video_survives_a_flaky_result_endpoint(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.fail_next("result", 503, times=8)  # more than the client's own retries
        job = await world.ended(await world.animate())
        assert job.state == "delivered" and world.sunra.count("result") == 9
        await world.assert_ledger_matches_jobs()


async def test_quota_with_very_long_video_links_still_answers_within_2000_characters(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"daily_credits": 1000}) as world:
        for n in range(5):
            await world.ended(await world.animate(f"scene {n}"))
        long_url = "https://storage.example.com/v/" + "a" * 500 + ".mp4?X-Amz-Signature=" + "b" * 300
        await world.db.execute("UPDATE jobs SET video_url = ? || id", (long_url,))
        await world.db.execute("UPDATE jobs SET result_message_id = NULL WHERE id = 1")  # not posted
        quota = await world.discord.dispatch_interaction(p.slash_command(world.discord, name="quota"))
        callback = await world.discord.wait_for_callback(quota.id)  # Discord refused 4,000 characters
        content = callback.data["content"]
        assert len(content) <= 2000 and f"{long_url}1 (could not be posted)" in content


async def test_waiting_at_the_api_costs_one_stream_connection_and_no_status_request(tmp_path: Path) -> None:
    # The submit answer says the job is queued and the stream brings every change: no status GET before,
    # beside or after the stream, whatever the job's length (benchmarks/crowd.py counts it per minute).
    async with running_world(tmp_path) as world:
        interactions = []
        for n in range(3):
            world.sunra.next_job(seconds=0.5 + n, queue_seconds=0.3)
            interactions.append(await world.animate(f"wave {n}", user_id=p.DEFAULT_USER_ID + 1 + n))
        for interaction in interactions:
            await delivered(world, interaction)
        for job in world.sunra.jobs:
            assert [world.sunra.count(route, job) for route in ("status", "stream", "result")] == [0, 1, 1]
