"""A fake sunra.ai queue API (Kling 2.6 Pro image-to-video) on 127.0.0.1, over real HTTP.

It speaks the protocol bot/sunra.py talks to (submit, status, status stream, result, cancel, storage
upload) and lets a test script every failure the real service can produce. It never imports the bot:
it checks what the bot sends the way sunra would.

In-process use (pytest)::

    from tests.fakes.sunra_server import FakeSunra

    async with FakeSunra(key="test-key") as fake:          # random port on 127.0.0.1
        client = SunraClient(fake.url, "test-key")          # fake.url is the {api} base (…/v1)
        ...
        assert fake.count("submit") == 1 and len(fake.jobs) == 1 and not fake.leaked_auth

Subprocess use (other processes, benchmarks)::

    python -m tests.fakes.sunra_server --port 0 --key K [--job-seconds S] [--queue-seconds S]
    # stdout line 1 is the API base URL; serves until SIGTERM/SIGINT.

or ``async with FakeSunraProcess(key="K", job_seconds=1.0) as proc:`` (``proc.url``, ``await
proc.control("fault", {...})``). The control API (JSON, no auth) is described at :meth:`_setup_routes`.

URLs. ``fake.root`` is ``http://127.0.0.1:PORT``; ``fake.url`` = ``root + "/v1"`` (the API base). Files
(uploads and videos) live under ``root + "/files/..."``, standing in for sunra's storage/CDN host: the
key must never be sent there, and any ``Authorization`` header received there sets ``fake.leaked_auth``.

Routes and their names (used by :meth:`FakeSunra.count`, :meth:`FakeSunra.fail_next`, ``requests``)::

    POST {api}/queue/kling/kling-v2.6-pro/image-to-video   submit
    GET  {api}/queue/requests/{id}/status                 status
    GET  {api}/queue/requests/{id}/status/stream          stream   (server-sent events)
    GET  {api}/queue/requests/{id}                        result
    PUT  {api}/queue/requests/{id}/cancel                 cancel
    POST {api}/storage/upload/initiate                    upload_initiate
    PUT  {root}/files/upload/{token}                      upload_put
    GET  {root}/files/uploads/{token}/{file_name}         file
    GET  {root}/files/video/{id}.mp4                      video

API routes need ``Authorization: Key <fake.key>`` (else 401 ``UNAUTHORIZED``). Errors have sunra's shape
``{"error": {"code", "message", "details"}}``. Submits are validated like the real API (prompt 1-2500
chars, start_image_url, negative_prompt <= 2500, duration "5"/"10", generate_audio bool, voice_ids <= 2
strings, unknown fields refused): 422 ``VALIDATION_ERROR`` with one detail per problem.

A job's life is driven by time (``time.monotonic``), so nothing has to be stepped:

* ``IN_QUEUE`` for ``queue_seconds`` (default a third of ``job_seconds``), ``queue_position`` counting
  down from ``queue_length`` (default 3) to 0;
* ``IN_PROGRESS`` until ``job_seconds`` (default 0.3 s) after the submit, with one more ``logs`` line
  ({message, timestamp}) every quarter of the phase;
* ``COMPLETED`` with ``success: true`` and a result ``{"video": {"url": "{root}/files/video/{id}.mp4",
  "content_type": "video/mp4", "file_name": "{id}.mp4", "file_size": N}}``; the video's N bytes
  (``video_size``, default 200 KB; deterministic, see :func:`video_bytes`; generated while streaming, so
  gigabytes cost no memory) are served at that URL once the job is done.
* A failing job ends ``{"status": "COMPLETED", "success": false, "error": {"code": "PREDICTION_FAILED",
  "message", "details": {"code", "message", "reason", "retryable"}}}`` and its result answers 200 with
  that error object. A cancelled job answers ``{"status": "CANCELLED"}`` and its result 400.

Scripting (all in-process methods; every one also works through the control API):

* Per job, by plan rules consumed at submit (the one mechanism; a rule may match on a prompt
  substring so concurrent submits stay deterministic)::

      fake.next_job(seconds=2.0, queue_seconds=0.5, video_size=5_000_000)   # the next job only
      fake.fail_next_job(reason="NSFW content", retryable=False)            # the next job fails
      fake.plan_jobs(JobPlan(fail=JobFailure("busy", retryable=True)), prompt_contains="[fail]", times=None)

* Per request, by faults consumed in order per route::

      fake.fail_next("submit", 429, retry_after=2)   # answer 429 with Retry-After: 2, no job made
      fake.fail_next("submit", 500, times=2)         # 500 twice, no job made
      fake.fail_next("submit", 500, after_processing=True)   # the job IS made, then 500: uncertain
      fake.hang_next_submit(5.0)                      # the job is made, the answer comes 5 s late
      fake.fail_next("status", 503, times=3) ; fake.fail_next("status", malformed=True)
      fake.fail_next("result", 500) ; fake.fail_next("upload_put", 503) ; fake.fail_next("video", 500)
      fake.fail_next("video", cut_after=100_000)     # the download is cut off after 100 KB

* Switches: ``fake.stream_enabled = False`` (the stream route answers 404), ``fake.stream_drop_after = n``
  (each stream connection is cut after n events), ``fake.stream_stall_after = n`` (after n events a stream
  stays open with keep-alives every ``stream_keepalive_seconds`` and never sends another, not even the
  final one; ``stream_ping_events`` sends them as ``{"type": "ping"}`` events instead of comments),
  ``fake.status_extra = {"logs": "text", ...}`` (merged into every status answer and event: drift),
  ``fake.key = "other"`` or ``fake.reject_key()`` (the
  bot's key becomes bad: 401), ``fake.balance = 0`` (402 ``INSUFFICIENT_BALANCE``; a number counts down
  by one per job; None = unlimited), ``fake.submit_rate_limit = (10, 1.0)`` (sliding-window 429 with
  ``Retry-After`` and ``x-ratelimit-*``; ``fake.rate_limit_status = 403`` answers it the way sunra's queue
  documentation says: 403 ``RATE_LIMIT_EXCEEDED``), ``fake.reject_key(403)`` (a 403 that rejects the
  key), ``fake.send_video_length = False`` (videos chunked, without Content-Length),
  ``fake.job_seconds`` / ``queue_seconds`` / ``queue_length`` / ``video_size``.
* Hostile storage: ``fake.upload_url_override = url`` (upload tickets name it), ``fake.video_redirect =
  url`` (every video answers 302 to it); a job's ``video.url`` is set with ``JobPlan(result=...)``.
* Cancels: ``fake.cancel_mode = "requested"`` answers ``CANCELLATION_REQUESTED`` and the job ends
  ``CANCELLED`` ``fake.cancel_seconds`` later; ``"ignored"`` answers the same and the job completes as
  planned (a video, billed).
* Per existing job: ``fake.force_status(id, {"status": "SOMETHING_NEW"})`` (status and stream answer
  that object until ``force_status(id, None)``), ``fake.force_result(id, 500, body)``, ``fake.finish(id)``
  (complete now).

Records (oldest first): ``fake.requests`` (:class:`RecordedRequest`: route, method, path, request_id,
has_authorization, status, at), ``fake.submissions`` (every JSON body received at submit, even refused
ones), ``fake.jobs`` (request id → :class:`FakeJob`), ``fake.uploads`` (file_url → :class:`Upload`),
``fake.leaked_auth``; ``fake.count(route, request_id=None)``; ``await fake.wait_until(predicate)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import math
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

API_PREFIX = "/v1"
KLING_ENDPOINT = "kling/kling-v2.6-pro/image-to-video"
FILES_PREFIX = "/files"
CONTROL_PREFIX = "/_control"
DEFAULT_KEY = "test-key"
DEFAULT_JOB_SECONDS = 0.3
DEFAULT_QUEUE_LENGTH = 3
DEFAULT_VIDEO_SIZE = 200_000
MAX_PROMPT_CHARS = 2500
MAX_VOICES = 2
INPUT_FIELDS = frozenset(
    {
        "prompt",
        "start_image_url",
        "end_image_url",
        "negative_prompt",
        "duration",
        "generate_audio",
        "voice_ids",
    }
)
# The stream looks for a change this often, and sends a comment when nothing changed for a while so
# proxies and clients see a live connection.
STREAM_TICK_SECONDS = 0.05
STREAM_KEEPALIVE_SECONDS = 15.0
LOG_STEPS = 4  # IN_PROGRESS gains a log line every quarter of the phase
CHUNK_BYTES = 64 * 1024
MAX_BODY_BYTES = 200 * 1024 * 1024
# A real MP4 starts with an ftyp box; the rest of a fake video is deterministic filler.
RATE_LIMIT_CODE = "RATE_LIMIT_EXCEEDED"
RATE_LIMIT_MESSAGE = "Rate limit exceeded. Please retry with exponential backoff."
DEFAULT_FAILURE_REASON = "The model could not generate this video."
DEFAULT_FAILURE_CODE = "generation_failed"
MP4_HEADER = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
ROUTES = (
    "submit",
    "status",
    "stream",
    "result",
    "cancel",
    "upload_initiate",
    "upload_put",
    "file",
    "video",
)
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    402: "INSUFFICIENT_BALANCE",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


def error_body(status: int, message: str, *, code: str | None = None, details: Any = None) -> dict[str, Any]:
    return {
        "error": {"code": code or ERROR_CODES.get(status, "ERROR"), "message": message, "details": details}
    }


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        error_body(status, message, code=code, details=details), status=status, headers=headers
    )


def _rate_limit_headers(limit: int, reset: float, remaining: int = 0) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": f"{reset:.3f}",
    }


def _now() -> float:
    return time.monotonic()


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------- video bytes


def _filler_block(request_id: str) -> bytes:
    seed = hashlib.sha256(request_id.encode()).digest()
    return hashlib.shake_256(seed).digest(CHUNK_BYTES)


def video_chunks(request_id: str, size: int) -> list[tuple[int, int]]:
    """(offset, length) of each chunk the server writes for a video of ``size`` bytes."""
    return [(offset, min(CHUNK_BYTES, size - offset)) for offset in range(0, size, CHUNK_BYTES)]


def video_piece(request_id: str, offset: int, length: int, block: bytes | None = None) -> bytes:
    """Bytes ``offset .. offset+length`` of the fake video: the MP4 header, then a repeated block."""
    block = block or _filler_block(request_id)
    out = bytearray()
    position = offset
    end = offset + length
    while position < end:
        if position < len(MP4_HEADER):
            piece = MP4_HEADER[position : min(end, len(MP4_HEADER))]
        else:
            start = position % len(block)
            piece = block[start : start + min(end - position, len(block) - start)]
        out += piece
        position += len(piece)
    return bytes(out)


def video_bytes(request_id: str, size: int) -> bytes:
    """The whole fake video of a job (for comparisons in tests; fine for sizes up to a few MB)."""
    return video_piece(request_id, 0, size)


# -------------------------------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    route: str  # one of ROUTES, "control", or "unknown"
    method: str
    path: str
    request_id: str | None
    has_authorization: bool
    at: float  # seconds since the fake started
    status: int | None = None  # None while the answer is still being produced (or it never came)


@dataclass(frozen=True)
class Upload:
    data: bytes
    content_type: str
    file_name: str


@dataclass(frozen=True)
class JobFailure:
    """How a scripted job fails (the ``details`` of its PREDICTION_FAILED error)."""

    reason: str = DEFAULT_FAILURE_REASON
    retryable: bool = True
    code: str = DEFAULT_FAILURE_CODE
    message: str = "Prediction failed"


@dataclass(frozen=True)
class JobPlan:
    """Overrides for one job; None keeps the fake's default."""

    seconds: float | None = None  # submit → terminal
    queue_seconds: float | None = None  # submit → IN_PROGRESS
    queue_length: int | None = None
    video_size: int | None = None
    fail: JobFailure | None = None
    final_status: dict[str, Any] | None = None  # replaces the terminal status object as a whole
    result: Any = None  # replaces the result answer (200) of a successful job, e.g. {"video": None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobPlan:
        fail = data.get("fail")
        return cls(
            seconds=data.get("seconds"),
            queue_seconds=data.get("queue_seconds"),
            queue_length=data.get("queue_length"),
            video_size=data.get("video_size"),
            fail=JobFailure(**fail) if isinstance(fail, dict) else None,
            final_status=data.get("final_status"),
            result=data.get("result"),
        )


@dataclass
class _PlanRule:
    plan: JobPlan
    prompt_contains: str | None
    times: int | None  # None = every matching job

    def matches(self, prompt: str) -> bool:
        return (self.times is None or self.times > 0) and (
            self.prompt_contains is None or self.prompt_contains in prompt
        )


@dataclass
class Fault:
    """One scripted answer for a route (see :meth:`FakeSunra.fail_next`)."""

    status: int = 500
    body: Any = None  # default: sunra's error body for ``status``
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    malformed: bool = False  # answer 200 with a body that is not JSON
    after_processing: bool = False  # submit only: create the job first, then answer this way
    cut_after: int | None = None  # video only: send the headers and this many bytes, then cut the line


@dataclass
class FakeJob:
    request_id: str
    input: dict[str, Any]
    created_at: float
    seconds: float
    queue_seconds: float
    queue_length: int
    video_size: int
    video_url: str
    fail: JobFailure | None = None
    final_status: dict[str, Any] | None = None
    cancelled_at: float | None = None
    finished_at: float | None = None  # set by FakeSunra.finish()
    content: bytes | None = None  # a real video to serve instead of filler bytes
    forced_status: dict[str, Any] | None = None
    forced_result: tuple[int, Any] | None = None

    def status_body(self, now: float) -> dict[str, Any]:
        """The status object the API answers at ``now`` (a forced one, else the job's own)."""
        if self.forced_status is not None:
            return dict(self.forced_status)
        return self.timeline_body(now)

    def timeline_body(self, now: float) -> dict[str, Any]:
        """The job's own status at ``now``: what its result, cancel and video follow, whatever the
        status route is forced to say."""
        if self.cancelled_at is not None and now >= self.cancelled_at and self._running_at(self.cancelled_at):
            return {"status": "CANCELLED", "request_id": self.request_id}
        elapsed = now - self.created_at
        if self.finished_at is None and elapsed < self.queue_seconds:
            left = 1.0 - elapsed / self.queue_seconds
            position = min(self.queue_length, int(self.queue_length * left))
            return {"status": "IN_QUEUE", "queue_position": position, "request_id": self.request_id}
        if self.finished_at is None and elapsed < self.seconds:
            phase = max(self.seconds - self.queue_seconds, 1e-9)
            done = (elapsed - self.queue_seconds) / phase
            lines = 1 + min(LOG_STEPS - 1, int(done * LOG_STEPS))
            logs = [
                {"message": f"Generating video: {step * 100 // LOG_STEPS}%", "timestamp": _iso_now()}
                for step in range(lines)
            ]
            return {"status": "IN_PROGRESS", "logs": logs, "request_id": self.request_id}
        return self.terminal_body()

    def _running_at(self, when: float) -> bool:
        # A cancel takes effect only on a job still running when it lands (a requested one, later).
        finished = self.finished_at is not None and self.finished_at <= when
        return not finished and when - self.created_at < self.seconds

    def terminal_body(self) -> dict[str, Any]:
        if self.final_status is not None:
            return dict(self.final_status)
        if self.fail is not None:
            return {
                "status": "COMPLETED",
                "success": False,
                "error": self.failure_error(),
                "request_id": self.request_id,
            }
        return {"status": "COMPLETED", "success": True, "request_id": self.request_id}

    def failure_error(self) -> dict[str, Any]:
        fail = self.fail or JobFailure()
        details = {
            "code": fail.code,
            "message": fail.message,
            "reason": fail.reason,
            "retryable": fail.retryable,
        }
        return {"code": "PREDICTION_FAILED", "message": fail.message, "details": details}

    def state(self, now: float | None = None) -> str:
        return str(self.timeline_body(_now() if now is None else now)["status"])

    def is_done(self, now: float | None = None) -> bool:
        return self.state(now).upper() not in ("IN_QUEUE", "IN_PROGRESS")

    def succeeded(self, now: float | None = None) -> bool:
        body = self.timeline_body(_now() if now is None else now)
        return body.get("status") == "COMPLETED" and body.get("success") is True

    def result_body(self) -> dict[str, Any]:
        return {
            "video": {
                "url": self.video_url,
                "content_type": "video/mp4",
                "file_name": f"{self.request_id}.mp4",
                "file_size": self.video_size,
            }
        }

    def summary(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "input": self.input,
            "status": self.state(),
            "video_url": self.video_url,
            "video_size": self.video_size,
            "cancelled": self.cancelled_at is not None,
        }


def _validate_input(body: Any) -> list[dict[str, str]]:
    """The problems the real API reports for a submit body (empty when it is valid)."""
    if not isinstance(body, dict):
        return [{"field": "body", "message": "must be a JSON object"}]
    problems: list[dict[str, str]] = []

    def problem(name: str, message: str) -> None:
        problems.append({"field": name, "message": message})

    for name in sorted(set(body) - INPUT_FIELDS):
        problem(name, "unknown field")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        problem("prompt", "is required")
    elif len(prompt) > MAX_PROMPT_CHARS:
        problem("prompt", f"must be at most {MAX_PROMPT_CHARS} characters")
    start = body.get("start_image_url")
    if not isinstance(start, str) or not start:
        problem("start_image_url", "is required")
    end = body.get("end_image_url")
    if end is not None and not isinstance(end, str):
        problem("end_image_url", "must be a string")
    negative = body.get("negative_prompt", "")
    if not isinstance(negative, str):
        problem("negative_prompt", "must be a string")
    elif len(negative) > MAX_PROMPT_CHARS:
        problem("negative_prompt", f"must be at most {MAX_PROMPT_CHARS} characters")
    if body.get("duration", "5") not in ("5", "10"):
        problem("duration", 'must be "5" or "10"')
    if not isinstance(body.get("generate_audio", True), bool):
        problem("generate_audio", "must be a boolean")
    voices = body.get("voice_ids")
    if voices is not None:
        if not isinstance(voices, list) or not all(isinstance(v, str) for v in voices):
            problem("voice_ids", "must be a list of strings")
        elif len(voices) > MAX_VOICES:
            problem("voice_ids", f"must have at most {MAX_VOICES} items")
    return problems


# ------------------------------------------------------------------------------------------------- the fake


class FakeSunra:
    """The fake API. Use ``async with FakeSunra(...) as fake`` or ``await start()`` / ``await stop()``."""

    def __init__(
        self,
        key: str = DEFAULT_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        job_seconds: float = DEFAULT_JOB_SECONDS,
        queue_seconds: float | None = None,
        queue_length: int = DEFAULT_QUEUE_LENGTH,
        video_size: int = DEFAULT_VIDEO_SIZE,
    ) -> None:
        self.key = key
        self.host = host
        self.port = port
        self.job_seconds = job_seconds
        self.queue_seconds = queue_seconds  # None = a third of each job's seconds
        self.queue_length = queue_length
        self.video_size = video_size
        # A real video file (tests that decode what they get) served instead of filler bytes.
        self.video_content: bytes | None = None
        self.balance: int | None = None
        self.stream_enabled = True
        self.stream_drop_after: int | None = None
        # After this many events a stream sends keep-alives only, never another event (a stuck stream).
        self.stream_stall_after: int | None = None
        self.stream_keepalive_seconds = STREAM_KEEPALIVE_SECONDS
        # Keep-alives as events that carry no status ({"type": "ping"}) instead of SSE comments.
        self.stream_ping_events = False
        # Merged into every status answer and stream event: drift in what the API sends.
        self.status_extra: dict[str, Any] = {}
        self.send_video_length = True
        self.submit_rate_limit: tuple[int, float] | None = None
        # sunra answers a key over its rate limit 403 (its queue documentation), sometimes 429.
        self.rate_limit_status = 429
        self.rejected_key_status = 401
        # How a cancel is answered: "cancelled" (at once, CANCELLED), "requested" (CANCELLATION_REQUESTED,
        # the job ends CANCELLED ``cancel_seconds`` later) or "ignored" (CANCELLATION_REQUESTED, and the
        # job runs on and ends as planned: COMPLETED, success and a video, as a hostile API may).
        self.cancel_mode = "cancelled"
        self.cancel_seconds = 0.3
        # Hostile storage: the upload ticket names this upload_url; videos answer 302 to this Location.
        self.upload_url_override: str | None = None
        self.video_redirect: str | None = None

        self.requests: list[RecordedRequest] = []
        self.submissions: list[Any] = []
        self.jobs: dict[str, FakeJob] = {}
        self.uploads: dict[str, Upload] = {}
        self.leaked_auth = False

        self._faults: dict[str, deque[Fault]] = {route: deque() for route in ROUTES}
        self._plans: list[_PlanRule] = []
        self._upload_tickets: dict[str, tuple[str, str]] = {}  # token → (content type, file name)
        self._submit_times: deque[float] = deque()
        self._counter = 0
        self._started_at = _now()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # ----- lifecycle --------------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base ({api}) to give SunraClient."""
        return self.root + API_PREFIX

    @property
    def control_url(self) -> str:
        return self.root + CONTROL_PREFIX

    async def start(self) -> FakeSunra:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._middleware])
        self._setup_routes(app)
        # handler_cancellation: a client that gives up (timeout) cancels the handler, as on a real server.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self._started_at = _now()
        self._closing.clear()
        return self

    async def stop(self) -> None:
        self._closing.set()  # ends open streams and scripted delays at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSunra:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- scripting --------------------------------------------------------------------------------------

    def fail_next(
        self,
        route: str,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        malformed: bool = False,
        after_processing: bool = False,
        rate_limit: bool = False,
        cut_after: int | None = None,
    ) -> None:
        """The next ``times`` requests to ``route`` get this answer instead of the normal one.

        ``rate_limit`` answers as sunra does over the rate limit (with ``status`` 403 or 429): its
        ``RATE_LIMIT_EXCEEDED`` body and ``x-ratelimit-remaining: 0``, unless ``body``/``headers`` say
        otherwise. ``retry_after`` adds ``Retry-After`` (and ``x-ratelimit-*`` for a 429); ``malformed``
        answers 200 with a body that is not JSON (on ``stream``: an event that is not JSON); ``delay``
        waits first;
        ``after_processing`` (submit only) creates the job before answering, the case where a client
        cannot know whether its job exists; ``cut_after`` (video only) starts the normal answer, with its
        full Content-Length, and cuts the connection after that many bytes of the body.
        """
        if route not in self._faults:
            raise ValueError(f"unknown route {route!r}; one of {', '.join(ROUTES)}")
        all_headers: dict[str, str] = {}
        if rate_limit:
            reset = retry_after if retry_after is not None else 1.0
            all_headers.update(_rate_limit_headers(10, reset))
            body = body if body is not None else error_body(status, RATE_LIMIT_MESSAGE, code=RATE_LIMIT_CODE)
        all_headers.update(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = f"{retry_after:g}"
            if status == 429 and not rate_limit:
                all_headers.update(
                    {
                        "x-ratelimit-limit": "10",
                        "x-ratelimit-remaining": "0",
                        "x-ratelimit-reset": f"{retry_after:g}",
                    }
                )
        fault = Fault(status, body, all_headers, delay, malformed, after_processing, cut_after)
        self._faults[route].extend(dataclasses.replace(fault) for _ in range(times))

    def hang_next_submit(self, seconds: float) -> None:
        """The next submit creates its job, then answers only after ``seconds`` (a client timeout)."""
        self.fail_next("submit", 200, delay=seconds, after_processing=True)

    def clear_faults(self) -> None:
        for queue in self._faults.values():
            queue.clear()

    def pending_faults(self, route: str) -> int:
        return len(self._faults[route])

    def plan_jobs(self, plan: JobPlan, *, prompt_contains: str | None = None, times: int | None = 1) -> None:
        """Jobs submitted from now on (whose prompt contains ``prompt_contains``, if given) follow ``plan``;
        ``times`` jobs, or all with None. Rules are tried in the order they were added."""
        self._plans.append(_PlanRule(plan, prompt_contains, times))

    def next_job(
        self,
        *,
        seconds: float | None = None,
        queue_seconds: float | None = None,
        queue_length: int | None = None,
        video_size: int | None = None,
        final_status: dict[str, Any] | None = None,
        result: Any = None,
    ) -> None:
        self.plan_jobs(JobPlan(seconds, queue_seconds, queue_length, video_size, None, final_status, result))

    def fail_next_job(
        self,
        reason: str = DEFAULT_FAILURE_REASON,
        *,
        retryable: bool = False,
        code: str = DEFAULT_FAILURE_CODE,
        seconds: float | None = None,
    ) -> None:
        """The next job ends COMPLETED with success false and this PREDICTION_FAILED reason."""
        self.plan_jobs(
            JobPlan(seconds=seconds, fail=JobFailure(reason=reason, retryable=retryable, code=code))
        )

    def reject_key(self, status: int = 401) -> None:
        """From now on the client's key is wrong: ``status`` (401, or 403 ``FORBIDDEN`` "Invalid API
        key" with the usual ``x-ratelimit-*`` headers, not at zero) on every API route."""
        self.key = "revoked-" + secrets.token_hex(8)
        self.rejected_key_status = status

    def force_status(self, request_id: str, body: dict[str, Any] | None) -> None:
        """Status and stream answer ``body`` for this job (None: back to the timeline)."""
        self.jobs[request_id].forced_status = body

    def force_result(self, request_id: str, status: int, body: Any) -> None:
        self.jobs[request_id].forced_result = (status, body)

    def finish(self, request_id: str) -> None:
        """Ends a job's timeline now (success or its planned failure)."""
        self.jobs[request_id].finished_at = _now()

    def reset(self) -> None:
        """Forgets records, jobs, uploads, faults and plans (switches and timings stay)."""
        self.requests.clear()
        self.submissions.clear()
        self.jobs.clear()
        self.uploads.clear()
        self._upload_tickets.clear()
        self._plans.clear()
        self.clear_faults()
        self.leaked_auth = False

    # ----- records ----------------------------------------------------------------------------------------

    def count(self, route: str, request_id: str | None = None) -> int:
        """How many requests reached ``route`` (for one request id, if given)."""
        return sum(
            1
            for r in self.requests
            if r.route == route and (request_id is None or r.request_id == request_id)
        )

    def video_bytes(self, request_id: str) -> bytes:
        return video_bytes(request_id, self.jobs[request_id].video_size)

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        deadline = _now() + within
        while not predicate():
            if _now() > deadline:
                raise TimeoutError("fake sunra: condition not reached in time")
            await asyncio.sleep(0.01)

    def state(self) -> dict[str, Any]:
        """Everything recorded, as JSON (the control API's ``GET /state``)."""
        return {
            "url": self.url,
            "jobs": {rid: job.summary() for rid, job in self.jobs.items()},
            "submissions": self.submissions,
            "counts": {route: self.count(route) for route in ROUTES},
            "requests": [dataclasses.asdict(r) for r in self.requests],
            "uploads": {
                url: {"content_type": u.content_type, "file_name": u.file_name, "size": len(u.data)}
                for url, u in self.uploads.items()
            },
            "leaked_auth": self.leaked_auth,
        }

    # ----- HTTP plumbing ----------------------------------------------------------------------------------

    def _setup_routes(self, app: web.Application) -> None:
        """Routes, plus the control API (JSON, no auth) for a fake in another process:

        ``GET /_control/state`` (:meth:`state`); ``POST /_control/fault`` {route, status, times,
        retry_after, body, headers, delay, malformed, after_processing, rate_limit, cut_after}; ``POST
        /_control/job`` {plan: {seconds, queue_seconds, queue_length, video_size, fail: {reason,
        retryable, code, message}, final_status, result}, prompt_contains, times}; ``POST
        /_control/config`` {key, balance, job_seconds, queue_seconds, queue_length, video_size,
        stream_enabled, stream_drop_after, send_video_length, submit_rate_limit}; ``POST
        /_control/force_status`` {request_id, body};
        ``POST /_control/finish`` {request_id}; ``POST /_control/reset``.
        """
        api = API_PREFIX + "/queue"
        requests = api + "/requests/{request_id}"
        app.router.add_post(f"{api}/{KLING_ENDPOINT}", self._submit, name="submit")
        app.router.add_get(requests + "/status", self._status, name="status")
        app.router.add_get(requests + "/status/stream", self._stream, name="stream")
        app.router.add_get(requests, self._result, name="result")
        app.router.add_put(requests + "/cancel", self._cancel, name="cancel")
        app.router.add_post(
            API_PREFIX + "/storage/upload/initiate", self._upload_initiate, name="upload_initiate"
        )
        app.router.add_put(FILES_PREFIX + "/upload/{token}", self._upload_put, name="upload_put")
        app.router.add_get(FILES_PREFIX + "/uploads/{token}/{file_name}", self._file, name="file")
        app.router.add_get(FILES_PREFIX + "/video/{request_id}.mp4", self._video, name="video")
        app.router.add_get(CONTROL_PREFIX + "/state", self._control_state)
        app.router.add_post(CONTROL_PREFIX + "/{action}", self._control_action)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        route = request.match_info.route.name or (
            "control" if request.path.startswith(CONTROL_PREFIX) else "unknown"
        )
        has_auth = "Authorization" in request.headers
        record = RecordedRequest(
            route=route,
            method=request.method,
            path=request.path,
            request_id=request.match_info.get("request_id"),
            has_authorization=has_auth,
            at=_now() - self._started_at,
        )
        if route != "control":
            self.requests.append(record)
        if request.path.startswith(FILES_PREFIX + "/") and has_auth:
            self.leaked_auth = True  # the key (or any credential) went to the storage host
        if (
            request.path.startswith(API_PREFIX + "/")
            and request.headers.get("Authorization") != f"Key {self.key}"
        ):
            status = self.rejected_key_status
            headers = _rate_limit_headers(100, 1.0, remaining=99) if status == 403 else None
            response: web.StreamResponse = error_response(
                status, "Invalid or missing API key", headers=headers
            )
        else:
            response = await handler(request)
        record.status = response.status
        return response

    def _take_fault(self, route: str) -> Fault | None:
        queue = self._faults[route]
        return queue.popleft() if queue else None

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)

    async def _fault_response(
        self, fault: Fault, normal: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        await self._pause(fault.delay)
        if fault.malformed:
            return web.Response(status=200, text='{"status": "IN_PROG', content_type="application/json")
        if fault.status < 300 and normal is not None:
            return normal
        if fault.body is not None:
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        return error_response(fault.status, f"Injected {fault.status}", headers=fault.headers)

    def _job_or_404(self, request: web.Request) -> FakeJob | web.Response:
        job = self.jobs.get(request.match_info["request_id"])
        return job if job is not None else error_response(404, "Request not found")

    # ----- API handlers -----------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.submissions.append(body)
        fault = self._take_fault("submit")
        if fault is not None and not fault.after_processing:
            return await self._fault_response(fault)
        if (limited := self._rate_limited()) is not None:
            return limited
        problems = _validate_input(body)
        if problems:
            message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            return error_response(422, message, details=problems)
        if self.balance is not None and self.balance < 1:
            return error_response(402, "Insufficient balance. Please top up your account.")
        job = self._create_job(body)
        answer = web.json_response(
            {
                "request_id": job.request_id,
                "status_url": f"{self.url}/queue/requests/{job.request_id}/status",
                "response_url": f"{self.url}/queue/requests/{job.request_id}",
                "cancel_url": f"{self.url}/queue/requests/{job.request_id}/cancel",
            }
        )
        if fault is not None:
            return await self._fault_response(fault, answer)
        return answer

    def _rate_limited(self) -> web.Response | None:
        if self.submit_rate_limit is None:
            return None
        count, window = self.submit_rate_limit
        now = _now()
        while self._submit_times and now - self._submit_times[0] >= window:
            self._submit_times.popleft()
        if len(self._submit_times) >= count:
            wait = max(0.0, window - (now - self._submit_times[0]))
            headers = {"Retry-After": f"{math.ceil(wait)}", **_rate_limit_headers(count, wait)}
            if self.rate_limit_status == 403:
                return error_response(403, RATE_LIMIT_MESSAGE, code=RATE_LIMIT_CODE, headers=headers)
            return error_response(429, "Too many requests", headers=headers)
        self._submit_times.append(now)
        return None

    def _create_job(self, body: dict[str, Any]) -> FakeJob:
        plan = self._plan_for(str(body.get("prompt", "")))
        self._counter += 1
        request_id = f"req-{self._counter:04d}-{secrets.token_hex(4)}"
        seconds = plan.seconds if plan.seconds is not None else self.job_seconds
        queue = plan.queue_seconds if plan.queue_seconds is not None else self.queue_seconds
        job = FakeJob(
            request_id=request_id,
            input=body,
            created_at=_now(),
            seconds=seconds,
            queue_seconds=min(seconds, queue if queue is not None else seconds / 3),
            queue_length=plan.queue_length if plan.queue_length is not None else self.queue_length,
            video_size=plan.video_size if plan.video_size is not None else self.video_size,
            video_url=f"{self.root}{FILES_PREFIX}/video/{request_id}.mp4",
            fail=plan.fail,
            final_status=plan.final_status,
            forced_result=None if plan.result is None else (200, plan.result),
            content=self.video_content,
        )
        if job.content is not None:
            job.video_size = len(job.content)
        self.jobs[request_id] = job
        if self.balance is not None:
            self.balance -= 1
        return job

    def _plan_for(self, prompt: str) -> JobPlan:
        for rule in self._plans:
            if rule.matches(prompt):
                if rule.times is not None:
                    rule.times -= 1
                return rule.plan
        return JobPlan()

    async def _status(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("status")
        if fault is not None:
            return await self._fault_response(fault)
        job = self._job_or_404(request)
        if isinstance(job, web.Response):
            return job
        return web.json_response(self._status_body(job))

    def _status_body(self, job: FakeJob) -> dict[str, Any]:
        return {**job.status_body(_now()), **self.status_extra}

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("stream")
        if fault is not None and not fault.malformed:
            return await self._fault_response(fault)
        if not self.stream_enabled:
            return error_response(404, "Not found")
        job = self._job_or_404(request)
        if isinstance(job, web.Response):
            return job
        response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        if fault is not None:  # malformed: one garbled event, then the stream goes on
            await response.write(b"data: {not json\n\n")
        await self._send_events(request, response, job)
        return response

    async def _send_events(self, request: web.Request, response: web.StreamResponse, job: FakeJob) -> None:
        last: dict[str, Any] | None = None
        sent = 0
        quiet_since = _now()
        while not self._closing.is_set():
            body = self._status_body(job)
            stalled = self.stream_stall_after is not None and sent >= self.stream_stall_after
            if body != last and not stalled:
                await response.write(f"data: {json.dumps(body)}\n\n".encode())
                last, sent, quiet_since = body, sent + 1, _now()
                if self.stream_drop_after is not None and sent >= self.stream_drop_after:
                    # Cut the connection without ending the chunked body: the client sees a broken stream.
                    if request.transport is not None:
                        request.transport.abort()
                    return
                if str(body.get("status", "")).upper() not in ("IN_QUEUE", "IN_PROGRESS"):
                    break  # terminal (known or unknown ending): the stream ends after it
            elif _now() - quiet_since > self.stream_keepalive_seconds:
                ping = (
                    b'event: ping\ndata: {"type": "ping"}\n\n'
                    if self.stream_ping_events
                    else b": keep-alive\n\n"
                )
                await response.write(ping)
                quiet_since = _now()
            await self._pause(STREAM_TICK_SECONDS)
        await response.write_eof()

    async def _result(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("result")
        if fault is not None:
            return await self._fault_response(fault)
        job = self._job_or_404(request)
        if isinstance(job, web.Response):
            return job
        if job.forced_result is not None:
            status, body = job.forced_result
            return web.json_response(body, status=status)
        state = job.state()
        if state == "CANCELLED":
            return error_response(400, "The request was cancelled", code="REQUEST_CANCELLED")
        if not job.is_done():
            return error_response(400, f"The request is not completed yet ({state})", code="NOT_COMPLETED")
        if not job.succeeded():
            return web.json_response({"error": job.failure_error()})
        return web.json_response(job.result_body())

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("cancel")
        if fault is not None:
            return await self._fault_response(fault)
        job = self._job_or_404(request)
        if isinstance(job, web.Response):
            return job
        if job.is_done():
            return error_response(409, "The request has already completed", code="ALREADY_COMPLETED")
        if self.cancel_mode == "cancelled":
            job.cancelled_at = _now()
            return web.json_response({"request_id": job.request_id, "status": "CANCELLED", "success": True})
        if self.cancel_mode == "requested":
            job.cancelled_at = _now() + self.cancel_seconds
        return web.json_response(
            {"request_id": job.request_id, "status": "CANCELLATION_REQUESTED", "success": True}
        )

    async def _upload_initiate(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("upload_initiate")
        if fault is not None:
            return await self._fault_response(fault)
        try:
            body = await request.json()
        except ValueError:
            body = None
        content_type = body.get("content_type") if isinstance(body, dict) else None
        file_name = body.get("file_name") if isinstance(body, dict) else None
        if not isinstance(content_type, str) or not isinstance(file_name, str) or not file_name:
            return error_response(422, "content_type and file_name are required")
        token = secrets.token_hex(8)
        self._upload_tickets[token] = (content_type, file_name)
        return web.json_response(
            {
                "upload_url": self.upload_url_override
                or f"{self.root}{FILES_PREFIX}/upload/{token}?signature={secrets.token_hex(8)}",
                "file_url": self._file_url(token, file_name),
            }
        )

    def _file_url(self, token: str, file_name: str) -> str:
        return f"{self.root}{FILES_PREFIX}/uploads/{token}/{quote(file_name, safe='')}"

    # ----- storage handlers (no auth expected) ------------------------------------------------------------

    async def _upload_put(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("upload_put")
        if fault is not None:
            return await self._fault_response(fault)
        ticket = self._upload_tickets.get(request.match_info["token"])
        if ticket is None:
            return error_response(404, "Unknown upload")
        _, file_name = ticket
        data = await request.read()
        content_type = request.headers.get("Content-Type", "application/octet-stream")
        self.uploads[self._file_url(request.match_info["token"], file_name)] = Upload(
            data, content_type, file_name
        )
        return web.Response(status=200)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("file")
        if fault is not None:
            return await self._fault_response(fault)
        upload = self.uploads.get(
            self._file_url(request.match_info["token"], request.match_info["file_name"])
        )
        if upload is None:
            return error_response(404, "Not found")
        return web.Response(body=upload.data, content_type=upload.content_type.split(";")[0])

    async def _video(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("video")
        if fault is not None and fault.cut_after is None:
            return await self._fault_response(fault)
        cut_after = None if fault is None else fault.cut_after
        if self.video_redirect is not None:
            raise web.HTTPFound(self.video_redirect)
        job = self.jobs.get(request.match_info["request_id"])
        if job is None or not job.succeeded():
            return error_response(404, "Not found")
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        if self.send_video_length:
            response.content_length = job.video_size
        await response.prepare(request)
        if request.method != "HEAD" and job.content is not None:
            await response.write(job.content[:cut_after])
        elif request.method != "HEAD":
            block = _filler_block(job.request_id)
            size = job.video_size if cut_after is None else min(cut_after, job.video_size)
            for offset, length in video_chunks(job.request_id, size):
                await response.write(video_piece(job.request_id, offset, length, block))
        if cut_after is not None and request.transport is not None:
            request.transport.abort()  # the body ends early, without its last chunk: a cut connection
            return response
        await response.write_eof()
        return response

    # ----- control API ------------------------------------------------------------------------------------

    async def _control_state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state())

    async def _control_action(self, request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        body = await request.json() if request.can_read_body else {}
        try:
            self._apply_control(action, body)
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, status=400)
        return web.json_response({"ok": True})

    def _apply_control(self, action: str, body: dict[str, Any]) -> None:
        if action == "fault":
            self.fail_next(body.pop("route"), **body)
        elif action == "job":
            plan = JobPlan.from_json(body.get("plan", {}))
            self.plan_jobs(plan, prompt_contains=body.get("prompt_contains"), times=body.get("times", 1))
        elif action == "config":
            self._configure(body)
        elif action == "force_status":
            self.force_status(body["request_id"], body.get("body"))
        elif action == "finish":
            self.finish(body["request_id"])
        elif action == "reset":
            self.reset()
        else:
            raise ValueError(f"unknown control action {action!r}")

    def _configure(self, body: dict[str, Any]) -> None:
        allowed = {
            "key",
            "balance",
            "job_seconds",
            "queue_seconds",
            "queue_length",
            "video_size",
            "stream_enabled",
            "stream_drop_after",
            "send_video_length",
            "submit_rate_limit",
            "rate_limit_status",
            "stream_stall_after",
            "stream_keepalive_seconds",
            "stream_ping_events",
            "status_extra",
            "cancel_mode",
            "cancel_seconds",
            "upload_url_override",
            "video_redirect",
        }
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for name, value in body.items():
            if name == "submit_rate_limit" and value is not None:
                value = (int(value[0]), float(value[1]))
            setattr(self, name, value)


# ------------------------------------------------------------------------------------------ subprocess mode


class FakeSunraProcess:
    """Runs the fake in a child process: ``async with FakeSunraProcess(key="k") as proc: proc.url``."""

    def __init__(
        self,
        key: str = DEFAULT_KEY,
        *,
        port: int = 0,
        job_seconds: float = DEFAULT_JOB_SECONDS,
        queue_seconds: float | None = None,
    ) -> None:
        self.key = key
        self.port = port
        self.job_seconds = job_seconds
        self.queue_seconds = queue_seconds
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None

    @property
    def control_url(self) -> str:
        return self.url.removesuffix(API_PREFIX) + CONTROL_PREFIX

    async def start(self) -> FakeSunraProcess:
        args = [sys.executable, "-m", "tests.fakes.sunra_server", "--port", str(self.port), "--key", self.key]
        args += ["--job-seconds", str(self.job_seconds)]
        if self.queue_seconds is not None:
            args += ["--queue-seconds", str(self.queue_seconds)]
        root = Path(__file__).resolve().parents[2]
        self._process = await asyncio.create_subprocess_exec(*args, cwd=root, stdout=asyncio.subprocess.PIPE)
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), 20)
        if not line:
            raise RuntimeError("the fake sunra process exited before printing its URL")
        self.url = line.decode().strip()
        return self

    async def control(self, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``control("state")`` (GET) or any POST action of the control API."""
        import httpx  # a test dependency anyway; imported here so the server itself needs only aiohttp

        async with httpx.AsyncClient(timeout=10) as client:
            if action == "state":
                response = await client.get(f"{self.control_url}/state")
            else:
                response = await client.post(f"{self.control_url}/{action}", json=body or {})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def __aenter__(self) -> FakeSunraProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeSunra(
        args.key,
        host=args.host,
        port=args.port,
        job_seconds=args.job_seconds,
        queue_seconds=args.queue_seconds,
        video_size=args.video_size,
    )
    await fake.start()
    print(fake.url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.sunra_server",
        description="Fake sunra.ai queue API (Kling image-to-video) on loopback; control API at /_control.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed on stdout line 1)")
    parser.add_argument("--key", default=DEFAULT_KEY, help="the API key the fake accepts")
    parser.add_argument("--job-seconds", type=float, default=DEFAULT_JOB_SECONDS, help="submit → COMPLETED")
    parser.add_argument("--queue-seconds", type=float, default=None, help="time IN_QUEUE (default: a third)")
    parser.add_argument("--video-size", type=int, default=DEFAULT_VIDEO_SIZE, help="bytes per video")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
