"""Typed async client for Kling 2.6 Pro image-to-video on the sunra.ai queue API.

One job goes: :meth:`SunraClient.upload` (the member's picture) → :meth:`~SunraClient.submit` →
:meth:`~SunraClient.wait` (the status stream, or adaptive polling) → :meth:`~SunraClient.result` →
:meth:`~SunraClient.download`. Every failure is a :class:`SunraError` (a :class:`bot.errors.BotError`)
whose ``user_message`` a member can read and whose ``str()`` is a log line for the operator.

Rules this module keeps, because breaking any of them costs money or leaks the key:

* The key is sent only to the configured API base. Uploads and downloads use a second HTTP client that
  has no key at all, and API URLs are always built from the base and the request id, never taken from
  an answer (``status_url``/``response_url`` could point anywhere).
* A submission is retried only when the API certainly created no job: a 429, or a connection that failed
  before the request left. Anything else after sending raises :class:`SubmissionUncertain`.
* Reads (status, result, cancel, upload initiation) are retried with jittered exponential backoff on
  408/409/429/5xx, connection errors, timeouts and unreadable answers, honouring ``Retry-After`` and
  ``x-ratelimit-reset``.
* A rejected key (401/403) or an empty balance (402) blocks new submissions for a while, so a
  misconfigured bot does not hammer the API with every member's command.
* The key never reaches a log line, an exception message or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bot.errors import BotError, ServiceUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "https://api.sunra.ai/v1"
KLING_ENDPOINT = "kling/kling-v2.6-pro/image-to-video"
MAX_PROMPT_CHARS = 2500
MAX_VOICES = 2
DEFAULT_NEGATIVE_PROMPT = "blur, distort, and low quality"
PREDICTION_FAILED_CODE = "PREDICTION_FAILED"

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
# The API documents COMPLETED (with success false on failure); these are accepted too, so an
# undocumented or future ending never leaves a job waiting forever.
FAILED_STATUSES = frozenset({"FAILED", "ERROR", "TIMEOUT"})
CANCELLED_STATUSES = frozenset({"CANCELLED", "CANCELED"})
TERMINAL_STATUSES = frozenset({COMPLETED}) | FAILED_STATUSES | CANCELLED_STATUSES
KNOWN_STATUSES = TERMINAL_STATUSES | {IN_QUEUE, IN_PROGRESS}

# "Not now" answers, worth asking again. Other 4xx are a "no" that asking again will not change.
RETRYABLE_STATUS_CODES = frozenset({408, 409, 429})
SERVER_ERROR_MIN = 500
# x-ratelimit-reset normally holds seconds until the reset; values this large can only be timestamps.
EPOCH_SECONDS_THRESHOLD = 1_000_000_000
EPOCH_MILLISECONDS_THRESHOLD = 1_000_000_000_000

# How much of the API's own text is repeated to a member or in a log line.
MAX_API_TEXT = 300
REDACTED = "[redacted]"
TRANSFER_CHUNK_BYTES = 64 * 1024
KEEPALIVE_CONNECTIONS = 50
# Status streams may hold most of the pool; this many connections always stay free for submits,
# polls and results (a stream that finds no free slot falls back to polling).
RESERVED_CONNECTIONS = 20
# Stream connections in a row that bring no event before a wait gives up on the stream and polls.
MAX_STREAM_FAILURES = 2
# A stream connection shorter than this is followed by a pause, so a server (or proxy) that closes
# streams at once cannot turn the stream into a tight loop.
MIN_STREAM_SECONDS = 5.0

SERVICE_DOWN_MESSAGE = "The bot's video service is not available right now; the server owner has been told."


# --------------------------------------------------------------------------------------------------- errors


class SunraError(BotError):
    """Base of every sunra failure. ``str()`` is the operator's detail, ``user_message`` the member's."""

    user_message = "The video service had a problem. Trying again later may help."
    retryable = True

    def __init__(
        self,
        user_message: str | None = None,
        *,
        retryable: bool | None = None,
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(user_message, retryable=retryable)
        self.status: int | None = status
        self.code: str | None = code
        self.retry_after: float | None = retry_after
        self.detail: str = detail or self.user_message
        self.args = (self.detail,)

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, detail={self.detail!r})"


class AuthError(SunraError, ServiceUnavailable):
    """401/403: the API key is wrong or revoked. Blocks new submissions for a while."""

    user_message = SERVICE_DOWN_MESSAGE


class InsufficientFunds(SunraError, ServiceUnavailable):
    """402: the sunra account has no balance left. Blocks new submissions for a while."""

    user_message = SERVICE_DOWN_MESSAGE


class InvalidInput(SunraError):
    """422 or another 4xx about the request itself: sending the same again will not help."""

    user_message = "Kling refused this request."
    retryable = False


class RateLimited(SunraError):
    """429 after every retry; ``retry_after`` is the server's hint in seconds, when it gave one."""

    user_message = "The video service is busy right now. Please try again in a few minutes."


class TransientError(SunraError):
    """5xx, a timeout or a broken connection, still failing after every retry."""

    user_message = "The video service did not answer properly. Trying again later may help."


class MalformedResponse(SunraError):
    """An answer that is not JSON or lacks what the protocol promises."""

    user_message = "The video service gave an answer the bot could not read. Trying again later may help."


class SubmissionUncertain(SunraError):
    """The submit may or may not have created a job; it is never sent again blindly (that may pay twice)."""

    user_message = (
        "The video service did not confirm your job, so the bot cannot tell whether it started. "
        "It was not sent again, to avoid making it twice; please try again in a few minutes."
    )


class RequestNotFound(SunraError):
    """404 for a request id: the API does not know (or no longer knows) this job."""

    user_message = "The video service no longer knows this job. Trying again may help."


class StreamUnavailable(SunraError):
    """The status stream cannot be used (404/405, not an event stream, or no free connection)."""


class DownloadTooLarge(SunraError):
    """The video is bigger than the caller's limit; nothing is kept on disk."""

    user_message = "The video is larger than this channel accepts."
    retryable = False

    def __init__(self, *, limit: int, size: int | None = None, detail: str | None = None) -> None:
        self.limit = limit
        self.size = size
        shown = f"{size} bytes" if size is not None else "more"
        super().__init__(detail=detail or f"the video is {shown}, over the {limit}-byte limit")


class PredictionFailed(SunraError):
    """Kling ran the job and could not make the video (``reason`` says why, when the API told)."""

    retryable = True

    def __init__(
        self,
        reason: str | None = None,
        *,
        retryable: bool | None = None,
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.reason = _clean_text(reason) if reason else None
        again = type(self).retryable if retryable is None else retryable
        super().__init__(
            _prediction_message(self.reason, again),
            retryable=again,
            status=status,
            code=code,
            detail=detail or f"prediction failed: {self.reason or 'no reason given'}",
        )


def _prediction_message(reason: str | None, retryable: bool) -> str:
    advice = "Trying again may help." if retryable else "Trying again with the same input will not help."
    if reason:
        return f"Kling could not make this video: {reason.rstrip('. ')}. {advice}"
    return f"Kling could not make this video. {advice}"


def _clean_text(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_API_TEXT else text[: MAX_API_TEXT - 1] + "…"


# --------------------------------------------------------------------------------------------------- models


class KlingInput(BaseModel):
    """The endpoint's input, field for field; anything else is refused before it is sent."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    start_image_url: str = Field(min_length=1)
    end_image_url: str | None = None
    negative_prompt: str = Field(default=DEFAULT_NEGATIVE_PROMPT, max_length=MAX_PROMPT_CHARS)
    duration: Literal["5", "10"] = "5"
    generate_audio: bool = True
    voice_ids: list[str] | None = Field(default=None, max_length=MAX_VOICES)

    def payload(self) -> dict[str, Any]:
        """The JSON body; unset optional fields are left out rather than sent as null."""
        return self.model_dump(mode="json", exclude_none=True)


class _ApiModel(BaseModel):
    # Answers may grow fields at any time; keep them instead of failing.
    model_config = ConfigDict(extra="allow")


class QueueLog(_ApiModel):
    message: str = ""
    timestamp: str | float | None = None


def is_terminal(status: str) -> bool:
    """True when a job with this status will not change any more (its case does not matter)."""
    return status.upper() in TERMINAL_STATUSES


class QueueStatus(_ApiModel):
    """One status answer. ``status`` is a plain string: unknown statuses are kept, not refused."""

    status: str
    queue_position: int | None = None
    logs: list[QueueLog] = Field(default_factory=list)
    success: bool | None = None
    error: Any = None
    request_id: str | None = None

    @field_validator("logs", mode="before")
    @classmethod
    def _lenient_logs(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list):
            return [{"message": item} if isinstance(item, str) else item for item in value]
        return value

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.status)

    @property
    def succeeded(self) -> bool | None:
        """True/False once Kling gave a verdict; None while unfinished and for a cancellation."""
        upper = self.status.upper()
        if upper == COMPLETED:
            if self.success is not None:
                return self.success
            return self.error is None
        if upper in FAILED_STATUSES:
            return False
        return None

    @property
    def failure(self) -> PredictionFailed | None:
        """The failure of a finished job (COMPLETED with success false, FAILED, ...), else None."""
        if self.succeeded is not False:
            return None
        default = "the job timed out" if self.status.upper() == "TIMEOUT" else None
        return prediction_failure(self.error, default_reason=default)


class Submission(_ApiModel):
    """The answer to a submit. Only ``request_id`` is used: the URLs are rebuilt from the base."""

    request_id: str = Field(min_length=1)
    status_url: str | None = None
    response_url: str | None = None
    cancel_url: str | None = None


class Video(_ApiModel):
    url: str = Field(min_length=1)
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None


class KlingResult(_ApiModel):
    video: Video


class UploadTicket(_ApiModel):
    upload_url: str = Field(min_length=1)
    file_url: str = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The last ``x-ratelimit-*`` headers seen from the API; ``reset_at`` is on the client's clock."""

    limit: int | None
    remaining: int | None
    reset_at: float | None


def prediction_failure(
    error: Any, *, status: int | None = None, default_reason: str | None = None
) -> PredictionFailed:
    """Builds PredictionFailed from an ``error`` value: the API's error object, its details, or a string."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if not isinstance(error, dict):
        reason = str(error) if error else default_reason
        return PredictionFailed(reason, status=status, code=PREDICTION_FAILED_CODE if error else None)
    details = error.get("details")
    details = details if isinstance(details, dict) else {}
    reason = details.get("reason") or details.get("message") or error.get("reason") or error.get("message")
    retryable = details.get("retryable", error.get("retryable"))
    code = details.get("code") or error.get("code")
    return PredictionFailed(
        str(reason) if reason else default_reason,
        retryable=retryable if isinstance(retryable, bool) else None,
        status=status,
        code=str(code) if code else PREDICTION_FAILED_CODE,
    )


# ------------------------------------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently failed calls are repeated ("equal jitter" exponential backoff)."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    # The longest server-requested wait (Retry-After, x-ratelimit-reset) honoured; a longer one ends
    # the retries at once so a member is not kept waiting for an hour.
    max_wait: float = 120.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): in [ceiling/2, ceiling]."""
        ceiling = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return ceiling / 2 + rand() * ceiling / 2


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Adaptive polling: ``first`` seconds, growing by ``factor`` up to ``maximum``; ± ``jitter`` spread
    keeps jobs resumed together from polling in lockstep. ``stream=False`` skips the status stream."""

    first: float = 2.0
    factor: float = 1.5
    maximum: float = 20.0
    jitter: float = 0.1
    stream: bool = True

    def __post_init__(self) -> None:
        if self.first <= 0 or self.maximum <= 0:
            raise ValueError("poll intervals must be positive")
        if self.factor < 1:
            raise ValueError("the poll interval must not shrink (factor >= 1)")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def intervals(self, rand: Callable[[], float] = random.random) -> Iterator[float]:
        """Endless sleep lengths between two polls."""
        interval = min(self.first, self.maximum)
        while True:
            yield interval * (1 + self.jitter * (2 * rand() - 1))
            interval = min(self.maximum, interval * self.factor)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``read`` is per read of an API call; ``stream_idle`` is the longest silence on the
    status stream before reconnecting; transfers (uploads, downloads) get their own, longer limits."""

    connect: float = 10.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 10.0
    stream_idle: float = 90.0
    transfer_read: float = 60.0
    transfer_write: float = 120.0

    def api(self) -> httpx.Timeout:
        return httpx.Timeout(self.read, connect=self.connect, write=self.write, pool=self.pool)

    def stream(self) -> httpx.Timeout:
        return httpx.Timeout(self.stream_idle, connect=self.connect, write=self.write, pool=self.pool)

    def transfer(self) -> httpx.Timeout:
        return httpx.Timeout(
            self.transfer_read, connect=self.connect, write=self.transfer_write, pool=self.pool
        )


UpdateCallback = Callable[[QueueStatus], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]

# Errors after which a submit certainly did not reach the server: the connection never carried it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transport failures worth another try for reads.
_TRANSIENT_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# Failures a read retries before giving up.
_RETRIED = (TransientError, RateLimited, MalformedResponse)


@dataclass(frozen=True, slots=True)
class _Block:
    error: SunraError
    until: float


# --------------------------------------------------------------------------------------------------- client


class _KeyAuth(httpx.Auth):
    """Adds the key to requests under the API base only (a second guard besides building URLs)."""

    def __init__(self, key: SecretStr, base: httpx.URL) -> None:
        self._key = key
        self._base = base

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _is_under(request.url, self._base):
            request.headers["Authorization"] = f"Key {self._key.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return f"_KeyAuth({REDACTED})"


class SunraClient:
    """Async client for the Kling endpoint; one per process, shared by every job (``async with``)."""

    def __init__(
        self,
        base_url: str,
        key: SecretStr | str,
        *,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 200,
        block_seconds: float = 300.0,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self._base_text = base_url.rstrip("/")
        self._base = httpx.URL(self._base_text)
        if self._base.scheme not in ("http", "https") or not self._base.host:
            raise ValueError("the sunra API base must be an http(s) URL")
        self._key = key if isinstance(key, SecretStr) else SecretStr(key)
        if not self._key.get_secret_value().strip():
            raise ValueError("the sunra API key is empty")
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._block_seconds = block_seconds
        self._timeouts = timeouts
        self._block: _Block | None = None
        self._unknown_statuses: set[str] = set()
        self._rate_limit: RateLimit | None = None
        keepalive = min(KEEPALIVE_CONNECTIONS, max_connections)
        self._api = httpx.AsyncClient(
            auth=_KeyAuth(self._key, self._base),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive),
            timeout=timeouts.api(),
            follow_redirects=False,  # a redirect is not part of the protocol; never follow it with the key
            headers={"Accept": "application/json", "User-Agent": "kling-discord-bot"},
        )
        # Storage and CDN hosts get a client that has no key at all, so none can leak to them.
        self._plain = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive),
            timeout=timeouts.transfer(),
            follow_redirects=True,
            headers={"User-Agent": "kling-discord-bot"},
        )
        reserved = min(RESERVED_CONNECTIONS, max_connections // 4)
        self._stream_slots = asyncio.Semaphore(max(1, max_connections - reserved))

    def __repr__(self) -> str:
        return f"SunraClient(base_url={self._base_text!r})"

    async def __aenter__(self) -> SunraClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._plain.aclose()

    @property
    def base_url(self) -> str:
        return self._base_text

    @property
    def rate_limit(self) -> RateLimit | None:
        return self._rate_limit

    # ----- submissions block ------------------------------------------------------------------------------

    @property
    def submissions_blocked(self) -> BotError | None:
        """The AuthError/InsufficientFunds that stops new submissions right now, or None."""
        block = self._block
        if block is None:
            return None
        if self._clock() >= block.until:
            self._block = None
            log.warning("sunra submissions are allowed again; the next submit tells whether it is fixed")
            return None
        return block.error

    def clear_block(self) -> None:
        """Allows submissions again at once (e.g. after the operator fixed the key)."""
        self._block = None

    def _trip_block(self, error: SunraError) -> None:
        already = self.submissions_blocked is not None
        self._block = _Block(error, self._clock() + self._block_seconds)
        if already:
            return
        until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self._block_seconds)
        when = f"{until:%H:%M:%S} UTC ({self._block_seconds:.0f} s)"
        if isinstance(error, InsufficientFunds):
            log.critical(
                "sunra reports an empty balance (402); new jobs are refused until %s. "
                "Top up the sunra.ai account.",
                when,
            )
        else:
            log.critical(
                "sunra rejected the API key (%s); new jobs are refused until %s. Check SUNRA_KEY.",
                error.status,
                when,
            )

    # ----- submit -----------------------------------------------------------------------------------------

    async def submit(self, data: KlingInput) -> Submission:
        """Queues one job. Retried only when no job can have been created (429, connection refused)."""
        blocked = self.submissions_blocked
        if blocked is not None:
            raise blocked.with_traceback(None)
        path = f"/queue/{KLING_ENDPOINT}"
        submission = await self._call(
            "POST", path, parse=_submission_from, json_body=data.payload(), submit=True
        )
        log.info("sunra accepted job %s", submission.request_id)
        return submission

    # ----- status -----------------------------------------------------------------------------------------

    async def status(self, request_id: str) -> QueueStatus:
        """One status answer, retried on transient failures."""
        status = await self._call(
            "GET", _request_path(request_id, "/status"), parse=_status_from, request_scoped=True
        )
        self._note_status(status)
        return status

    async def stream_status(self, request_id: str) -> AsyncGenerator[QueueStatus, None]:
        """The status stream's events, ending after a terminal status (or when the server ends it).

        Raises StreamUnavailable (404/405, not an event stream, no free connection), TransientError
        (connection broken or silent for ``Timeouts.stream_idle``), MalformedResponse, AuthError, ...
        """
        if self._stream_slots.locked():
            raise StreamUnavailable(detail="every status stream slot is in use")
        path = _request_path(request_id, "/status/stream")
        label = f"GET {path}"
        async with self._stream_slots:
            try:
                async with self._api.stream(
                    "GET",
                    self._url(path),
                    timeout=self._timeouts.stream(),
                    headers={"Accept": "text/event-stream"},
                ) as response:
                    await self._check_stream_open(response, label)
                    async for data in _sse_data(response.aiter_lines()):
                        status = _status_from_text(data, label)
                        self._note_status(status)
                        yield status
                        if status.is_terminal:
                            return
            except httpx.TransportError as exc:
                raise TransientError(detail=self._transport_detail(label, exc)) from exc

    async def _check_stream_open(self, response: httpx.Response, label: str) -> None:
        code = response.status_code
        if code in (404, 405):
            raise StreamUnavailable(status=code, detail=f"{label} answered {code}")
        if code != 200:
            await response.aread()
            raise self._error_from(response, label, request_scoped=False)
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise StreamUnavailable(status=code, detail=f"{label} answered {content_type!r}, not a stream")

    async def poll_status(
        self, request_id: str, *, on_update: UpdateCallback | None = None, poll: PollPolicy = PollPolicy()
    ) -> QueueStatus:
        """Polls adaptively until the job ends; transient failures never end the wait."""
        return await self._poll_until_terminal(request_id, _Updates(on_update), poll)

    async def wait(
        self, request_id: str, *, on_update: UpdateCallback | None = None, poll: PollPolicy = PollPolicy()
    ) -> QueueStatus:
        """Waits for the job to end and returns its terminal status.

        Follows the status stream while it works, otherwise polls (see PollPolicy). ``on_update`` runs
        when the status, queue position or number of log lines changes; its failures are logged, not
        raised. Raises RequestNotFound (unknown id) and AuthError; transient trouble only slows it down.
        """
        updates = _Updates(on_update)
        if poll.stream:
            final = await self._follow_stream(request_id, updates, poll)
            if final is not None:
                return final
        return await self._poll_until_terminal(request_id, updates, poll)

    async def _follow_stream(
        self, request_id: str, updates: _Updates, poll: PollPolicy
    ) -> QueueStatus | None:
        """The terminal status from the stream, or None when the stream does not work for this job."""
        failures = 0
        pauses = poll.intervals()
        while failures < MAX_STREAM_FAILURES:
            started = self._clock()
            events = 0
            try:
                async with contextlib.aclosing(self.stream_status(request_id)) as stream:
                    async for status in stream:
                        events += 1
                        await updates.see(status)
                        if status.is_terminal:
                            return status
                log.debug("sunra status stream for %s ended early; reconnecting", request_id)
            except (AuthError, InsufficientFunds):
                raise
            except (TransientError, RateLimited) as error:
                log.info("sunra status stream for %s broke (%s)", request_id, error)
            except SunraError as error:
                # 404/405, not a stream, a garbled event, ...: polling tells the real story (e.g. an
                # unknown request id raises RequestNotFound there).
                log.info("sunra status stream unusable for %s (%s); polling instead", request_id, error)
                return None
            # A connection that brought events proved the stream works: reconnect. Silent ones count.
            failures = 0 if events else failures + 1
            if self._clock() - started < MIN_STREAM_SECONDS:
                await self._sleep(next(pauses))
        log.info("sunra status stream keeps failing for %s; polling instead", request_id)
        return None

    async def _poll_until_terminal(self, request_id: str, updates: _Updates, poll: PollPolicy) -> QueueStatus:
        for pause in poll.intervals():
            try:
                status = await self.status(request_id)
            except _RETRIED as error:
                log.warning("sunra status for %s failed (%s); still waiting", request_id, error)
            else:
                await updates.see(status)
                if status.is_terminal:
                    return status
            await self._sleep(pause)
        raise AssertionError("PollPolicy.intervals() is endless")

    def _note_status(self, status: QueueStatus) -> None:
        upper = status.status.upper()
        if upper not in KNOWN_STATUSES and upper not in self._unknown_statuses:
            self._unknown_statuses.add(upper)
            log.warning("sunra sent an unknown status %r; treating it as still running", status.status)

    # ----- result, cancel ---------------------------------------------------------------------------------

    async def result(self, request_id: str) -> KlingResult:
        """The finished job's video. Raises PredictionFailed when the job failed."""
        return await self._call("GET", _request_path(request_id), parse=_result_from, request_scoped=True)

    async def cancel(self, request_id: str) -> bool:
        """Asks the API to stop a job: True if accepted, False if it had already ended (400/409)."""
        return await self._call(
            "PUT",
            _request_path(request_id, "/cancel"),
            parse=_cancel_accepted,
            request_scoped=True,
            answers=frozenset({400, 409}),
        )

    # ----- files ------------------------------------------------------------------------------------------

    async def upload(self, data: bytes, *, content_type: str, file_name: str) -> str:
        """Uploads a file to sunra storage and returns its public URL (for ``start_image_url``)."""
        ticket = await self._call(
            "POST",
            "/storage/upload/initiate",
            parse=_ticket_from,
            json_body={"content_type": content_type, "file_name": file_name},
        )
        await self._call(
            "PUT",
            ticket.upload_url,
            parse=_ignore_body,
            content=data,
            headers={"Content-Type": content_type},
            api=False,
        )
        log.debug("uploaded %d bytes as %s", len(data), _safe_url(ticket.file_url))
        return ticket.file_url

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> int:
        """Streams ``url`` (without the key) into ``dest``; returns the bytes written.

        Raises DownloadTooLarge (and leaves no file) when the body exceeds ``max_bytes``.
        """
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https"):
            raise MalformedResponse(detail=f"refusing to download a {parsed.scheme or 'relative'} URL")
        label = f"GET {_safe_url(url)}"
        attempts = max(1, self._retry.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return await self._download_once(url, dest, max_bytes, label)
            except _RETRIED as error:
                if attempt == attempts:
                    raise
                await self._pause_before_retry(label, error, attempt, attempts)
        raise AssertionError("unreachable")

    async def _download_once(self, url: str, dest: Path, max_bytes: int, label: str) -> int:
        written = 0
        try:
            async with self._plain.stream("GET", url) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._error_from(response, label, api=False)
                declared = _int_header(response.headers, "content-length")
                if declared is not None and declared > max_bytes:
                    raise DownloadTooLarge(limit=max_bytes, size=declared)
                handle = await asyncio.to_thread(dest.open, "wb")
                try:
                    async for chunk in response.aiter_bytes(TRANSFER_CHUNK_BYTES):
                        written += len(chunk)
                        if written > max_bytes:
                            raise DownloadTooLarge(limit=max_bytes)
                        await asyncio.to_thread(handle.write, chunk)
                finally:
                    _close(handle)
        except httpx.TransportError as exc:
            _remove(dest)
            raise TransientError(detail=self._transport_detail(label, exc)) from exc
        except BaseException:
            _remove(dest)
            raise
        return written

    # ----- the one request loop ---------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        target: str,
        *,
        parse: Callable[[httpx.Response], T],
        json_body: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        submit: bool = False,
        request_scoped: bool = False,
        answers: frozenset[int] = frozenset(),
        api: bool = True,
    ) -> T:
        """Sends one call with the retry rules. ``target`` is a path under the base (``api``) or an
        absolute storage URL (``api=False``, sent by the client without the key). Non-2xx answers in
        ``answers`` go to ``parse`` instead of raising."""
        client = self._api if api else self._plain
        url = self._url(target) if api else target
        label = f"{method} {target if api else _safe_url(target)}"
        attempts = max(1, self._retry.attempts)
        for attempt in range(1, attempts + 1):
            try:
                try:
                    response = await client.request(
                        method, url, json=json_body, content=content, headers=headers
                    )
                except httpx.TransportError as exc:
                    raise self._transport_failure(label, exc, submit=submit) from exc
                if api:
                    self._note_rate_limit(response.headers)
                if 200 <= response.status_code < 300 or response.status_code in answers:
                    return _parse_answer(parse, response, label)
                raise self._error_from(response, label, request_scoped=request_scoped, api=api)
            except _RETRIED as error:
                if submit and not _certainly_no_job(error):
                    raise _uncertain(label, error) from error
                if attempt == attempts or (error.retry_after or 0.0) > self._retry.max_wait:
                    raise
                await self._pause_before_retry(label, error, attempt, attempts)
        raise AssertionError("unreachable")

    async def _pause_before_retry(self, label: str, error: SunraError, attempt: int, attempts: int) -> None:
        delay = max(self._retry.backoff(attempt), error.retry_after or 0.0)
        log.warning(
            "sunra %s failed (%s); retry %d of %d in %.1f s", label, error, attempt, attempts - 1, delay
        )
        await self._sleep(delay)

    def _transport_failure(self, label: str, exc: httpx.TransportError, *, submit: bool) -> SunraError:
        detail = self._transport_detail(label, exc)
        if submit and not isinstance(exc, _NOT_SENT):
            # The request may have reached the API and created a job: never send it again.
            return SubmissionUncertain(detail=f"{detail}; the job may exist, so it is not sent again")
        if isinstance(exc, _TRANSIENT_TRANSPORT):
            return TransientError(detail=detail)
        return SunraError(detail=detail, retryable=False)

    def _transport_detail(self, label: str, exc: httpx.TransportError) -> str:
        # Only the exception's type and text: its request object carries the headers.
        text = self._scrub(str(exc))
        return f"{label} failed: {type(exc).__name__}" + (f": {text}" if text else "")

    def _error_from(
        self, response: httpx.Response, label: str, *, request_scoped: bool = False, api: bool = True
    ) -> SunraError:
        """Maps a non-2xx answer to its error (and blocks submissions on 401/402/403 from the API)."""
        status = response.status_code
        code, message, details = _error_fields(response)
        message = self._scrub(_clean_text(message)) if message else None
        detail = (
            f"{label} answered {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        )
        hint = _retry_hint(response.headers)
        if code == PREDICTION_FAILED_CODE:
            return prediction_failure({"code": code, "message": message, "details": details}, status=status)
        retryable_status = status in RETRYABLE_STATUS_CODES or status >= SERVER_ERROR_MIN
        if not api:
            if retryable_status:
                return TransientError(status=status, code=code, detail=detail, retry_after=hint)
            return SunraError(status=status, code=code, detail=detail, retryable=False)
        error = _api_error(status, code, message, detail, hint, request_scoped=request_scoped)
        if isinstance(error, AuthError | InsufficientFunds):
            self._trip_block(error)
        return error

    def _note_rate_limit(self, headers: httpx.Headers) -> None:
        remaining = _int_header(headers, "x-ratelimit-remaining")
        if remaining is None:
            return
        reset = _reset_seconds(headers)
        self._rate_limit = RateLimit(
            limit=_int_header(headers, "x-ratelimit-limit"),
            remaining=remaining,
            reset_at=None if reset is None else self._clock() + reset,
        )

    def _scrub(self, text: str) -> str:
        secret = self._key.get_secret_value()
        return text.replace(secret, REDACTED) if secret else text

    def _url(self, path: str) -> str:
        return self._base_text + path


# -------------------------------------------------------------------------------------------------- helpers


class _Updates:
    """Calls ``on_update`` only when something a member would see changed."""

    def __init__(self, callback: UpdateCallback | None) -> None:
        self._callback = callback
        self._last: tuple[str, int | None, int] | None = None

    async def see(self, status: QueueStatus) -> None:
        key = (status.status, status.queue_position, len(status.logs))
        if key == self._last:
            return
        self._last = key
        if self._callback is None:
            return
        try:
            await self._callback(status)
        except Exception:
            # A failed progress edit on Discord must not end the wait for the video.
            log.warning("on_update callback failed; still waiting", exc_info=True)


def _api_error(
    status: int,
    code: str | None,
    message: str | None,
    detail: str,
    hint: float | None,
    *,
    request_scoped: bool,
) -> SunraError:
    if status in (401, 403):
        return AuthError(status=status, code=code, detail=detail)
    if status == 402:
        return InsufficientFunds(status=status, code=code, detail=detail)
    if status == 404 and request_scoped:
        return RequestNotFound(status=status, code=code, detail=detail)
    if status == 429:
        return RateLimited(status=status, code=code, detail=detail, retry_after=hint)
    if status in RETRYABLE_STATUS_CODES or status >= SERVER_ERROR_MIN:
        return TransientError(status=status, code=code, detail=detail, retry_after=hint)
    if status in (404, 405):
        # A wrong base URL or endpoint: the bot's configuration, not the member's input.
        return SunraError(SERVICE_DOWN_MESSAGE, status=status, code=code, detail=detail, retryable=False)
    if 400 <= status < SERVER_ERROR_MIN:
        said = f"Kling refused this request: {message.rstrip('. ')}." if message else None
        return InvalidInput(said, status=status, code=code, detail=detail)
    return MalformedResponse(status=status, code=code, detail=detail)


def _certainly_no_job(error: SunraError) -> bool:
    """True when a failed submit cannot have created a job: a 429, or a connection that never carried
    the request (the TransientError was raised from ConnectError/ConnectTimeout/PoolTimeout)."""
    return isinstance(error, RateLimited) or isinstance(error.__cause__, _NOT_SENT)


def _uncertain(label: str, error: SunraError) -> SubmissionUncertain:
    if isinstance(error, SubmissionUncertain):
        return error
    return SubmissionUncertain(
        status=error.status,
        code=error.code,
        detail=f"{label}: {error}; the job may exist, so it is not sent again",
    )


def _parse_answer(parse: Callable[[httpx.Response], T], response: httpx.Response, label: str) -> T:
    try:
        return parse(response)
    except MalformedResponse as error:
        error.detail = f"{label}: {error.detail}"
        error.args = (error.detail,)
        raise


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise MalformedResponse(status=response.status_code, detail="the answer is not JSON") from None


def _model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_input=False)[:3]
        )
        raise MalformedResponse(detail=f"unexpected {model.__name__} ({problems})") from None


def _submission_from(response: httpx.Response) -> Submission:
    return _model(Submission, _json(response))


def _status_from(response: httpx.Response) -> QueueStatus:
    return _model(QueueStatus, _json(response))


def _status_from_text(text: str, label: str) -> QueueStatus:
    try:
        return QueueStatus.model_validate_json(text)
    except ValidationError:
        raise MalformedResponse(detail=f"{label}: unreadable event {_clean_text(text)[:80]!r}") from None


def _ticket_from(response: httpx.Response) -> UploadTicket:
    return _model(UploadTicket, _json(response))


def _ignore_body(response: httpx.Response) -> None:
    return None


def _unwrap(body: Any) -> Any:
    """Accepts ``{"video": ...}`` also when wrapped as ``{"data": ...}`` or ``{"output": ...}``."""
    for wrapper in ("data", "output"):
        if isinstance(body, dict) and "video" not in body and isinstance(body.get(wrapper), dict):
            body = body[wrapper]
    return body


def _result_from(response: httpx.Response) -> KlingResult:
    body = _unwrap(_json(response))
    if isinstance(body, dict) and body.get("video") is None:
        if body.get("error"):
            raise prediction_failure(body["error"], status=response.status_code)
        if isinstance(body.get("status"), str):
            status = _model(QueueStatus, body)
            failure = status.failure
            if failure is not None:
                raise failure
            raise MalformedResponse(detail=f"no video yet (status {status.status})")
    return _model(KlingResult, body)


def _cancel_accepted(response: httpx.Response) -> bool:
    if not 200 <= response.status_code < 300:
        return False  # 400/409: the job already ended
    try:
        body = response.json()
    except ValueError:
        return True  # an empty or plain-text 2xx still means "accepted"
    return not (isinstance(body, dict) and body.get("success") is False)


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, Any]:
    """(code, message, details) from ``{"error": {...}}`` or the usual variants; never raises."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip() if response.content else ""
        return None, text or None, None
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, str):
        return None, error, None
    if not isinstance(error, dict):
        return None, None, None
    code = error.get("code")
    message = error.get("message") or error.get("detail")
    return (str(code) if code else None), (str(message) if message else None), error.get("details")


def _retry_hint(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait: Retry-After first, then x-ratelimit-reset."""
    retry_after = headers.get("retry-after")
    if retry_after:
        seconds = _seconds_or_date(retry_after)
        if seconds is not None:
            return seconds
    return _reset_seconds(headers)


def _seconds_or_date(value: str) -> float | None:
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _reset_seconds(headers: httpx.Headers) -> float | None:
    raw = headers.get("x-ratelimit-reset")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    if value >= EPOCH_MILLISECONDS_THRESHOLD:
        value /= 1000
    if value >= EPOCH_SECONDS_THRESHOLD:
        value -= time.time()  # an absolute Unix time, not a duration
    return max(0.0, value)


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (comments and other fields are skipped)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a keep-alive comment
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _request_path(request_id: str, suffix: str = "") -> str:
    if not request_id:
        raise ValueError("empty request id")
    # Quoted as one path segment: an id from a database or an answer can never change the route.
    return f"/queue/requests/{quote(request_id, safe='')}{suffix}"


def _is_under(url: httpx.URL, base: httpx.URL) -> bool:
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        return False
    root = base.path.rstrip("/")
    return url.path == root or url.path.startswith(root + "/")


def _safe_url(url: str) -> str:
    """A URL fit for logs: signed storage URLs carry their signature in the query, so it is dropped."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    return str(parsed.copy_with(query=None, fragment=None))


def _close(handle: IO[bytes]) -> None:
    # Synchronous on purpose: it must also run while the task is being cancelled.
    handle.close()


def _remove(path: Path) -> None:
    # Synchronous on purpose: a partial file must go even while the task is being cancelled.
    path.unlink(missing_ok=True)
