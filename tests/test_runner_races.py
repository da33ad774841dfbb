"""The job runner under concurrency: Cancel racing each step, posts that fail without an answer, a busy
channel. The real bot against the fakes; each test asserts the job's end, the messages and the ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakes import payloads as p
from tests.fakes.discord_server import InteractionRecord
from tests.world import World, balance_of, running_world

CHANNEL_POSTS = f"/channels/{p.DEFAULT_CHANNEL_ID}/messages"
EPHEMERAL = 64
SILENT_5S = 5  # credits of a 5 s video without sound


async def press_cancel(world: World, job_id: int, message_id: int | None) -> InteractionRecord:
    return await world.discord.dispatch_interaction(
        p.button_click(world.discord, f"kling:cancel:{job_id}", message=message_id)
    )


async def open_reservations(world: World) -> list[int]:
    rows = await world.db.fetchall(
        "SELECT r.job_id FROM quota_ledger r WHERE r.kind = 'reserve' AND NOT EXISTS"
        " (SELECT 1 FROM quota_ledger s WHERE s.job_id = r.job_id AND s.kind IN ('commit', 'refund'))"
    )
    return [int(row[0]) for row in rows]


# ----- Cancel racing each step --------------------------------------------------------------------------


async def test_cancel_while_submitting_stops_the_job_at_the_api_once(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"max_concurrent_jobs": 1}) as world:
        before = await balance_of(world)
        world.sunra.next_job(seconds=30)
        world.sunra.hang_next_submit(1.0)  # the job exists at sunra; the answer comes a second later
        interaction = await world.animate(audio=False)
        job = await world.until(
            lambda j: j.state == "submitting" and j.progress_message_id is not None, interaction
        )
        click = await press_cancel(world, job.id, job.progress_message_id)
        assert "cancelling" in (await world.private_answer(click)).lower()
        job = await world.ended(interaction)
        assert job.state == "cancelled" and job.request_id is not None, job
        assert world.sunra.count("cancel") == 1 and len(world.outcome_messages(job.id)) == 1
        assert await balance_of(world) == before and await open_reservations(world) == []
        # No in-flight slot is held: the member's next job runs at the per-member limit of 1.
        again = await world.ended(await world.animate("again", audio=False))
        assert again.state == "delivered"
        await world.assert_ledger_matches_jobs()


async def test_cancel_while_the_result_is_fetched_still_delivers_the_made_video_once(tmp_path: Path) -> None:
    """The API has made (and billed) the video; the press lands while its result is being fetched.
    Killing the job's task there used to leave it `submitted` forever with its credits held."""
    async with running_world(tmp_path) as world:
        before = await balance_of(world)
        world.sunra.next_job(seconds=0.3)
        world.sunra.fail_next("result", 503, delay=0.4, times=3)
        interaction = await world.animate(audio=False)
        job = await world.until(lambda j: j.progress_message_id is not None, interaction)
        await world.sunra.wait_until(lambda: world.sunra.count("result") >= 1, within=10)
        click = await press_cancel(world, job.id, job.progress_message_id)
        await world.private_answer(click)
        job = await world.ended(interaction)
        assert job.state == "delivered", job
        assert len(world.outcome_messages(job.id)) == 1
        assert await balance_of(world) == before - SILENT_5S and await open_reservations(world) == []
        await world.assert_ledger_matches_jobs()


async def test_cancel_pressed_many_times_at_every_moment_ends_each_job_once(tmp_path: Path) -> None:
    """Presses rain on one job from the moment its progress message exists until it has ended."""
    async with running_world(tmp_path) as world:
        world.sunra.next_job(seconds=0.6, queue_seconds=0.2)
        interaction = await world.animate(audio=False)
        job = await world.until(lambda j: j.progress_message_id is not None, interaction)
        clicks = []
        while (job := await world.job_for(interaction)).state not in ("cancelled", "delivered", "failed"):
            clicks.append(await press_cancel(world, job.id, job.progress_message_id))
            await asyncio.sleep(0.03)
        job = await world.ended(interaction)
        answers = [await world.private_answer(click) for click in clicks]
        assert all(answers), "every press gets an answer"
        assert len(world.outcome_messages(job.id)) == 1
        assert world.sunra.count("cancel") <= 1
        assert await open_reservations(world) == []
        await world.assert_ledger_matches_jobs()


# ----- every press answered in time ---------------------------------------------------------------------


async def test_cancel_is_answered_at_once_even_when_the_channel_is_rate_limited(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"max_jobs_in_flight": 1}) as world:
        world.sunra.next_job(seconds=30)
        first = await world.animate("first", audio=False)
        await world.until(lambda j: j.state == "submitted" and j.progress_message_id is not None, first)
        waiting = await world.animate("second", audio=False)
        job = await world.until(lambda j: j.state == "queued" and j.progress_message_id is not None, waiting)
        # The channel has used its posts for a long while: the job's ending message has to wait.
        world.discord.set_rate_limit("message_create", 1, 30.0)
        click = await press_cancel(world, job.id, job.progress_message_id)
        callback = await world.discord.wait_for_callback(click.id)
        assert callback.type == 5 and callback.flags & EPHEMERAL and callback.latency < 3.0
        assert "cancelling" in (await world.private_answer(click)).lower()
        job = await world.until(lambda j: j.state == "cancelled", waiting)
        assert world.outcome_messages(job.id) == [], "answered before the channel post could be made"


# ----- one busy channel never stalls the others ---------------------------------------------------------


async def test_an_expired_job_in_a_busy_channel_does_not_hold_back_other_servers(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"max_concurrent_jobs": 1}) as world:
        other_channel = world.discord.add_channel(p.DEFAULT_GUILD_ID, "elsewhere")
        world.sunra.next_job(seconds=30)
        running = await world.animate("running", audio=False)
        await world.until(lambda j: j.state == "submitted", running)
        stale = await world.animate("stale", audio=False)  # queued: the member's one slot is taken
        job = await world.until(lambda j: j.state == "queued" and j.progress_message_id is not None, stale)
        world.discord.set_rate_limit("message_create", 1, 30.0)  # this channel cannot post for 30 s
        await world.db.execute("UPDATE jobs SET deadline = 0 WHERE id = ?", (job.id,))
        member = 7_301
        world.discord.ensure_member(p.DEFAULT_GUILD_ID, member)
        image = world.image()
        elsewhere = await world.discord.dispatch_interaction(
            p.slash_command(
                world.discord,
                options={"image": image, "prompt": "elsewhere", "audio": False},
                user_id=member,
                channel_id=int(other_channel["id"]),
            )
        )
        await world.sunra.wait_until(lambda: world.sunra.count("submit") == 2, within=10)
        assert (await world.until(lambda j: j.state == "cancelled", stale)).error_code == "lifetime_exceeded"
        await world.until(lambda j: j.request_id is not None, elsewhere)


# ----- a paid video is never reported as failed ---------------------------------------------------------


@pytest.mark.parametrize("landed", [False, True], ids=["before_posting", "after_posting"])
async def test_a_dropped_connection_while_posting_the_video_still_delivers_it_once(
    tmp_path: Path, landed: bool
) -> None:
    """The video is made and paid for; Discord's connection drops without an answer (aiohttp's
    ServerDisconnectedError, not an HTTPException), before or after the post was made."""
    async with running_world(tmp_path) as world:
        before = await balance_of(world)
        world.sunra.next_job(seconds=0.5)
        interaction = await world.animate(audio=False)
        await world.until(lambda j: j.progress_message_id is not None, interaction)
        world.discord.inject_disconnect(CHANNEL_POSTS, method="POST", after_processing=landed)
        job = await world.ended(interaction)
        assert job.state == "delivered", job
        [outcome] = world.outcome_messages(job.id)
        assert job.result_message_id == outcome.id
        assert await balance_of(world) == before - SILENT_5S
        await world.assert_ledger_matches_jobs()


@pytest.mark.parametrize("landed", [False, True], ids=["before_posting", "after_posting"])
async def test_a_dropped_connection_while_telling_a_failure_still_tells_it_once(
    tmp_path: Path, landed: bool
) -> None:
    async with running_world(tmp_path) as world:
        world.sunra.fail_next_job("Content flagged", seconds=0.5)
        interaction = await world.animate(audio=False)
        await world.until(lambda j: j.progress_message_id is not None, interaction)
        world.discord.inject_disconnect(CHANNEL_POSTS, method="POST", after_processing=landed)
        job = await world.ended(interaction)
        assert job.state == "failed" and job.notified, job
        [outcome] = world.outcome_messages(job.id)
        assert job.result_message_id == outcome.id
        await world.assert_ledger_matches_jobs()


# ----- the USD cap counts what the API may bill ---------------------------------------------------------

# One silent 5 s job costs 5 credits = $0.35 at the default $0.07 per credit: the cap allows exactly one.
ONE_JOB_USD = {"global_daily_usd": 0.35}


async def usd_micros_today(world: World) -> int:
    row = await world.db.fetchone("SELECT COALESCE(SUM(usd_micros), 0) FROM quota_ledger")
    assert row is not None
    return int(row[0])


async def test_an_uncertain_submission_returns_the_credits_but_keeps_its_usd_under_the_cap(
    tmp_path: Path,
) -> None:
    async with running_world(tmp_path, quota=ONE_JOB_USD) as world:
        before = await balance_of(world)
        world.sunra.fail_next("submit", 500, after_processing=True)  # the job exists; the answer is a 500
        job = await world.ended(await world.animate(audio=False))
        assert job.state == "uncertain" and job.may_be_billed
        assert await balance_of(world) == before
        assert await usd_micros_today(world) == 350_000
        refused = await world.animate("a second one", audio=False)
        callback = await world.discord.wait_for_callback(refused.id)
        assert callback.type == 4 and "spending limit" in callback.data["content"]
        assert world.sunra.count("submit") == 1
        await world.assert_ledger_matches_jobs()


async def test_a_cancel_the_api_did_not_confirm_returns_the_credits_but_keeps_its_usd(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota=ONE_JOB_USD) as world:
        before = await balance_of(world)
        world.sunra.next_job(seconds=30)
        interaction = await world.animate(audio=False)
        job = await world.until(
            lambda j: j.state == "submitted" and j.progress_message_id is not None, interaction
        )
        world.sunra.fail_next("cancel", 503, times=20)
        click = await press_cancel(world, job.id, job.progress_message_id)
        assert "cancelling" in (await world.private_answer(click)).lower()
        job = await world.ended(interaction)
        assert job.state == "cancelled" and job.may_be_billed
        assert await balance_of(world) == before and await open_reservations(world) == []
        assert await usd_micros_today(world) == 350_000
        await world.assert_ledger_matches_jobs()


async def test_a_cancel_the_api_confirmed_gives_back_the_usd_too(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota=ONE_JOB_USD) as world:
        world.sunra.next_job(seconds=30)
        interaction = await world.animate(audio=False)
        job = await world.until(
            lambda j: j.state == "submitted" and j.progress_message_id is not None, interaction
        )
        await press_cancel(world, job.id, job.progress_message_id)
        job = await world.ended(interaction)
        assert job.state == "cancelled" and not job.may_be_billed
        assert await usd_micros_today(world) == 0
        assert (await world.ended(await world.animate("next", audio=False))).state == "delivered"


async def test_a_cancel_the_api_only_requested_then_ignored_delivers_and_charges(tmp_path: Path) -> None:
    """Issue 19, item 4: CANCELLATION_REQUESTED is not an ending. The job ends COMPLETED with a video
    all the same: it is delivered and charged, never refunded."""
    async with running_world(tmp_path) as world:
        before = await balance_of(world)
        world.sunra.cancel_mode = "ignored"
        world.sunra.next_job(seconds=1.5)
        interaction = await world.animate(audio=False)
        job = await world.until(
            lambda j: j.state == "submitted" and j.progress_message_id is not None, interaction
        )
        click = await press_cancel(world, job.id, job.progress_message_id)
        assert "cancelling" in (await world.private_answer(click)).lower()
        job = await world.ended(interaction)
        assert job.state == "delivered" and world.sunra.count("cancel") == 1
        assert await balance_of(world) == before - job.cost_credits
        await world.assert_ledger_matches_jobs()


async def test_a_requested_cancel_is_a_cancel_once_the_api_says_cancelled(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota=ONE_JOB_USD) as world:
        before = await balance_of(world)
        world.sunra.cancel_mode = "requested"
        world.sunra.cancel_seconds = 0.5
        world.sunra.next_job(seconds=30)
        interaction = await world.animate(audio=False)
        job = await world.until(
            lambda j: j.state == "submitted" and j.progress_message_id is not None, interaction
        )
        await press_cancel(world, job.id, job.progress_message_id)
        await asyncio.sleep(0.2)
        assert (await world.job_for(interaction)).state == "submitted"  # requested, not ended yet
        job = await world.ended(interaction)
        assert job.state == "cancelled" and not job.may_be_billed
        assert await balance_of(world) == before and await usd_micros_today(world) == 0
        await world.assert_ledger_matches_jobs()
