"""What every call of the :class:`SunraClient` shares: the two ``httpx`` clients it owns (the API's, with
the key, and the storage hosts', without), the one request loop with its retry rules, the mapping of an
answer or a transport failure to its :mod:`bot.sunra.errors` error, and the block that stops submissions
after the API refused the key or the balance. The status waiting is in waiting.py, the job's calls
(submit, result, cancel, files) in client.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from bot.errors import BotError
from bot.netguard import UrlPolicy, guarded_stream
from bot.sunra.errors import (
    PREDICTION_FAILED_CODE,
    AuthError,
    InsufficientFunds,
    MalformedResponse,
    RateLimited,
    SubmissionUncertain,
    SunraError,
    TransientError,
    prediction_failure,
)
from bot.sunra.models import RateLimit
from bot.sunra.policies import RetryPolicy, Timeouts
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
    endpoint_name,
    error_fields,
    failure_reason,
    int_header,
    reset_seconds,
    retry_hint,
    safe_url,
)

# The client's logger, whichever of its modules logs (log lines keep their logger name).
log = logging.getLogger("bot.sunra.client")

T = TypeVar("T")

KEEPALIVE_CONNECTIONS = 50
# Status streams may hold most of the pool; this many connections always stay free for submits,
# polls and results (a stream that finds no free slot falls back to polling).
RESERVED_CONNECTIONS = 20

# The largest answer read (decoded) from the API or a storage URL: sunra's answers are a few KB, and a
# status carrying a 1 MB log message is 2 MB. httpx's timeouts are per read, so without this bound a
# server that keeps sending (or a 50 MB body) would be held whole in memory; past it the answer is
# MalformedResponse, retried like any unreadable answer.
MAX_ANSWER_BYTES = 8 * 2**20

Sleep = Callable[[float], Awaitable[None]]

# Failures a read retries before giving up.
_RETRIED = (TransientError, RateLimited, MalformedResponse)


@dataclass(frozen=True, slots=True)
class _Block:
    error: SunraError
    until: float


class ClientBase:
    """The transport of :class:`SunraClient` (bot/sunra/client.py), which is one."""

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
