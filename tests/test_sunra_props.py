"""Property tests: drift in what the sunra API sends never makes an answer unreadable.

Every parser of bot/sunra runs over odd but well-formed JSON: strict only about what decides (status,
success, error, the video's url), lenient about what is only shown (logs, queue position, metrics,
unknown fields and status words). Answers are real ``httpx.Response`` objects, as the client gets them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings, strategies as st

from bot.sunra import (
    CANCELLED_STATUSES,
    COMPLETED,
    FAILED_STATUSES,
    IN_PROGRESS,
    IN_QUEUE,
    TERMINAL_STATUSES,
    MalformedResponse,
    NoVideo,
    PredictionFailed,
    QueueStatus,
    RateLimited,
    SunraError,
    prediction_failure,
)
from bot.sunra.models import result_from, status_event, status_from, submission_from, ticket_from
from bot.sunra.reasons import MAY_HELP, SAME_INPUT, is_machine_word
from bot.sunra.transport import api_error, error_fields, sse_data

PROPS = settings(max_examples=150, deadline=None)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
DECIDING = {"status", "success", "error", "video", "data", "output", "request_id", "upload_url", "file_url"}
extra_fields = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda key: key not in DECIDING), json_values, max_size=4
)
odd_logs = st.one_of(
    json_values,
    st.lists(
        st.one_of(
            st.text(max_size=30),
            st.integers(),
            st.fixed_dictionaries({}, optional={"message": json_values, "timestamp": json_values}),
            json_values,
        ),
        max_size=4,
    ),
)
KNOWN_WORDS = sorted(TERMINAL_STATUSES | {IN_QUEUE, IN_PROGRESS})
status_words = st.one_of(
    st.sampled_from(KNOWN_WORDS).flatmap(lambda w: st.sampled_from([w, w.lower(), w.title(), f" {w} "])),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=15),
)
video_urls = st.sampled_from(
    ["https://cdn.sunra.test/v/abc.mp4", "http://127.0.0.1:9/files/video/req-1.mp4?sig=x&e=1"]
)
ADVICE = (MAY_HELP, SAME_INPUT, "will not help.", "a different picture may.", "different wording may.")


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", **(headers or {})}
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


@st.composite
def status_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = draw(extra_fields)
    body["status"] = draw(status_words)
    for name, values in (("logs", odd_logs), ("queue_position", json_values), ("metrics", json_values)):
        if draw(st.booleans()):
            body[name] = draw(values)
    if draw(st.booleans()):
        body["success"] = draw(st.booleans())
    if draw(st.booleans()):
        body["error"] = draw(json_values)
    if draw(st.booleans()):
        body["request_id"] = draw(json_values)
    return body


def check_status(parsed: QueueStatus, body: dict[str, Any]) -> None:
    word = body["status"].strip()
    assert parsed.status == word
    assert parsed.is_terminal == (word.upper() in TERMINAL_STATUSES)
    assert parsed.queue_position is None or parsed.queue_position >= 0
    assert all(isinstance(log.message, str) for log in parsed.logs)
    assert parsed.request_id is None or isinstance(parsed.request_id, str)
    upper = word.upper()
    if upper == COMPLETED:
        expected = body["success"] if "success" in body else body.get("error") is None
        assert parsed.succeeded is expected
    elif upper in FAILED_STATUSES:
        assert parsed.succeeded is False
    else:
        assert parsed.succeeded is None
    failure = parsed.failure
    assert (failure is not None) == (parsed.succeeded is False)
    if failure is not None:
        assert failure.user_message.endswith(ADVICE), failure.user_message
    if upper in CANCELLED_STATUSES:
        assert parsed.is_terminal and failure is None


@PROPS
@given(status_bodies())
def test_every_status_answer_is_read_and_decides_only_on_status_success_and_error(
    body: dict[str, Any],
) -> None:
    check_status(status_from(answer(body)), body)


def sse_text(bodies: list[dict[str, Any]], noise: list[int], split: bool) -> str:
    """Server-sent events as a stream carries them, with keep-alive comments, event names, ids and
    status-less ping events between them; a body may be split over several data lines."""
    parts: list[str] = []
    for index, body in enumerate(bodies):
        kind = noise[index % len(noise)] if noise else 0
        if kind == 1:
            parts.append(": keep-alive\n\n")
        elif kind == 2:
            parts.append('event: ping\ndata: {"type": "ping"}\n\n')
        elif kind == 3:
            parts.append("data:\n\n")
        text = json.dumps(body, indent=1 if split else None)
        data = "".join(f"data: {line}\n" for line in text.split("\n"))
        parts.append(f"id: {index}\nevent: status\n{data}\n")
    return "".join(parts)


async def stream_statuses(text: str) -> list[QueueStatus]:
    async def lines() -> AsyncIterator[str]:
        for line in text.split("\n"):
            yield line

    statuses = []
    async for data in sse_data(lines()):
        status = status_event(data, "GET stream")
        if status is not None:
            statuses.append(status)
    return statuses


@PROPS
@given(
    st.lists(status_bodies(), min_size=1, max_size=4),
    st.lists(st.integers(min_value=0, max_value=3), max_size=4),
    st.booleans(),
)
def test_every_stream_event_is_read_and_pings_are_skipped(
    bodies: list[dict[str, Any]], noise: list[int], split: bool
) -> None:
    statuses = asyncio.run(stream_statuses(sse_text(bodies, noise, split)))
    assert len(statuses) == len(bodies)
    for parsed, body in zip(statuses, bodies, strict=True):
        check_status(parsed, body)


def test_an_event_that_is_not_json_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        status_event('{"status": "IN_PROG', "GET stream")


@PROPS
@given(
    video_urls,
    st.fixed_dictionaries(
        {},
        optional={
            "content_type": json_values,
            "file_name": json_values,
            "file_size": json_values,
            "duration": json_values,
        },
    ),
    extra_fields,
    st.sampled_from([None, "data", "output"]),
)
def test_a_result_with_a_video_url_is_always_read(
    url: str, video_fields: dict[str, Any], extra: dict[str, Any], wrapper: str | None
) -> None:
    body: dict[str, Any] = {**extra, "video": {**video_fields, "url": url}}
    if wrapper is not None:
        body = {wrapper: body}
    result = result_from(answer(body))
    assert result.video.url == url
    assert result.video.file_size is None or result.video.file_size >= 0
    assert result.video.content_type is None or isinstance(result.video.content_type, str)


@PROPS
@given(
    st.one_of(
        st.just(None),
        json_values.filter(lambda v: not isinstance(v, dict) or not isinstance(v.get("url"), str)),
        st.fixed_dictionaries({"url": st.sampled_from(["", " ", "ftp://x/v.mp4", "/v.mp4", "video.mp4"])}),
    ),
    extra_fields,
)
def test_a_result_without_a_usable_video_is_no_video_never_a_crash(video: Any, extra: dict[str, Any]) -> None:
    body = {**extra, "video": video}
    with pytest.raises((NoVideo, PredictionFailed)):
        result_from(answer(body))


@PROPS
@given(json_values)
def test_any_json_result_is_an_answer_or_a_failure_never_a_crash(body: Any) -> None:
    try:
        result = result_from(answer(body))
    except (NoVideo, PredictionFailed) as error:
        assert error.user_message.endswith(ADVICE)
    else:
        assert result.video.url.startswith(("http://", "https://"))


@PROPS
@given(st.one_of(st.text(min_size=1, max_size=40), st.integers(min_value=0)), extra_fields)
def test_a_submit_answer_is_read_whatever_else_it_carries(
    request_id: str | int, extra: dict[str, Any]
) -> None:
    odd_urls = {"status_url": 5, "response_url": None, "cancel_url": {"href": "x"}}
    submission = submission_from(answer({**extra, **odd_urls, "request_id": request_id}))
    assert submission.request_id == str(request_id)


@PROPS
@given(video_urls, video_urls, extra_fields)
def test_an_upload_initiation_answer_is_read_whatever_else_it_carries(
    upload_url: str, file_url: str, extra: dict[str, Any]
) -> None:
    ticket = ticket_from(answer({**extra, "upload_url": upload_url, "file_url": file_url}))
    assert (ticket.upload_url, ticket.file_url) == (upload_url, file_url)


@PROPS
@given(
    st.one_of(json_values, st.builds(lambda e: {"error": e}, json_values)),
    st.sampled_from([400, 401, 402, 403, 404, 405, 409, 413, 422, 429, 500, 502, 503]),
    st.dictionaries(
        st.sampled_from(["retry-after", "x-ratelimit-remaining", "x-ratelimit-reset"]),
        st.sampled_from(["0", "1", "5", "soon", ""]),
    ),
)
def test_any_error_body_maps_to_an_error_a_member_can_read(
    body: Any, status: int, headers: dict[str, str]
) -> None:
    response = answer(body, status, headers)
    code, message, _ = error_fields(response)
    assert code is None or isinstance(code, str)
    assert message is None or isinstance(message, str)
    error = api_error(status, code, message, "detail", None, request_scoped=True, headers=response.headers)
    assert isinstance(error, SunraError)
    assert "Trying again" in error.user_message or "try again" in error.user_message
    if status == 403 and code is None and message is None:
        # a body that says nothing: the headers decide, and it is never a rejected key at once
        assert isinstance(error, RateLimited)
        limited = headers.get("x-ratelimit-remaining") == "0" or bool(headers.get("retry-after"))
        assert error.maybe_key is not limited


@PROPS
@given(
    st.from_regex(r"[a-z]{3,8}_[a-z]{3,8}(_[a-z]{2,6})?", fullmatch=True),
    st.sampled_from(["reason", "code", "message"]),
    st.one_of(st.none(), st.booleans()),
)
def test_a_machine_word_is_never_shown_to_a_member(word: str, field: str, retryable: bool | None) -> None:
    failure = prediction_failure(
        {"code": "PREDICTION_FAILED", "details": {field: word, "retryable": retryable}}
    )
    assert is_machine_word(word) and word not in failure.user_message
    assert failure.user_message.endswith(ADVICE), failure.user_message
    if retryable is not None:
        assert failure.retryable is retryable
        assert failure.user_message.endswith(MAY_HELP) is retryable
