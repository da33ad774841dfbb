"""The fault matrix: one fault per row, injected into the loopback fakes while the whole bot runs.

Each row says what the member reads (the sentence, or its essential part), how the job ends and, through
the ledger, what it cost: a delivered job its price once, any other end nothing. Rows reuse the fakes'
own switches; the crash rows at the end reuse tests/test_crash.py's harness (a real `python -m bot`,
SIGKILLed) for the steps its own tests do not kill at.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.store.jobs import JobRow
from bot.sunra import Timeouts
from bot.sunra.errors import (
    SERVICE_DOWN_MESSAGE,
    SubmissionUncertain,
)
from tests.fakes import payloads as p
from tests.fakes.discord_server import InteractionRecord
from tests.fakes.sunra_server import JobFailure, JobPlan, error_body
from tests.test_crash import Crash, crash_world, job_state_is, kill_when
from tests.world import FAST_RETRY, World, balance_of, running_world, shown_text

CHANNEL_POSTS = f"/channels/{p.DEFAULT_CHANNEL_ID}/messages"
# Waits the rows make the bot honour; small, so the matrix stays quick.
RETRY_AFTER = 0.3
# A failure Kling says retrying will not mend, and what the member reads about it.
NOT_A_PHOTO = "The start image is not a photo"
NOT_A_PHOTO_SAYS = (
    f"Kling could not make this video: {NOT_A_PHOTO}. Trying again with the same input will not help."
)
# A client that gives up on an answer after this long (the timeout rows).
SHORT_READ = Timeouts(read=0.3)
# What a member must never read: a machine word (RATE_LIMITED, content_policy) or a bare HTTP status.
BARE_CODE = re.compile(r"\b[A-Z]{2,}(?:_[A-Z]+)+\b|\b[45]\d\d\b")


@dataclass(frozen=True)
class Fault:
    """One row. ``arrange`` scripts the fakes before the command; ``during`` acts once the job runs;
    ``check`` asserts what else the row is about (how often a call was made, how long the bot waited)."""

    state: str
    says: str
    arrange: Callable[[World], object] = lambda world: None
    during: Callable[[World, InteractionRecord], Awaitable[object]] | None = None
    check: Callable[[World, JobRow], object] = lambda world, job: None  # may be a coroutine function
    video: str | None = None  # delivered as "file" or as a "link"
    options: dict[str, Any] = field(default_factory=dict)  # running_world's


async def member_reads(world: World, interaction: InteractionRecord, job: JobRow) -> str:
    """The message that tells the member how the job ended: the private answer of a refused command,
    else the one outcome post (in the channel, or the DM when the channel refused it)."""
    if job.state == "refused":
        return await world.private_answer(interaction)
    [outcome] = world.outcome_messages(job.id)
    if job.state == "delivered":
        assert outcome.files or (job.video_url or "?") in shown_text(outcome.message)
    return shown_text(outcome.message)


def without_links(text: str) -> str:
    return re.sub(r"https?://\S+|<[@#]!?&?\d+>", "", text)


async def submitted(world: World, interaction: InteractionRecord) -> JobRow:
    return await world.until(
        lambda j: j.state == "submitted" and j.progress_message_id is not None, interaction
    )


def gap(world: World, route: str) -> float:
    """Seconds between the first two requests to ``route``."""
    first, second = [r.at for r in world.sunra.requests if r.route == route][:2]
    return second - first


def sent_again_after_the_reset(world: World, job: JobRow) -> None:
    """A rate-limited submit made no job: it is sent again once, after the wait the API asked for, and
    new commands are not refused meanwhile."""
    assert world.sunra.count("submit") == 2 and len(world.sunra.jobs) == 1
    assert gap(world, "submit") >= RETRY_AFTER
    assert world.bot.sunra.submissions_blocked is None


async def submissions_blocked(world: World, job: JobRow) -> None:
    """The key or the account is the problem: no job was made, and the next command is refused at once
    with the same sentence, instead of failing at the API again."""
    assert len(world.sunra.jobs) == 0
    submits = world.sunra.count("submit")
    again = await world.animate("once more")
    callback = await world.discord.wait_for_callback(again.id)
    assert callback.type == 4 and callback.data["content"] == SERVICE_DOWN_MESSAGE
    assert world.sunra.count("submit") == submits


def polling(*faults: dict[str, Any]) -> Callable[[World], None]:
    """The status stream is off, so the bot polls, and the next status answers are ``faults``."""

    def arrange(world: World) -> None:
        world.sunra.stream_enabled = False
        for fault in faults:
            world.sunra.fail_next("status", **fault)

    return arrange


def met_every_fault(route: str) -> Callable[[World, JobRow], None]:
    """The bot met each scripted answer on ``route`` and asked again, without submitting twice."""

    def check(world: World, job: JobRow) -> None:
        assert world.sunra.pending_faults(route) == 0 and world.sunra.count("submit") == 1
        assert world.bot.sunra.submissions_blocked is None  # a rate limit is not a rejected key

    return check


def counts(**expected: int) -> Callable[[World, JobRow], None]:
    def check(world: World, job: JobRow) -> None:
        assert {route: world.sunra.count(route) for route in expected} == expected

    return check


def tried_again_and_no_link(world: World, job: JobRow) -> None:
    assert world.sunra.count("video") > FAST_RETRY.attempts  # the client's retries, then the bot's
    [outcome] = world.outcome_messages(job.id)
    assert (job.video_url or "?") not in shown_text(outcome.message) and outcome.files == []


# ----- sunra -----------------------------------------------------------------------------------------------

SUNRA = {
    "401": Fault(
        "refused",
        SERVICE_DOWN_MESSAGE,
        arrange=lambda world: world.sunra.reject_key(401),
        check=submissions_blocked,
    ),
    "402-no-balance": Fault(
        "failed",
        SERVICE_DOWN_MESSAGE,
        arrange=lambda world: setattr(world.sunra, "balance", 0),
        check=submissions_blocked,
    ),
    "403-key-rejected": Fault(
        "refused",
        SERVICE_DOWN_MESSAGE,
        arrange=lambda world: world.sunra.reject_key(403),
        check=submissions_blocked,
    ),
    "403-rate-limit": Fault(
        "delivered",
        "your video is ready!",
        arrange=lambda world: world.sunra.fail_next("submit", 403, rate_limit=True, retry_after=RETRY_AFTER),
        check=sent_again_after_the_reset,
        video="file",
    ),
    "422-invalid-input": Fault(
        "failed",
        "Kling could not use the picture or the options of this job. Kling said: start_image_url: could "
        "not be fetched. Trying again with the same input will not help.",
        arrange=lambda world: world.sunra.fail_next(
            "submit",
            422,
            body=error_body(
                422,
                "start_image_url: could not be fetched",
                details=[{"field": "start_image_url", "message": "could not be fetched"}],
            ),
        ),
        check=counts(submit=1),
    ),
    "429-retry-after": Fault(
        "delivered",
        "your video is ready!",
        arrange=lambda world: world.sunra.fail_next("submit", 429, retry_after=RETRY_AFTER),
        check=sent_again_after_the_reset,
        video="file",
    ),
    "429-ratelimit-reset": Fault(
        "delivered",
        "your video is ready!",
        arrange=lambda world: world.sunra.fail_next(
            "submit",
            429,
            headers={"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "0.3"},
        ),
        check=sent_again_after_the_reset,
        video="file",
    ),
    "429-on-status": Fault(
        "delivered",
        "your video is ready!",
        arrange=polling({"status": 429, "retry_after": RETRY_AFTER, "times": 2}),
        check=met_every_fault("status"),
        video="file",
    ),
    "403-rate-limit-on-result": Fault(
        "delivered",
        "your video is ready!",
        arrange=lambda world: world.sunra.fail_next(
            "result", 403, rate_limit=True, retry_after=RETRY_AFTER, times=2
        ),
        check=met_every_fault("result"),
        video="file",
    ),
    "5xx-submit": Fault(
        "uncertain",
        SubmissionUncertain.user_message,
        arrange=lambda world: world.sunra.fail_next("submit", 503, times=3),
        check=counts(submit=1),
    ),
    "5xx-submit-after-the-job-was-made": Fault(
        "uncertain",
        SubmissionUncertain.user_message,
        arrange=lambda world: world.sunra.fail_next("submit", 500, after_processing=True),
        check=counts(submit=1),
    ),
    "5xx-status": Fault(
        "delivered",
        "your video is ready!",
        arrange=polling({"status": 503, "times": 3}, {"status": 500, "times": 2}),
        check=met_every_fault("status"),
        video="file",
    ),
    "5xx-result": Fault(
        "delivered",
        "your video is ready!",
        arrange=lambda world: world.sunra.fail_next("result", 502, times=4),
        check=counts(result=5),
        video="file",
    ),
    "timeout-submit": Fault(
        "uncertain",
        SubmissionUncertain.user_message,
        arrange=lambda world: world.sunra.hang_next_submit(2.0),
        check=counts(submit=1),
        options={"timeouts": SHORT_READ},
    ),
    "timeout-status": Fault(
        "delivered",
        "your video is ready!",
        arrange=polling({"status": 200, "delay": 2.0, "times": 2}),
        check=met_every_fault("status"),
        options={"timeouts": SHORT_READ},
        video="file",
    ),
    "malformed-submit": Fault(
        "uncertain",
        SubmissionUncertain.user_message,
        arrange=lambda world: world.sunra.fail_next("submit", malformed=True, after_processing=True),
        check=counts(submit=1),
    ),
    "malformed-status": Fault(
        "delivered",
        "your video is ready!",
        arrange=polling({"malformed": True, "times": 3}),
        check=met_every_fault("status"),
        video="file",
    ),
    "malformed-result": Fault(
        "delivered",
        "your video is ready!",
        arrange=lambda world: world.sunra.fail_next("result", malformed=True, times=3),
        check=met_every_fault("result"),
        video="file",
    ),
    "unknown-status-word-while-running": Fault(
        "delivered",
        "your video is ready!",
        arrange=lambda world: world.sunra.next_job(seconds=1.5, queue_seconds=0.2),
        during=lambda world, interaction: unknown_status_for_a_while(world, interaction),
        video="file",
    ),
    "unknown-status-word-at-the-end": Fault(
        "failed",
        "Kling could not make this video: The model could not generate this video. Trying again may help.",
        arrange=lambda world: world.sunra.next_job(final_status={"status": "EXPIRED_AND_ARCHIVED"}),
        # Ended by its result within seconds, not cancelled at its lifetime (60 minutes).
    ),
    "prediction-failed-retryable": Fault(
        "failed",
        "Kling could not make this video: The GPU worker restarted. Trying again may help.",
        arrange=lambda world: world.sunra.plan_jobs(
            JobPlan(fail=JobFailure(reason="The GPU worker restarted", retryable=True))
        ),
    ),
    "prediction-failed-not-retryable": Fault(
        "failed",
        NOT_A_PHOTO_SAYS,
        arrange=lambda world: world.sunra.fail_next_job(NOT_A_PHOTO, retryable=False),
    ),
    # Kling's own link is posted, and charged: the bot cannot tell a file that is gone from one that
    # is not there yet, and the API has made (and billed) the video.
    # Issue 19, item 5: a dead link is tried again, then refunded by a compensating entry, never posted.
    "video-url-404": Fault(
        "undeliverable",
        "Your credits were given back.",
        arrange=lambda world: world.sunra.fail_next("video", 404, times=1000),
        check=tried_again_and_no_link,
        options={"jobs": {"video_fetch_seconds": 1.0}},
    ),
    "video-url-404-then-back": Fault(
        "delivered",
        "your video is ready!",
        arrange=lambda world: world.sunra.fail_next("video", 404, times=2),
        check=counts(video=3),
        video="file",
    ),
    "video-cut-off-once": Fault(
        "delivered",
        "your video is ready!",
        arrange=lambda world: world.sunra.fail_next("video", cut_after=70_000),
        check=counts(video=2),
        video="file",
    ),
    "video-cut-off-every-time": Fault(
        "undeliverable",
        "Your credits were given back.",
        arrange=lambda world: world.sunra.fail_next("video", cut_after=70_000, times=1000),
        check=tried_again_and_no_link,
        options={"jobs": {"video_fetch_seconds": 1.0}},
    ),
}


async def unknown_status_for_a_while(world: World, interaction: InteractionRecord) -> None:
    job = await submitted(world, interaction)
    world.sunra.force_status(job.request_id or "", {"status": "WARMING_UP", "request_id": job.request_id})
    await asyncio.sleep(0.5)
    world.sunra.force_status(job.request_id or "", None)


# ----- Discord ---------------------------------------------------------------------------------------------


def at_the_final_post(
    act: Callable[[World], object],
    *,
    says: str = "your video is ready!",
    check: Callable[[World, JobRow], object],
    video: str = "file",
) -> Fault:
    """A row whose fault meets the video's post: ``act`` runs once the progress message exists."""

    async def during(world: World, interaction: InteractionRecord) -> None:
        await submitted(world, interaction)
        act(world)

    return Fault(
        "delivered",
        says,
        arrange=lambda world: world.sunra.next_job(seconds=1.0),
        during=during,
        check=check,
        video=video,
    )


def posted_again_after(world: World, status: int, *, wait: float = 0.0) -> None:
    """The final post met ``status`` once and was sent again (after ``wait`` seconds), never more."""
    posts = [r for r in world.discord.requests if r.method == "POST" and r.path == CHANNEL_POSTS]
    [refused] = [n for n, r in enumerate(posts) if r.status == status]
    assert [r.status for r in posts[refused + 1 :]] == [200]
    assert posts[refused + 1].at - posts[refused].at >= wait


def sent_by_dm(world: World, job: JobRow) -> None:
    """A channel that refuses is not asked again and again: the video goes to the member's DMs."""
    [outcome] = world.outcome_messages(job.id)
    assert outcome.channel_id != p.DEFAULT_CHANNEL_ID
    assert world.discord.invalid_requests <= 4


def dead_token_tried_once(world: World) -> None:
    """A 401 counts toward Discord's invalid-request ban: a dead token is never tried twice."""
    webhook_calls = [r for r in world.discord.requests if r.path.startswith("/webhooks/")]
    assert len(webhook_calls) == 1 and webhook_calls[0].status == 401
    assert world.discord.invalid_requests == 1


async def expire_token_after_deferral(world: World, interaction: InteractionRecord) -> None:
    await world.discord.wait_for_callback(interaction.id)
    world.discord.expire_token(interaction.token)


DISCORD = {
    "429-on-the-post": at_the_final_post(
        lambda world: world.discord.inject_error(
            CHANNEL_POSTS, method="POST", status=429, retry_after=RETRY_AFTER
        ),
        check=lambda world, job: posted_again_after(world, 429, wait=RETRY_AFTER),
    ),
    "403-missing-permissions-50013": at_the_final_post(
        lambda world: world.discord.refuse(p.DEFAULT_CHANNEL_ID, 50013),
        says="(I could not post in",
        check=sent_by_dm,
        video="file",
    ),
    "404-unknown-channel-10003": at_the_final_post(
        lambda world: world.discord.refuse(p.DEFAULT_CHANNEL_ID, 10003),
        says="(I could not post in",
        check=sent_by_dm,
        video="file",
    ),
    "413-too-large-40005": at_the_final_post(
        lambda world: world.discord.inject_error(
            CHANNEL_POSTS, method="POST", status=413, code=40005, message="Request entity too large"
        ),
        check=lambda world, job: posted_again_after(world, 413),
        video="link",
    ),
    "401-expired-interaction-token-50027": Fault(
        "delivered",
        "your video is ready!",
        during=lambda world, interaction: expire_token_after_deferral(world, interaction),
        check=lambda world, job: dead_token_tried_once(world),
        video="file",
    ),
}


@pytest.mark.parametrize(
    "fault",
    [pytest.param(fault, id=f"sunra-{name}") for name, fault in SUNRA.items()]
    + [pytest.param(fault, id=f"discord-{name}") for name, fault in DISCORD.items()],
)
async def test_a_fault_ends_in_a_sentence_a_state_and_a_right_ledger(tmp_path: Path, fault: Fault) -> None:
    async with running_world(tmp_path, **fault.options) as world:
        before = await balance_of(world)
        fault.arrange(world)
        interaction = await world.animate()
        if fault.during is not None:
            await fault.during(world, interaction)
        job = await world.ended(interaction)
        text = await member_reads(world, interaction, job)
        assert job.state == fault.state, (job, text)
        assert fault.says in text, text
        assert not BARE_CODE.search(without_links(text)), text
        charged = job.cost_credits if job.state == "delivered" else 0  # undeliverable: compensated
        assert await balance_of(world) == before - charged
        await world.assert_ledger_matches_jobs()
        if fault.video is not None:
            [outcome] = world.outcome_messages(job.id)
            if fault.video == "file":
                assert outcome.files[0].data == world.sunra.video_bytes(job.request_id or "")
            else:
                assert outcome.files == [] and (job.video_url or "?") in shown_text(outcome.message)
        checked = fault.check(world, job)
        if inspect.isawaitable(checked):
            await checked


# ----- Cancel racing the API's completion ------------------------------------------------------------------


@pytest.mark.parametrize("first", ["api", "cancel", "same-moment"])
async def test_cancel_pressed_as_the_api_completes_ends_the_job_exactly_once(
    tmp_path: Path, first: str
) -> None:
    """The member presses Cancel as Kling finishes. Whichever lands first decides: a video the API
    finished is delivered and charged once; a job the API cancelled is told once and costs nothing.
    Never both, never neither."""
    async with running_world(tmp_path) as world:
        before = await balance_of(world)
        world.sunra.next_job(seconds=60)
        interaction = await world.animate()
        job = await submitted(world, interaction)
        request_id = job.request_id or ""
        press = p.button_click(world.discord, f"kling:cancel:{job.id}", message=job.progress_message_id)
        if first == "api":
            world.sunra.finish(request_id)
            click = await world.discord.dispatch_interaction(press)
        elif first == "cancel":
            click = await world.discord.dispatch_interaction(press)
            await world.sunra.wait_until(lambda: world.sunra.count("cancel") == 1)
            world.sunra.finish(request_id)
        else:

            async def finish() -> None:
                world.sunra.finish(request_id)

            click, _ = await asyncio.gather(world.discord.dispatch_interaction(press), finish())
        assert await world.private_answer(click)
        job = await world.ended(interaction)
        text = await member_reads(world, interaction, job)
        expected = {"api": ["delivered"], "cancel": ["cancelled"]}.get(first, ["delivered", "cancelled"])
        assert job.state in expected, (job, text)
        if job.state == "delivered":
            assert "your video is ready!" in text
            [outcome] = world.outcome_messages(job.id)
            assert outcome.files[0].data == world.sunra.video_bytes(request_id)
        else:
            assert (
                "you cancelled it" in text.lower() and world.sunra.jobs[request_id].cancelled_at is not None
            )
        endings = await world.db.fetchall(
            "SELECT to_state FROM job_events WHERE job_id = ? AND to_state IN "
            "('delivered', 'failed', 'cancelled', 'refused', 'uncertain')",
            (job.id,),
        )
        assert len(endings) == 1, endings
        assert world.sunra.count("submit") == 1 and world.sunra.count("cancel") <= 1
        charged = job.cost_credits if job.state == "delivered" else 0  # undeliverable: compensated
        assert await balance_of(world) == before - charged
        await world.assert_ledger_matches_jobs()


# ----- the process killed (SIGKILL) and restarted ----------------------------------------------------------
# tests/test_crash.py kills right after the acknowledgement, while checking, submitting, waiting,
# downloading and around the final post; these rows kill at the steps it leaves out, with its harness.
# Its assert_exactly_once checks one outcome message per job, nothing submitted twice, and the ledger.


@dataclass(frozen=True)
class Kill:
    kill: Callable[[Crash], Awaitable[object]]  # scripts the fakes, sends commands, kills at the step
    states: tuple[str, ...]  # every job's end, in job order, after the restart
    says: str
    env: dict[str, str] = field(default_factory=dict)


def progress_shown(
    world: Crash, interaction: InteractionRecord, state: str | None = None
) -> Callable[[], Any]:
    """The job's row once its progress message exists (and it is in ``state``, if given)."""

    def check() -> Any:
        row = world.job(interaction)
        if row is None or row["progress_message_id"] is None or state not in (None, row["state"]):
            return None
        return row

    return check


async def killed_while_waiting_in_the_bots_queue(world: Crash) -> None:
    world.sunra.next_job(seconds=2.0)
    first = await world.animate("the first of two")
    await world.until(job_state_is(world, first, "submitted"), "the first job at the API")
    second = await world.animate("the second of two")
    await kill_when(world, job_state_is(world, second, "queued"), "the second job waiting its turn")


async def killed_before_a_failure_is_told(world: Crash) -> None:
    world.sunra.fail_next_job(NOT_A_PHOTO, retryable=False, seconds=1.0)
    interaction = await world.animate("a failure to tell")
    await world.until(progress_shown(world, interaction), "the progress message")
    # The post telling the failure fails once; discord.py waits a second before sending it again.
    world.discord.inject_error(CHANNEL_POSTS, method="POST", status=500)
    failed = job_state_is(world, interaction, "failed")
    await kill_when(
        world, lambda: failed() and any(r.status == 500 for r in world.message_posts()), "the failure's post"
    )


async def killed_while_the_cancel_is_sent(world: Crash) -> None:
    # Long enough to be still running when the restarted bot sends its cancel again: a job the API
    # finishes first is delivered and charged (a cancel counts only once the API ends the job cancelled),
    # which a slow restart on a loaded machine would otherwise make the outcome.
    world.sunra.next_job(seconds=30.0)
    world.sunra.fail_next("cancel", 503, delay=30)  # the API's answer to the cancel never comes
    interaction = await world.animate("a cancel in flight")
    row = await world.until(progress_shown(world, interaction, "submitted"), "the job at the API")
    await world.discord.dispatch_interaction(
        p.button_click(world.discord, f"kling:cancel:{row['id']}", message=int(row["progress_message_id"]))
    )
    await kill_when(world, lambda: world.sunra.count("cancel") == 1, "the cancel at the API")


KILLS = {
    "waiting-in-the-bots-queue": Kill(
        killed_while_waiting_in_the_bots_queue,
        ("delivered", "delivered"),
        "your video is ready!",
        {"QUOTA__MAX_JOBS_IN_FLIGHT": "1"},
    ),
    "before-a-failure-is-told": Kill(killed_before_a_failure_is_told, ("failed",), NOT_A_PHOTO_SAYS),
    "while-the-cancel-is-sent": Kill(
        killed_while_the_cancel_is_sent, ("cancelled",), "You cancelled it; nothing was charged."
    ),
}


@pytest.mark.parametrize("step", [pytest.param(kill, id=name) for name, kill in KILLS.items()])
async def test_killed_at_a_step_and_restarted_ends_each_job_once(tmp_path: Path, step: Kill) -> None:
    async with asyncio.timeout(60), crash_world(tmp_path, **step.env) as world:
        await step.kill(world)
        await world.bot.start()
        rows = await world.wait_settled()
        world.assert_exactly_once()
        assert tuple(row["state"] for row in rows) == step.states, world.describe()
        for row in rows:
            [message] = world.outcome_messages(row["id"])
            assert step.says in message.content, message.content
            assert not BARE_CODE.search(without_links(message.content)), message.content
