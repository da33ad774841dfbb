"""Retry, polling and timeout settings of :class:`bot.sunra.SunraClient` (seconds throughout)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

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
    # Rate-limit answers (429, or sunra's 403 over the limit) do not use up ``attempts``: the call waits
    # for the reset (or backs off) and is sent again, for at most this many seconds in all.
    rate_limit_wait: float = 300.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): in [ceiling/2, ceiling]."""
        ceiling = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return ceiling / 2 + rand() * ceiling / 2


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Adaptive polling: ``first`` seconds, growing by ``factor`` up to ``maximum``; ± ``jitter`` spread
    keeps jobs resumed together from polling in lockstep. ``stream=False`` skips the status stream.

    ``stream_check``: seconds the status stream may go without a status event (keep-alives do not
    count) before one status request checks whether the job ended; None means ``maximum``. A stuck
    stream then costs at most 60 / ``stream_check`` status requests a minute (2 at 30 s)."""

    first: float = 2.0
    factor: float = 1.5
    maximum: float = 20.0
    jitter: float = 0.1
    stream: bool = True
    stream_check: float | None = None

    def __post_init__(self) -> None:
        if self.first <= 0 or self.maximum <= 0 or (self.stream_check is not None and self.stream_check <= 0):
            raise ValueError("poll intervals must be positive")
        if self.factor < 1:
            raise ValueError("the poll interval must not shrink (factor >= 1)")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    @property
    def quiet_seconds(self) -> float:
        """Silence on the status stream that is cross-checked with one status request."""
        return self.stream_check if self.stream_check is not None else self.maximum

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
