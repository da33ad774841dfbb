"""Waiting for a job at the API: one status, the status stream (SSE) followed while it works, adaptive
polling otherwise, and the checks that end a wait whose status words the client does not know. Mixed
into :class:`SunraClient` (bot/sunra/client.py) as :class:`StatusWaiting`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import httpx

from bot.sunra.base import _RETRIED, MAX_ANSWER_BYTES, ClientBase
from bot.sunra.errors import (
    AuthError,
    InsufficientFunds,
    RateLimited,
    StreamUnavailable,
    SunraError,
    TransientError,
)
from bot.sunra.models import KNOWN_STATUSES, QueueStatus, ending_from_result, status_event, status_from
from bot.sunra.policies import PollPolicy
from bot.sunra.reasons import clean_text
from bot.sunra.transport import bounded_lines, failure_reason, request_path, sse_data

# The client's logger, whichever of its modules logs (log lines keep their logger name).
log = logging.getLogger("bot.sunra.client")

# Stream connections in a row that bring no event before a wait gives up on the stream and polls.
MAX_STREAM_FAILURES = 2
# A stream connection shorter than this is followed by a pause, so a server (or proxy) that closes
# streams at once cannot turn the stream into a tight loop.
MIN_STREAM_SECONDS = 5.0

# Unknown status words remembered (each is warned about once); an answer cannot grow the set forever.
MAX_UNKNOWN_STATUSES = 50

UpdateCallback = Callable[[QueueStatus], Awaitable[None]]


class StatusWaiting(ClientBase):
    """The status calls and waits of :class:`SunraClient`."""

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
