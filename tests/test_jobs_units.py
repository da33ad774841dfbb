"""Small pure pieces of the job runner: fair order, submit pacing, progress text, marks."""

from __future__ import annotations

import asyncio
import time

from bot.jobs import Phase, Progress, SubmitPacer, fair_order
from bot.store.jobs import JobRow
from cogs.jobs._delivery import job_mark, job_nonce, outcome_mark, progress_text


def job(job_id: int, user_id: int) -> JobRow:
    return JobRow(
        id=job_id,
        interaction_id=str(job_id),
        guild_id=1,
        channel_id=2,
        user_id=user_id,
        state="queued",
        params={},
        upload_limit=1,
        start_image_url=None,
        end_image_url=None,
        request_id=None,
        progress_message_id=None,
        result_message_id=None,
        video_url=None,
        video_size=None,
        error_code=None,
        error_message=None,
        retryable=None,
        notified=False,
        cost_credits=0,
        created_at=0,
        updated_at=0,
        submitted_at=None,
        finished_at=None,
        deadline=0,
    )


def test_fair_order_is_round_robin() -> None:
    # Member 1 queued five jobs before member 2 and member 3 queued one each.
    queued = [job(i, 1) for i in range(1, 6)] + [job(6, 2), job(7, 3)]
    order = [j.id for j in fair_order(queued, usage={})]
    assert order[:3] == [1, 6, 7]  # everyone's first job before anyone's second
    assert order[3:] == [2, 3, 4, 5]


def test_fair_order_prefers_light_users_within_a_round() -> None:
    queued = [job(1, 1), job(2, 2)]
    assert [j.id for j in fair_order(queued, usage={1: 9, 2: 0})] == [2, 1]


async def test_pacer_holds_the_eleventh_submission() -> None:
    now = [100.0]
    pacer = SubmitPacer(limits=((10, 1.0),), clock=lambda: now[0])
    for _ in range(10):
        await pacer.wait_turn()
    assert pacer._delay() > 0.9
    now[0] += 1.01
    started = time.monotonic()
    await asyncio.wait_for(pacer.wait_turn(), 1)
    assert time.monotonic() - started < 0.5


def test_progress_text_and_marks() -> None:
    assert "place 3" in progress_text(Progress(Phase.WAITING, position=3))
    assert "position 0" in progress_text(Progress(Phase.QUEUED, position=0, started_at=1000))
    assert "<t:1000:R>" in progress_text(Progress(Phase.GENERATING, started_at=1000.5))
    assert outcome_mark(7).startswith(job_mark(7)) and outcome_mark(7) != job_mark(7)
    assert len(job_nonce(10**12, "r", "0123abcd")) <= 25
    assert job_nonce(1, "r", "0123abcd") != job_nonce(1, "r", "89efcdab") != job_nonce(1, "p", "89efcdab")
