"""bot/sunra.py against the fake sunra API over real HTTP on 127.0.0.1 (tests/fakes/sunra_server.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from bot.errors import BotError, ServiceUnavailable
from bot.sunra import (
    AuthError,
    DownloadTooLarge,
    InsufficientFunds,
    InvalidInput,
    KlingInput,
    KlingResult,
    MalformedResponse,
    NoVideo,
    PollPolicy,
    PredictionFailed,
    QueueStatus,
    RateLimited,
    RequestNotFound,
    RetryPolicy,
    SubmissionUncertain,
    SunraClient,
    Timeouts,
    TransientError,
    is_terminal,
    prediction_failure,
)
from tests.fakes.sunra_server import FakeSunra, FakeSunraProcess, JobFailure, JobPlan
from tests.world import listed

# Distinctive, so a leak anywhere is found by a plain substring search.
KEY = "sk-live-Secret-7f3a9c1e55d04b2b"
FAST_RETRY = RetryPolicy(attempts=5, base=0.01, cap=0.05)
FAST_POLL = PollPolicy(first=0.05, maximum=0.2, jitter=0)


class RecordingSleep:
    """An injected sleep that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test runs with DEBUG logging (httpx and httpcore included) and must not log the key."""
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter()
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += formatter.formatException(record.exc_info)
        assert KEY not in text, f"the key leaked into a log record from {record.name}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSunra]:
    async with FakeSunra(key=KEY) as server:
        yield server


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def client(fake: FakeSunra) -> AsyncIterator[SunraClient]:
    async with SunraClient(fake.url, KEY, file_hosts=listed(fake.url), retry=FAST_RETRY) as sunra:
        yield sunra


@pytest.fixture
async def instant(fake: FakeSunra, sleeps: RecordingSleep) -> AsyncIterator[SunraClient]:
    """A client whose retry sleeps are recorded instead of slept (not for waits: polling would spin)."""
    async with SunraClient(fake.url, KEY, file_hosts=listed(fake.url), sleep=sleeps) as sunra:
        yield sunra


def kling_input(prompt: str = "the cat waves", **fields: Any) -> KlingInput:
    return KlingInput.model_validate(
        {"prompt": prompt, "start_image_url": "https://img.test/cat.png", **fields}
    )


def assert_no_key(error: BaseException) -> None:
    for text in (str(error), repr(error), getattr(error, "user_message", "")):
        assert KEY not in text


# ----------------------------------------------------------------------------------------- the happy path


async def test_upload_submit_wait_result_download(
    fake: FakeSunra, client: SunraClient, tmp_path: Path
) -> None:
    picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    file_url = await client.upload(picture, content_type="image/png", file_name="cat.png")
    assert fake.uploads[file_url].data == picture
    assert fake.uploads[file_url].content_type == "image/png"

    submission = await client.submit(kling_input(start_image_url=file_url, voice_ids=["v1"]))
    assert fake.submissions == [
        {
            "prompt": "the cat waves",
            "start_image_url": file_url,
            "negative_prompt": "blur, distort, and low quality",
            "duration": "5",
            "generate_audio": True,
            "voice_ids": ["v1"],
        }
    ]

    seen: list[QueueStatus] = []

    async def on_update(status: QueueStatus) -> None:
        seen.append(status)

    final = await client.wait(submission.request_id, on_update=on_update, poll=FAST_POLL)
    assert final.status == "COMPLETED" and final.succeeded is True and final.failure is None
    assert {s.status for s in seen} >= {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
    keys = [(s.status, s.queue_position, len(s.logs)) for s in seen]
    assert len(keys) == len(set(keys)), "on_update is called only when something changed"
    assert fake.count("stream") == 1 and fake.count("status") == 0

    result = await client.result(submission.request_id)
    assert isinstance(result, KlingResult)
    assert result.video.content_type == "video/mp4" and result.video.file_size == fake.video_size

    dest = tmp_path / "video.mp4"
    written = await client.download(result.video.url, dest, max_bytes=10_000_000)
    assert written == fake.video_size
    assert dest.read_bytes() == fake.video_bytes(submission.request_id)
    assert not fake.leaked_auth


async def test_the_key_goes_only_to_the_api_base(
    fake: FakeSunra, client: SunraClient, tmp_path: Path
) -> None:
    file_url = await client.upload(b"img", content_type="image/jpeg", file_name="a b.jpg")
    request_id = (await client.submit(kling_input(start_image_url=file_url))).request_id
    await client.wait(request_id, poll=FAST_POLL)
    video = (await client.result(request_id)).video
    await client.download(video.url, tmp_path / "v.mp4", max_bytes=10_000_000)
    await client.download(file_url, tmp_path / "img", max_bytes=100)

    assert (tmp_path / "img").read_bytes() == b"img"
    for request in fake.requests:
        on_api = request.path.startswith("/v1/")
        assert request.has_authorization == on_api, request
    assert {r.route for r in fake.requests if not r.has_authorization} == {"upload_put", "video", "file"}
    assert not fake.leaked_auth


# ----------------------------------------------------------------------------------------------- waiting


def polls_allowed(policy: PollPolicy, job_seconds: float) -> int:
    """Most status calls a wait may make for a job of ``job_seconds``: polls go at 0, i1, i1+i2, ...
    and the first one at or after ``job_seconds`` sees the end (latency only makes polls later, so
    fewer). One more is allowed for timer slack."""
    calls, elapsed = 1, 0.0
    for interval in policy.intervals(rand=lambda: 0.5):  # rand 0.5 = no jitter
        if elapsed >= job_seconds:
            return calls + 1
        elapsed += interval
        calls += 1
    raise AssertionError("unreachable")


async def test_wait_polls_adaptively_when_the_stream_is_unavailable(
    fake: FakeSunra, client: SunraClient
) -> None:
    fake.stream_enabled = False
    fake.next_job(seconds=1.0)
    request_id = (await client.submit(kling_input())).request_id
    policy = PollPolicy(first=0.1, factor=1.5, maximum=2.0, jitter=0)

    final = await client.wait(request_id, poll=policy)

    assert final.status == "COMPLETED"
    assert fake.count("stream") == 1, "a stream that answers 404 is not tried again"
    # Polls at 0, 0.1, 0.25, 0.475, 0.81, 1.32 s: 6 calls for a 1 s job (bound 7), never a tight loop.
    assert polls_allowed(policy, 1.0) == 7
    assert 3 <= fake.count("status", request_id) <= polls_allowed(policy, 1.0)


async def test_poll_status_without_stream(fake: FakeSunra, client: SunraClient) -> None:
    request_id = (await client.submit(kling_input())).request_id
    final = await client.poll_status(request_id, poll=FAST_POLL)
    assert final.status == "COMPLETED" and fake.count("stream") == 0


async def test_wait_reconnects_a_dropping_stream(fake: FakeSunra, client: SunraClient) -> None:
    fake.stream_drop_after = 1  # every stream connection is cut after its first event
    request_id = (await client.submit(kling_input())).request_id
    final = await client.wait(request_id, poll=FAST_POLL)
    assert final.status == "COMPLETED"
    assert fake.count("stream", request_id) >= 2


async def test_wait_falls_back_to_polling_on_a_malformed_event(fake: FakeSunra, client: SunraClient) -> None:
    fake.fail_next("stream", malformed=True)
    request_id = (await client.submit(kling_input())).request_id
    final = await client.wait(request_id, poll=FAST_POLL)
    assert final.status == "COMPLETED"
    assert fake.count("stream") == 1 and fake.count("status") >= 1


async def test_wait_outlasts_status_errors(fake: FakeSunra) -> None:
    fake.stream_enabled = False
    fake.fail_next("status", 500, times=3)
    fake.fail_next("status", 429, retry_after=0.01, times=2)
    async with SunraClient(
        fake.url, KEY, file_hosts=listed(fake.url), retry=RetryPolicy(attempts=2, base=0.01, cap=0.02)
    ) as client:
        request_id = (await client.submit(kling_input())).request_id
        final = await client.wait(request_id, poll=FAST_POLL)
    assert final.status == "COMPLETED"


async def test_stream_status_ends_after_the_terminal_status(fake: FakeSunra, client: SunraClient) -> None:
    request_id = (await client.submit(kling_input())).request_id
    statuses = [status.status async for status in client.stream_status(request_id)]
    assert statuses[0] == "IN_QUEUE" and statuses[-1] == "COMPLETED"
    assert statuses.count("COMPLETED") == 1


async def test_unknown_request_id(fake: FakeSunra, client: SunraClient) -> None:
    with pytest.raises(RequestNotFound):
        await client.status("no-such-id")
    with pytest.raises(RequestNotFound):
        await client.wait("no-such-id", poll=FAST_POLL)  # stream 404 → polling → 404 on status
    with pytest.raises(RequestNotFound):
        await client.cancel("no-such-id")


async def test_a_bad_key_during_wait_is_raised(fake: FakeSunra, client: SunraClient) -> None:
    request_id = (await client.submit(kling_input())).request_id
    fake.reject_key()
    with pytest.raises(AuthError):
        await client.wait(request_id, poll=FAST_POLL)


# ----------------------------------------------------------------------------------------------- statuses


async def test_unknown_and_failure_statuses_are_parsed(
    fake: FakeSunra, client: SunraClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.next_job(seconds=30)
    request_id = (await client.submit(kling_input())).request_id
    fake.force_status(request_id, {"status": "SOMETHING_NEW", "eta": 12, "logs": None})
    first = await client.status(request_id)
    await client.status(request_id)
    assert first.status == "SOMETHING_NEW" and not first.is_terminal and first.succeeded is None
    assert first.model_extra == {"eta": 12} and first.logs == []
    unknown_warnings = [r for r in caplog.records if "SOMETHING_NEW" in r.getMessage()]
    assert len(unknown_warnings) == 1 and unknown_warnings[0].levelno == logging.WARNING

    fake.force_status(request_id, {"status": "FAILED", "error": "GPU on fire"})
    final = await client.wait(request_id, poll=FAST_POLL)
    assert final.status == "FAILED" and final.succeeded is False
    failure = final.failure
    assert isinstance(failure, PredictionFailed) and failure.reason == "GPU on fire"


@pytest.mark.parametrize("stream", [True, False])
async def test_an_unknown_status_word_that_lasts_is_settled_by_the_result(
    fake: FakeSunra, client: SunraClient, stream: bool
) -> None:
    """A word the client does not know counts as running, but the result decides whether it is an
    ending: asked at most once per quiet window while the word lasts, never while the job runs."""
    fake.next_job(seconds=0.6)
    request_id = (await client.submit(kling_input())).request_id
    fake.force_status(request_id, {"status": "SETTLED_ELSEWHERE"})  # for good: status never says more
    poll = dataclasses.replace(FAST_POLL, stream=stream)
    started = time.monotonic()
    final = await asyncio.wait_for(client.wait(request_id, poll=poll), 5)
    assert final.status == "COMPLETED" and final.succeeded is True
    elapsed = time.monotonic() - started
    assert fake.count("result") <= elapsed / poll.quiet_seconds + 1


def test_status_model_is_lenient() -> None:
    cancelled = QueueStatus.model_validate({"status": "CANCELLED"})
    assert cancelled.is_terminal and cancelled.succeeded is None and cancelled.failure is None
    timeout = QueueStatus.model_validate({"status": "TIMEOUT"})
    assert timeout.failure is not None and timeout.failure.retryable
    assert timeout.failure.user_message == (
        "Kling took too long to make this video and gave up. Trying again may help."
    )
    odd = QueueStatus.model_validate({"status": "in_progress", "queue_position": "2", "logs": ["hi"]})
    assert not odd.is_terminal and odd.queue_position == 2 and odd.logs[0].message == "hi"
    for status in ("COMPLETED", "failed", "CANCELED", "ERROR", "TIMEOUT"):
        assert is_terminal(status)
    for status in ("IN_QUEUE", "IN_PROGRESS", "SOMETHING_NEW"):
        assert not is_terminal(status)


async def test_prediction_failure_from_status_and_result(fake: FakeSunra, client: SunraClient) -> None:
    fake.fail_next_job(reason="NSFW content", retryable=False)
    request_id = (await client.submit(kling_input())).request_id

    final = await client.wait(request_id, poll=FAST_POLL)

    assert final.status == "COMPLETED" and final.succeeded is False
    failure = final.failure
    assert failure is not None and failure.reason == "NSFW content" and failure.retryable is False
    assert failure.user_message == (
        "Kling could not make this video: NSFW content. "
        "Trying again with the same picture and prompt will not help."
    )
    with pytest.raises(PredictionFailed) as caught:
        await client.result(request_id)
    assert caught.value.reason == "NSFW content" and not caught.value.retryable


async def test_retryable_failure_by_prompt_marker(fake: FakeSunra, client: SunraClient) -> None:
    fake.plan_jobs(
        JobPlan(fail=JobFailure("queue overloaded", retryable=True)), prompt_contains="[fail]", times=None
    )
    ok = (await client.submit(kling_input("fine"))).request_id
    bad = (await client.submit(kling_input("please [fail]"))).request_id
    assert (await client.wait(ok, poll=FAST_POLL)).succeeded is True
    failure = (await client.wait(bad, poll=FAST_POLL)).failure
    assert failure is not None and failure.retryable
    assert failure.user_message == "Kling could not make this video: queue overloaded. Trying again may help."


async def test_prediction_failed_body_is_not_retried(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    request_id = (await instant.submit(kling_input())).request_id
    body = {
        "error": {
            "code": "PREDICTION_FAILED",
            "message": "failed",
            "details": {
                "code": "bad_image",
                "message": "failed",
                "reason": "Image too small",
                "retryable": False,
            },
        }
    }
    fake.force_result(request_id, 500, body)
    with pytest.raises(PredictionFailed) as caught:
        await instant.result(request_id)
    assert caught.value.reason == "Image too small" and caught.value.code == "bad_image"
    assert sleeps.delays == [] and fake.count("result") == 1


async def test_result_accepts_a_wrapped_body_with_extra_fields(fake: FakeSunra, client: SunraClient) -> None:
    request_id = (await client.submit(kling_input())).request_id
    video = {"url": "https://cdn.test/v.mp4", "content_type": "video/mp4", "duration": 5.0}
    fake.force_result(request_id, 200, {"data": {"video": video, "seed": 42}, "timings": {}})
    result = await client.result(request_id)
    assert result.video.url == "https://cdn.test/v.mp4" and result.video.file_size is None


# ----------------------------------------------------------------------------------------------- retries


async def test_status_5xx_is_retried_with_backoff(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    request_id = (await instant.submit(kling_input())).request_id
    fake.fail_next("status", 503, times=2)
    status = await instant.status(request_id)
    assert status.status in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    assert fake.count("status") == 3
    policy = RetryPolicy()
    assert len(sleeps.delays) == 2
    for attempt, delay in enumerate(sleeps.delays, start=1):
        ceiling = min(policy.cap, policy.base * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


async def test_status_429_honours_retry_after(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    request_id = (await instant.submit(kling_input())).request_id
    fake.fail_next("status", 429, retry_after=7)
    await instant.status(request_id)
    assert len(sleeps.delays) == 1 and sleeps.delays[0] >= 7


async def test_429_honours_an_epoch_ratelimit_reset(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    request_id = (await instant.submit(kling_input())).request_id
    fake.fail_next("status", 429, headers={"x-ratelimit-reset": str(int(time.time()) + 6)})
    await instant.status(request_id)
    assert len(sleeps.delays) == 1 and 4 <= sleeps.delays[0] <= 7


async def test_malformed_status_is_retried(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    request_id = (await instant.submit(kling_input())).request_id
    fake.fail_next("status", malformed=True)
    fake.fail_next("status", 200, body={"queue_position": 1})  # valid JSON, no status
    assert (await instant.status(request_id)).status
    assert len(sleeps.delays) == 2


async def test_retries_end_with_a_typed_error(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    request_id = (await instant.submit(kling_input())).request_id
    fake.fail_next("status", 502, times=5)
    with pytest.raises(TransientError) as caught:
        await instant.status(request_id)
    assert caught.value.status == 502 and caught.value.retryable
    assert fake.count("status") == 5 and len(sleeps.delays) == 4

    fake.fail_next("result", 429, retry_after=600)  # longer than RetryPolicy.max_wait: give up at once
    with pytest.raises(RateLimited) as limited:
        await instant.result(request_id)
    assert limited.value.retry_after == 600 and fake.count("result") == 1


# ----------------------------------------------------------------------------------------------- submit


async def test_submit_5xx_is_uncertain_and_never_resubmitted(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    fake.fail_next("submit", 500, after_processing=True)  # the job exists, the answer says 500
    with pytest.raises(SubmissionUncertain) as caught:
        await instant.submit(kling_input())
    assert fake.count("submit") == 1 and len(fake.jobs) == 1 and sleeps.delays == []
    assert caught.value.retryable and "not sent again" in str(caught.value)
    assert_no_key(caught.value)


async def test_submit_429_is_retried_and_makes_one_job(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    fake.fail_next("submit", 429, retry_after=2)
    submission = await instant.submit(kling_input())
    assert fake.count("submit") == 2 and list(fake.jobs) == [submission.request_id]
    assert len(sleeps.delays) == 1 and sleeps.delays[0] >= 2


async def test_submit_timeout_after_acceptance_is_uncertain(fake: FakeSunra) -> None:
    fake.hang_next_submit(5.0)
    async with SunraClient(fake.url, KEY, file_hosts=listed(fake.url), timeouts=Timeouts(read=0.3)) as client:
        with pytest.raises(SubmissionUncertain) as caught:
            await client.submit(kling_input())
    assert fake.count("submit") == 1 and len(fake.jobs) == 1
    assert "ReadTimeout" in str(caught.value)


async def test_submit_malformed_answer_is_uncertain(fake: FakeSunra, instant: SunraClient) -> None:
    fake.fail_next("submit", malformed=True, after_processing=True)
    with pytest.raises(SubmissionUncertain):
        await instant.submit(kling_input())
    assert fake.count("submit") == 1


async def test_submit_retries_a_refused_connection(sleeps: RecordingSleep) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the request never left
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with SunraClient(
        f"http://127.0.0.1:{port}/v1", KEY, file_hosts=listed(f"http://127.0.0.1:{port}/v1"), sleep=sleeps
    ) as client:
        with pytest.raises(TransientError) as caught:
            await client.submit(kling_input())
    assert not isinstance(caught.value, SubmissionUncertain)
    assert len(sleeps.delays) == RetryPolicy().attempts - 1
    assert_no_key(caught.value)


# ----------------------------------------------------------------------------------------------- refusals


async def test_bad_key_blocks_submissions_for_a_while(
    fake: FakeSunra, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    fake.reject_key()
    async with SunraClient(
        fake.url, SecretStr(KEY), file_hosts=listed(fake.url), clock=clock, block_seconds=300
    ) as client:
        with pytest.raises(AuthError) as caught:
            await client.submit(kling_input())
        error = caught.value
        assert error.status == 401 and isinstance(error, ServiceUnavailable)
        assert error.user_message == (
            "The bot's video service is not available right now; the server owner has been told. "
            "Trying again later may help."
        )
        assert client.submissions_blocked is error
        critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(critical) == 1 and "rejected the API key (401)" in critical[0].getMessage()

        with pytest.raises(AuthError):
            await client.submit(kling_input())
        assert fake.count("submit") == 1, "a blocked submit must not reach the API"

        clock.now += 301
        assert client.submissions_blocked is None
        with pytest.raises(AuthError):
            await client.submit(kling_input())
        assert fake.count("submit") == 2
        assert len([r for r in caplog.records if r.levelno == logging.CRITICAL]) == 2
        assert_no_key(error)


async def test_empty_balance_blocks_submissions(fake: FakeSunra, client: SunraClient) -> None:
    fake.balance = 0
    with pytest.raises(InsufficientFunds) as caught:
        await client.submit(kling_input())
    assert caught.value.status == 402
    assert isinstance(client.submissions_blocked, InsufficientFunds)
    with pytest.raises(InsufficientFunds):
        await client.submit(kling_input())
    assert fake.count("submit") == 1


async def test_invalid_input_carries_the_api_message(fake: FakeSunra, instant: SunraClient) -> None:
    fields: dict[str, Any] = {"prompt": "x", "start_image_url": "https://img.test/a.png", "duration": "7"}
    bad = KlingInput.model_construct(**fields)  # skips the model's own check, as a buggy caller might
    with pytest.raises(InvalidInput) as caught:
        await instant.submit(bad)
    error = caught.value
    assert error.status == 422 and error.code == "VALIDATION_ERROR" and error.retryable is False
    assert error.user_message == (
        "Kling could not use the picture or the options of this job. "
        'Kling said: duration: must be "5" or "10". Trying again with the same input will not help.'
    )
    assert instant.submissions_blocked is None and fake.count("submit") == 1
    assert isinstance(error, BotError)


def test_input_model_mirrors_the_endpoint() -> None:
    ok = kling_input(end_image_url="https://img.test/end.png", duration="10", generate_audio=False)
    assert ok.payload()["duration"] == "10" and "voice_ids" not in ok.payload()
    bad_inputs: list[dict[str, Any]] = [
        {"prompt": "x" * 2501},
        {"negative_prompt": "x" * 2501},
        {"duration": "7"},
        {"duration": 5},
        {"voice_ids": ["a", "b", "c"]},
        {"seed": 1},
    ]
    for fields in bad_inputs:
        with pytest.raises(ValidationError):
            kling_input(**fields)
    with pytest.raises(ValidationError):
        KlingInput.model_validate({"prompt": "x"})  # start_image_url is required


# ----------------------------------------------------------------------------------------------- cancel


async def test_cancel(fake: FakeSunra, client: SunraClient) -> None:
    fake.next_job(seconds=30)
    request_id = (await client.submit(kling_input())).request_id
    assert await client.cancel(request_id) is True
    final = await client.wait(request_id, poll=FAST_POLL)
    assert final.status == "CANCELLED" and final.succeeded is None and final.failure is None
    assert await client.cancel(request_id) is False  # 409: already ended

    done = (await client.submit(kling_input())).request_id
    await client.wait(done, poll=FAST_POLL)
    assert await client.cancel(done) is False


# ----------------------------------------------------------------------------------------------- files


async def test_upload_retries_and_never_sends_the_key(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    fake.fail_next("upload_initiate", 503)
    fake.fail_next("upload_put", 500)
    file_url = await instant.upload(b"picture", content_type="image/webp", file_name="p.webp")
    assert fake.uploads[file_url].data == b"picture" and len(sleeps.delays) == 2
    puts = [r for r in fake.requests if r.route == "upload_put"]
    assert len(puts) == 2 and not any(r.has_authorization for r in puts)
    assert not fake.leaked_auth
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(file_url)).content == b"picture"


@pytest.mark.parametrize("send_length", [True, False])
async def test_download_refuses_a_too_large_video(
    fake: FakeSunra, client: SunraClient, tmp_path: Path, send_length: bool
) -> None:
    fake.send_video_length = send_length
    fake.next_job(video_size=300_000)
    request_id = (await client.submit(kling_input())).request_id
    await client.wait(request_id, poll=FAST_POLL)
    url = (await client.result(request_id)).video.url
    dest = tmp_path / "big.mp4"

    with pytest.raises(DownloadTooLarge) as caught:
        await client.download(url, dest, max_bytes=100_000)
    assert not dest.exists() and caught.value.limit == 100_000 and not caught.value.retryable
    assert await client.download(url, dest, max_bytes=300_000) == 300_000


async def test_download_errors_remove_the_partial_file(
    fake: FakeSunra, client: SunraClient, tmp_path: Path
) -> None:
    dest = tmp_path / "missing.mp4"
    with pytest.raises(BotError):
        await client.download(f"{fake.root}/files/video/nope.mp4", dest, max_bytes=1000)
    assert not dest.exists()


# ----------------------------------------------------------------------------------------------- secrets


async def test_the_key_never_appears_in_errors_or_reprs(fake: FakeSunra, client: SunraClient) -> None:
    assert KEY not in repr(client)
    fake.reject_key()
    with pytest.raises(AuthError) as caught:
        await client.status("any")
    chain: BaseException | None = caught.value
    while chain is not None:
        assert_no_key(chain)
        chain = chain.__cause__ or chain.__context__


def test_policies() -> None:
    retry = RetryPolicy()
    assert [retry.backoff(n, rand=lambda: 1.0) for n in (1, 2, 3, 8)] == [0.5, 1.0, 2.0, 30.0]
    assert retry.backoff(1, rand=lambda: 0.0) == 0.25
    poll = PollPolicy(first=2, factor=1.5, maximum=20, jitter=0)
    assert list(itertools.islice(poll.intervals(), 8)) == [2, 3, 4.5, 6.75, 10.125, 15.1875, 20, 20]
    with pytest.raises(ValueError):
        PollPolicy(factor=0.5)


# ----------------------------------------------------------------------------------------------- the fake


async def test_the_fake_runs_as_a_process() -> None:
    async with FakeSunraProcess(key=KEY, job_seconds=0.2) as process:
        assert process.url.startswith("http://127.0.0.1:") and process.url.endswith("/v1")
        await process.control("config", {"stream_enabled": False})
        async with SunraClient(process.url, KEY, file_hosts=listed(process.url), retry=FAST_RETRY) as client:
            request_id = (await client.submit(kling_input())).request_id
            assert (await client.wait(request_id, poll=FAST_POLL)).status == "COMPLETED"
        state = await process.control("state")
        assert list(state["jobs"]) == [request_id] and state["counts"]["stream"] == 1
        assert state["leaked_auth"] is False


# ----------------------------------------------------------------------------------------- rate-limit 403s
# sunra's queue documentation: a key over its rate limit gets 403 Forbidden and should retry with
# exponential backoff. Those 403s must be waited out like a 429, never taken for a rejected key.

GENERIC_403 = {"error": {"code": "FORBIDDEN", "message": "Forbidden", "details": None}}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"status": 403, "rate_limit": True}, id="sunra-403-code-and-headers"),
        pytest.param(
            {"status": 403, "body": GENERIC_403, "headers": {"x-ratelimit-remaining": "0"}},
            id="403-remaining-zero",
        ),
        pytest.param(
            {"status": 403, "body": {"error": {"code": "FORBIDDEN", "message": "Too many requests"}}},
            id="403-message-only",
        ),
        pytest.param({"status": 403, "body": {"message": "rate limit reached"}}, id="403-flat-body"),
        pytest.param({"status": 429, "retry_after": 1}, id="429"),
    ],
)
async def test_a_rate_limited_submit_is_sent_again_and_makes_one_job(
    fake: FakeSunra,
    instant: SunraClient,
    sleeps: RecordingSleep,
    caplog: pytest.LogCaptureFixture,
    answer: dict[str, Any],
) -> None:
    # More rate-limit answers in a row than RetryPolicy.attempts: waiting for the limit is not a failure.
    fake.fail_next("submit", times=RetryPolicy().attempts + 2, **answer)
    submission = await instant.submit(kling_input())
    assert list(fake.jobs) == [submission.request_id]
    assert fake.count("submit") == RetryPolicy().attempts + 3
    assert len(sleeps.delays) == RetryPolicy().attempts + 2
    assert instant.submissions_blocked is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_rate_limit_403_honours_its_reset(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    fake.fail_next("submit", 403, rate_limit=True, retry_after=7)
    await instant.submit(kling_input())
    assert len(sleeps.delays) == 1 and sleeps.delays[0] >= 7


async def test_reads_wait_out_rate_limit_403s(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep
) -> None:
    request_id = (await instant.submit(kling_input())).request_id
    for route in ("status", "result", "cancel", "upload_initiate"):
        fake.fail_next(route, 403, rate_limit=True, times=2)
    assert (await instant.status(request_id)).request_id == request_id
    fake.finish(request_id)
    assert (await instant.result(request_id)).video.url == fake.jobs[request_id].video_url
    assert await instant.cancel(request_id) is False  # it had ended: 409, after the two 403s
    await instant.upload(b"\x89PNG....", content_type="image/png", file_name="a.png")
    assert len(sleeps.delays) == 8 and instant.submissions_blocked is None


async def test_a_rate_limit_that_outlasts_the_budget_says_busy_not_broken(fake: FakeSunra) -> None:
    sleeps = RecordingSleep()
    retry = RetryPolicy(rate_limit_wait=25)
    fake.fail_next("submit", 403, rate_limit=True, retry_after=10, times=10)
    async with SunraClient(fake.url, KEY, file_hosts=listed(fake.url), retry=retry, sleep=sleeps) as client:
        with pytest.raises(RateLimited) as caught:
            await client.submit(kling_input())
        assert client.submissions_blocked is None
    assert sleeps.delays == [10, 10] and fake.count("submit") == 3 and fake.jobs == {}
    assert caught.value.user_message == (
        "The video service is busy right now. Please try again in a few minutes."
    )


async def test_a_403_that_rejects_the_key_blocks_submissions(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    fake.reject_key(403)  # "Invalid or missing API key", rate-limit headers far from zero
    with pytest.raises(AuthError) as caught:
        await instant.submit(kling_input())
    assert caught.value.status == 403 and instant.submissions_blocked is caught.value
    assert fake.count("submit") == 1 and sleeps.delays == []
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and "rejected the API key (403)" in critical[0]


async def test_a_bare_403_is_retried_and_only_a_lasting_one_counts_as_a_rejected_key(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("submit", 403, body=GENERIC_403, times=2)
    await instant.submit(kling_input())
    assert instant.submissions_blocked is None and len(fake.jobs) == 1

    fake.fail_next("submit", 403, body=GENERIC_403, times=RetryPolicy().attempts)
    with pytest.raises(AuthError):
        await instant.submit(kling_input())
    assert instant.submissions_blocked is not None and len(fake.jobs) == 1
    assert len([r for r in caplog.records if r.levelno == logging.CRITICAL]) == 1


# ------------------------------------------------------------------------------------------ "no video"

NO_VIDEO_MESSAGE = (
    "Kling finished the job but sent back no video, so nothing was charged. Trying again may help."
)


@pytest.mark.parametrize(
    "body",
    [
        {"video": None},
        {},
        {"video": {}},
        {"video": {"url": ""}},
        {"video": {"url": None, "content_type": "video/mp4", "file_size": 10}},
        {"video": {"url": 42}},
        {"video": {"url": "ftp://cdn.test/v.mp4"}},
        {"video": {"url": "/relative/v.mp4"}},
        {"data": {"video": None}},
        {"status": "IN_PROGRESS"},
        {"status": "COMPLETED", "success": True},
        [],
        "done",
    ],
)
async def test_a_result_without_a_usable_video_is_an_answer_not_a_fault(
    fake: FakeSunra, instant: SunraClient, sleeps: RecordingSleep, body: Any
) -> None:
    fake.next_job(result=body)
    request_id = (await instant.submit(kling_input())).request_id
    fake.finish(request_id)
    with pytest.raises(NoVideo) as caught:
        await instant.result(request_id)
    error = caught.value
    assert not isinstance(error, TransientError | RateLimited | MalformedResponse)  # not waited out
    assert error.user_message == NO_VIDEO_MESSAGE and error.retryable is True
    assert fake.count("result") == RetryPolicy().attempts  # asked again briefly, then given up
    assert sum(sleeps.delays) < 60


# ------------------------------------------------------------------------------- reasons a member can read

MODERATION = "Kling's content moderation refused the picture or the prompt."


@pytest.mark.parametrize(
    ("error", "sentence"),
    [
        ("content_policy", f"{MODERATION} Trying again with the same picture and prompt will not help."),
        (
            {"code": "PREDICTION_FAILED", "message": "Prediction failed", "details": {"reason": "NSFW"}},
            f"{MODERATION} Trying again with the same picture and prompt will not help.",
        ),
        (
            {"code": "image_moderation"},
            "Kling's content moderation refused the picture. "
            "Trying again with the same picture will not help; a different picture may.",
        ),
        (
            {"code": "PROMPT_FLAGGED", "message": "The prompt mentions a real person"},
            "Kling's content moderation refused the prompt. Kling said: The prompt mentions a real person. "
            "Trying again with the same prompt will not help; different wording may.",
        ),
        (
            {"code": "invalid_input", "details": {"retryable": False}},
            "Kling could not use the picture or the options of this job. "
            "Trying again with the same input will not help.",
        ),
        ("TIMEOUT", "Kling took too long to make this video and gave up. Trying again may help."),
        (
            {"code": "provider_error", "message": "Upstream GPU crashed"},
            "Kling had a problem on its side while making this video. Kling said: Upstream GPU crashed. "
            "Trying again may help.",
        ),
        (
            {"code": "timeout", "retryable": False},  # the API's own verdict wins over the kind's
            "Kling took too long to make this video and gave up. "
            "Trying again with the same input will not help.",
        ),
        ({"code": "E_4031"}, "Kling could not make this video. Trying again may help."),
        ("kling.err.77", "Kling could not make this video. Trying again may help."),
        (
            [{"message": "The prompt violates our usage policy"}],
            "Kling could not make this video: The prompt violates our usage policy. "
            "Trying again with the same prompt will not help; different wording may.",
        ),
        ({"message": "failed"}, "Kling could not make this video. Trying again may help."),
        (
            {"message": "图片未通过审核"},  # one word in a script without spaces: a message, not a code
            "Kling could not make this video: 图片未通过审核. Trying again may help.",
        ),
        (None, "Kling could not make this video. Trying again may help."),
    ],
)
def test_a_failure_reason_reads_as_a_sentence_with_advice(error: Any, sentence: str) -> None:
    assert prediction_failure(error).user_message == sentence


# ------------------------------------------------------------------------------- a stream that says nothing


@pytest.mark.parametrize(
    ("stall_after", "job_seconds", "check", "pings"),
    [(1, 0.5, 0.25, False), (1, 0.5, 0.25, True), (2, 2.0, 0.3, False)],
)
async def test_a_stream_that_only_keeps_alive_is_cross_checked_within_budget(
    fake: FakeSunra, client: SunraClient, stall_after: int, job_seconds: float, check: float, pings: bool
) -> None:
    fake.stream_stall_after = stall_after  # then keep-alives only: "completed" never comes
    fake.stream_keepalive_seconds = 0.02
    fake.stream_ping_events = pings  # keep-alives as status-less events rather than comments
    fake.next_job(seconds=job_seconds, queue_seconds=0.1)
    poll = PollPolicy(first=0.05, maximum=5.0, jitter=0, stream_check=check)
    request_id = (await client.submit(kling_input())).request_id
    started = time.monotonic()
    async with asyncio.timeout(15):
        final = await client.wait(request_id, poll=poll)
    waited = time.monotonic() - started
    assert final.status == "COMPLETED" and final.succeeded is True
    assert fake.count("stream") == 1, "the open stream is kept, not reconnected"
    # At most one status request per quiet stretch: the budget of a waiting job.
    assert 1 <= fake.count("status") <= waited / check + 1, (fake.count("status"), waited)


async def test_a_lively_stream_is_never_cross_checked(fake: FakeSunra, client: SunraClient) -> None:
    fake.next_job(seconds=1.0, queue_seconds=0.2)
    poll = PollPolicy(first=0.05, maximum=5.0, jitter=0, stream_check=0.6)
    request_id = (await client.submit(kling_input())).request_id
    final = await client.wait(request_id, poll=poll)
    assert final.status == "COMPLETED" and fake.count("status") == 0 and fake.count("stream") == 1
