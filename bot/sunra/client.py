"""The :class:`SunraClient`: one ``httpx`` client per process, its retry loop and the job's calls."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr

from bot.errors import BotError
from bot.netguard import UrlPolicy, guarded_stream
from bot.sunra.errors import (
    PREDICTION_FAILED_CODE,
    AuthError,
    DownloadTooLarge,
    InsufficientFunds,
    MalformedResponse,
    NoVideo,
    RateLimited,
    StreamUnavailable,
    SubmissionUncertain,
    SunraError,
    TransientError,
    prediction_failure,
)
from bot.sunra.models import (
    KLING_ENDPOINT,
    KNOWN_STATUSES,
    KlingInput,
    KlingResult,
    QueueStatus,
    RateLimit,
    Submission,
    cancel_accepted,
    ending_from_result,
    ignore_body,
    result_from,
    status_event,
    status_from,
    submission_from,
    ticket_from,
)
from bot.sunra.policies import PollPolicy, RetryPolicy, Timeouts
from bot.sunra.reasons import clean_text
from bot.sunra.transport import (
    NOT_SENT,
    REDACTED,
    RETRYABLE_STATUS_CODES,
    SERVER_ERROR_MIN,
    TRANSIENT_TRANSPORT,
    ApiCall,
    KeyAuth,
    api_error,
    bounded_lines,
    endpoint_name,
    error_fields,
    failure_reason,
    int_header,
    request_path,
    reset_seconds,
    retry_hint,
    safe_url,
    sse_data,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

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

# The largest answer read (decoded) from the API or a storage URL: sunra's answers are a few KB, and a
# status carrying a 1 MB log message is 2 MB. httpx's timeouts are per read, so without this bound a
# server that keeps sending (or a 50 MB body) would be held whole in memory; past it the answer is
# MalformedResponse, retried like any unreadable answer.
MAX_ANSWER_BYTES = 8 * 2**20

# Unknown status words remembered (each is warned about once); an answer cannot grow the set forever.
MAX_UNKNOWN_STATUSES = 50

UpdateCallback = Callable[[QueueStatus], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]

# Failures a read retries before giving up.
_RETRIED = (TransientError, RateLimited, MalformedResponse)


@dataclass(frozen=True, slots=True)
class _Block:
    error: SunraError
    until: float


# --------------------------------------------------------------------------------------------------- client


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
        file_hosts: UrlPolicy | None = None,
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
        # Storage URLs come from answers: each is checked (and each redirect) before it is used.
        self._files = file_hosts or UrlPolicy()
        self._block: _Block | None = None
        self._unknown_statuses: set[str] = set()
        self._rate_limit: RateLimit | None = None
        keepalive = min(KEEPALIVE_CONNECTIONS, max_connections)
        self._api = httpx.AsyncClient(
            auth=KeyAuth(self._key, self._base),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive),
            timeout=timeouts.api(),
            follow_redirects=False,  # a redirect is not part of the protocol; never follow it with the key
            headers={"Accept": "application/json", "User-Agent": "kling-discord-bot"},
        )
        # Storage and CDN hosts get a client that has no key at all, so none can leak to them. It follows
        # no redirect itself: netguard.guarded_stream checks each hop first.
        self._plain = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive),
            timeout=timeouts.transfer(),
            follow_redirects=False,
            headers={"User-Agent": "kling-discord-bot"},
        )
        reserved = min(RESERVED_CONNECTIONS, max_connections // 4)
        # Told about every HTTP exchange with the API (metrics); each must return at once, never raise.
        self.observers: list[Callable[[ApiCall], None]] = []
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

    @property
    def file_hosts(self) -> UrlPolicy:
        """The file host policy every storage URL from an answer passes (bot/netguard.py)."""
        return self._files

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
            "POST", path, parse=submission_from, json_body=data.payload(), submit=True
        )
        log.info("sunra accepted job %s", submission.request_id)
        return submission

    # ----- status -----------------------------------------------------------------------------------------

    async def status(self, request_id: str) -> QueueStatus:
        """One status answer, retried on transient failures."""
        status = await self._call(
            "GET", request_path(request_id, "/status"), parse=status_from, request_scoped=True
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
        path = request_path(request_id, "/status/stream")
        label = f"GET {path}"
        async with self._stream_slots:
            started = time.perf_counter()
            try:
                async with self._api.stream(
                    "GET",
                    self._url(path),
                    timeout=self._timeouts.stream(),
                    headers={"Accept": "text/event-stream"},
                ) as response:
                    code = response.status_code
                    self._observe("status_stream", started, code, ok=code == 200)
                    await self._check_stream_open(response, label)
                    lines = bounded_lines(response.aiter_text(), MAX_ANSWER_BYTES, label)
                    async for data in sse_data(lines, limit=MAX_ANSWER_BYTES, label=label):
                        status = status_event(data, label)
                        if status is None:
                            continue
                        self._note_status(status)
                        yield status
                        if status.is_terminal:
                            return
            except httpx.TransportError as exc:
                self._observe("status_stream", started, None, error=failure_reason(exc))
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
        unknown = self._unknown_endings(request_id, poll)
        return await self._poll_until_terminal(request_id, _Updates(on_update), poll, unknown)

    async def wait(
        self, request_id: str, *, on_update: UpdateCallback | None = None, poll: PollPolicy = PollPolicy()
    ) -> QueueStatus:
        """Waits for the job to end and returns its terminal status.

        Follows the status stream while it works, otherwise polls (see PollPolicy). ``on_update`` runs
        when the status, queue position or number of log lines changes; its failures are logged, not
        raised. Raises RequestNotFound (unknown id) and AuthError; transient trouble only slows it down.
        """
        updates = _Updates(on_update)
        unknown = self._unknown_endings(request_id, poll)
        if poll.stream:
            final = await self._follow_stream(request_id, updates, poll, unknown)
            if final is not None:
                return final
        return await self._poll_until_terminal(request_id, updates, poll, unknown)

    async def _follow_stream(
        self, request_id: str, updates: _Updates, poll: PollPolicy, unknown: _UnknownEndings
    ) -> QueueStatus | None:
        """The terminal status from the stream, or None when the stream does not work for this job."""
        failures = 0
        pauses = poll.intervals()
        while failures < MAX_STREAM_FAILURES:
            started = self._clock()
            events = 0
            try:
                async with (
                    contextlib.aclosing(self.stream_status(request_id)) as stream,
                    contextlib.aclosing(_with_silences(stream, poll.quiet_seconds)) as heard,
                ):
                    async for status in heard:
                        if status is None:
                            # A stream can stay open on keep-alives after its job ended: ask once.
                            status = await self._cross_check(request_id)
                            if status is None:
                                continue
                        events += 1
                        await updates.see(status)
                        if status.is_terminal:
                            return status
                        if (ending := await unknown.check(status)) is not None:
                            return ending
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

    async def _cross_check(self, request_id: str) -> QueueStatus | None:
        """One status request for a job whose stream went quiet: the status if it ended, else None."""
        try:
            status = await self.status(request_id)
        except _RETRIED as error:
            log.info("sunra status check for %s failed (%s); still following the stream", request_id, error)
            return None
        if status.is_terminal:
            log.info("sunra status stream for %s went quiet after the job ended; status says so", request_id)
            return status
        return None

    async def _poll_until_terminal(
        self, request_id: str, updates: _Updates, poll: PollPolicy, unknown: _UnknownEndings
    ) -> QueueStatus:
        for pause in poll.intervals():
            try:
                status = await self.status(request_id)
            except _RETRIED as error:
                log.warning("sunra status for %s failed (%s); still waiting", request_id, error)
            else:
                await updates.see(status)
                if status.is_terminal:
                    return status
                if (ending := await unknown.check(status)) is not None:
                    return ending
            await self._sleep(pause)
        raise AssertionError("PollPolicy.intervals() is endless")

    def _note_status(self, status: QueueStatus) -> None:
        upper = status.status.upper()
        if upper not in KNOWN_STATUSES and upper not in self._unknown_statuses:
            if len(self._unknown_statuses) < MAX_UNKNOWN_STATUSES:
                self._unknown_statuses.add(clean_text(upper))
            log.warning(
                "sunra sent an unknown status %r; treating it as still running", clean_text(status.status)
            )

    def _unknown_endings(self, request_id: str, poll: PollPolicy) -> _UnknownEndings:
        return _UnknownEndings(lambda: self._ending_of(request_id), self._clock, poll.quiet_seconds)

    async def _ending_of(self, request_id: str) -> QueueStatus | None:
        """Asks the result endpoint whether a job has ended (see :func:`ending_from_result`)."""
        try:
            return await self._call(
                "GET",
                request_path(request_id),
                parse=ending_from_result,
                request_scoped=True,
                answers=frozenset({400, 409}),
            )
        except SunraError as error:
            log.info("sunra result check for %s failed (%s); still waiting", request_id, error)
            return None

    # ----- result, cancel ---------------------------------------------------------------------------------

    async def result(self, request_id: str) -> KlingResult:
        """The finished job's video. Raises PredictionFailed when the job failed, and NoVideo when the
        API, asked again for a short while (RetryPolicy.attempts), still has no usable video for it."""
        return await self._call(
            "GET", request_path(request_id), parse=result_from, request_scoped=True, also_retried=(NoVideo,)
        )

    async def cancel(self, request_id: str) -> bool:
        """Asks the API to stop a job: True if accepted, False if it had already ended (400/409)."""
        return await self._call(
            "PUT",
            request_path(request_id, "/cancel"),
            parse=cancel_accepted,
            request_scoped=True,
            answers=frozenset({400, 409}),
        )

    # ----- files ------------------------------------------------------------------------------------------

    async def upload(self, data: bytes, *, content_type: str, file_name: str) -> str:
        """Uploads a file to sunra storage and returns its public URL (for ``start_image_url``)."""
        ticket = await self._call(
            "POST",
            "/storage/upload/initiate",
            parse=ticket_from,
            json_body={"content_type": content_type, "file_name": file_name},
        )
        await self._call(
            "PUT",
            ticket.upload_url,
            parse=ignore_body,
            content=data,
            headers={"Content-Type": content_type},
            api=False,
        )
        log.debug("uploaded %d bytes as %s", len(data), safe_url(ticket.file_url))
        return ticket.file_url

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> int:
        """Streams ``url`` (without the key) into ``dest``; returns the bytes written.

        Raises DownloadTooLarge (and leaves no file) when the body exceeds ``max_bytes``, UnsafeUrl when
        the URL or a redirect is one the file host policy refuses (see bot/netguard.py).
        """
        label = f"GET {safe_url(url)}"
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
            async with guarded_stream(self._plain, self._files, "GET", url) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._error_from(response, label, api=False)
                declared = int_header(response.headers, "content-length")
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
        also_retried: tuple[type[SunraError], ...] = (),
    ) -> T:
        """Sends one call with the retry rules. ``target`` is a path under the base (``api``) or an
        absolute storage URL (``api=False``, sent by the client without the key). Non-2xx answers in
        ``answers`` go to ``parse`` instead of raising."""
        client = self._api if api else self._plain
        url = self._url(target) if api else target
        label = f"{method} {target if api else safe_url(target)}"
        endpoint = endpoint_name(target, api=api)
        attempts = max(1, self._retry.attempts)
        attempt = 0  # failed tries that were not rate limits
        limited = 0  # rate-limit answers
        waited = 0.0  # seconds spent waiting out rate limits
        while True:
            try:
                started = time.perf_counter()
                try:
                    if api:
                        request = client.build_request(
                            method, url, json=json_body, content=content, headers=headers
                        )
                        response = await _read_bounded(await client.send(request, stream=True), label)
                    else:
                        response = await self._send_checked(method, url, content=content, headers=headers)
                except httpx.TransportError as exc:
                    self._observe(endpoint, started, None, error=failure_reason(exc))
                    raise self._transport_failure(label, exc, submit=submit) from exc
                if api:
                    self._note_rate_limit(response.headers)
                answered = 200 <= response.status_code < 300 or response.status_code in answers
                self._observe(endpoint, started, response.status_code, ok=answered)
                if answered:
                    return _parse_answer(parse, response, label)
                raise self._error_from(response, label, request_scoped=request_scoped, api=api)
            except SunraError as error:
                if not isinstance(error, _RETRIED + also_retried):
                    raise
                if submit and not _certainly_no_job(error):
                    raise _uncertain(label, error) from error
                too_long = (error.retry_after or 0.0) > self._retry.max_wait
                if isinstance(error, RateLimited) and not error.maybe_key:
                    # Not a failure: the API created nothing and asks us to come back later.
                    limited += 1
                    delay = max(self._retry.backoff(limited), error.retry_after or 0.0)
                    if too_long or waited + delay > self._retry.rate_limit_wait:
                        raise
                    waited += delay
                    log.info("sunra %s is rate limited (%s); sending it again in %.1f s", label, error, delay)
                    await self._sleep(delay)
                    continue
                attempt += 1
                if attempt >= attempts or too_long:
                    if isinstance(error, RateLimited) and error.maybe_key:
                        raise self._key_rejected(error) from error
                    raise
                await self._pause_before_retry(label, error, attempt, attempts)

    async def _send_checked(
        self, method: str, url: str, *, content: bytes | None, headers: dict[str, str] | None
    ) -> httpx.Response:
        """One call to a storage URL from an answer, each hop checked by the file host policy."""
        async with guarded_stream(
            self._plain, self._files, method, url, content=content, headers=headers
        ) as r:
            return await _read_bounded(r, f"{method} {safe_url(url)}")

    async def _pause_before_retry(self, label: str, error: SunraError, attempt: int, attempts: int) -> None:
        delay = max(self._retry.backoff(attempt), error.retry_after or 0.0)
        log.warning(
            "sunra %s failed (%s); retry %d of %d in %.1f s", label, error, attempt, attempts - 1, delay
        )
        await self._sleep(delay)

    def _observe(
        self, endpoint: str, started: float, status: int | None, *, ok: bool = False, error: str | None = None
    ) -> None:
        if not self.observers:
            return
        if error is None and not ok:
            error = str(status)
        call = ApiCall(endpoint, time.perf_counter() - started, status, error)
        for observer in self.observers:
            try:
                observer(call)
            except Exception:
                log.exception("a sunra call observer failed")

    def _transport_failure(self, label: str, exc: httpx.TransportError, *, submit: bool) -> SunraError:
        detail = self._transport_detail(label, exc)
        if submit and not isinstance(exc, NOT_SENT):
            # The request may have reached the API and created a job: never send it again.
            return SubmissionUncertain(detail=f"{detail}; the job may exist, so it is not sent again")
        if isinstance(exc, TRANSIENT_TRANSPORT):
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
        code, message, details = error_fields(response)
        code = self._scrub(clean_text(code)) if code else None
        message = self._scrub(clean_text(message)) if message else None
        detail = (
            f"{label} answered {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        )
        hint = retry_hint(response.headers)
        if code == PREDICTION_FAILED_CODE:
            return prediction_failure({"code": code, "message": message, "details": details}, status=status)
        retryable_status = status in RETRYABLE_STATUS_CODES or status >= SERVER_ERROR_MIN
        if not api:
            if retryable_status:
                return TransientError(status=status, code=code, detail=detail, retry_after=hint)
            return SunraError(status=status, code=code, detail=detail, retryable=False)
        error = api_error(
            status, code, message, detail, hint, request_scoped=request_scoped, headers=response.headers
        )
        if isinstance(error, AuthError | InsufficientFunds):
            self._trip_block(error)
        return error

    def _key_rejected(self, error: RateLimited) -> AuthError:
        """A bare 403 that every retry met again: no rate limit lasts that long, so the key is refused."""
        rejected = AuthError(status=error.status, code=error.code, detail=f"{error.detail} (every retry)")
        self._trip_block(rejected)
        return rejected

    def _note_rate_limit(self, headers: httpx.Headers) -> None:
        remaining = int_header(headers, "x-ratelimit-remaining")
        if remaining is None:
            return
        reset = reset_seconds(headers)
        self._rate_limit = RateLimit(
            limit=int_header(headers, "x-ratelimit-limit"),
            remaining=remaining,
            reset_at=None if reset is None else self._clock() + reset,
        )

    def _scrub(self, text: str) -> str:
        secret = self._key.get_secret_value()
        return text.replace(secret, REDACTED) if secret else text

    def _url(self, path: str) -> str:
        return self._base_text + path


# -------------------------------------------------------------------------------------------------- helpers


class _UnknownEndings:
    """A status word the client does not know counts as still running, but it may be an ending it was
    never told about: while one lasts, the result endpoint is asked (at most once per ``every``
    seconds) and decides, so such a job ends within a poll interval instead of at its lifetime."""

    def __init__(
        self, ask: Callable[[], Awaitable[QueueStatus | None]], clock: Callable[[], float], every: float
    ) -> None:
        self._ask = ask
        self._clock = clock
        self._every = every
        self._asked_at: float | None = None

    async def check(self, status: QueueStatus) -> QueueStatus | None:
        if status.status.upper() in KNOWN_STATUSES:
            return None
        now = self._clock()
        if self._asked_at is not None and now - self._asked_at < self._every:
            return None
        self._asked_at = now
        ending = await self._ask()
        if ending is not None:
            log.warning(
                "sunra status %r: the job's result says it ended (success %s)", status.status, ending.success
            )
        return ending


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


async def _with_silences(
    stream: AsyncIterator[QueueStatus], quiet: float
) -> AsyncGenerator[QueueStatus | None, None]:
    """The stream's statuses, and None each time ``quiet`` seconds pass without one. The stream is
    read in its own task, so a silence never interrupts (or loses) an event being received."""

    async def next_status() -> QueueStatus | None:
        try:
            return await anext(stream)
        except StopAsyncIteration:
            return None  # the stream ended

    pending: asyncio.Task[QueueStatus | None] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.create_task(next_status())
            done, _ = await asyncio.wait({pending}, timeout=quiet)
            if not done:
                yield None
                continue
            finished, pending = pending, None
            status = finished.result()
            if status is None:
                return
            yield status
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.wait({pending})


def _certainly_no_job(error: SunraError) -> bool:
    """True when a failed submit cannot have created a job: a 429, or a connection that never carried
    the request (the TransientError was raised from ConnectError/ConnectTimeout/PoolTimeout)."""
    return isinstance(error, RateLimited) or isinstance(error.__cause__, NOT_SENT)


def _uncertain(label: str, error: SunraError) -> SubmissionUncertain:
    if isinstance(error, SubmissionUncertain):
        return error
    return SubmissionUncertain(
        status=error.status,
        code=error.code,
        detail=f"{label}: {error}; the job may exist, so it is not sent again",
    )


async def _read_bounded(response: httpx.Response, label: str) -> httpx.Response:
    """The streamed `response`, read (decoded) and closed, as a response holding its body. Raises
    MalformedResponse once the body passes MAX_ANSWER_BYTES, having read no more than that."""
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise MalformedResponse(
                    status=response.status_code,
                    detail=f"{label} answered more than {MAX_ANSWER_BYTES} bytes; not read further",
                )
    finally:
        await response.aclose()
    # Decoded already: the copy must not be decoded again, nor claim the original's length.
    headers = [
        (k, v) for k, v in response.headers.multi_items() if k not in ("content-encoding", "content-length")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=bytes(body), request=response.request
    )


def _parse_answer(parse: Callable[[httpx.Response], T], response: httpx.Response, label: str) -> T:
    try:
        return parse(response)
    except MalformedResponse as error:
        error.detail = f"{label}: {error.detail}"
        error.args = (error.detail,)
        raise


def _close(handle: IO[bytes]) -> None:
    # Synchronous on purpose: it must also run while the task is being cancelled.
    handle.close()


def _remove(path: Path) -> None:
    # Synchronous on purpose: a partial file must go even while the task is being cancelled.
    path.unlink(missing_ok=True)
