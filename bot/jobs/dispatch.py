"""The bot's own fair queue: which waiting job goes to the API next, and at what pace."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable, Iterable

from bot.jobs.base import log
from bot.jobs.model import IN_FLIGHT, Phase, Progress, State, lifetime_outcome
from bot.jobs.waiting import Waiting
from bot.store.jobs import JobRow

# The API takes about 10 submissions a second and 100 a minute.
SUBMIT_LIMITS = ((10, 1.0), (100, 60.0))
# Fairness weighs the jobs a member had submitted in the last day.
USAGE_WINDOW_SECONDS = 86_400.0
# Dispatcher wake-up when nothing happens, to notice expired deadlines of queued jobs.
DISPATCH_IDLE_SECONDS = 30.0


class SubmitPacer:
    """Keeps submissions under the API's per-second and per-minute limits without a busy loop."""

    def __init__(
        self, limits: Iterable[tuple[int, float]] = SUBMIT_LIMITS, clock: Callable[[], float] = time.monotonic
    ):
        self._limits = tuple(limits)
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def wait_turn(self) -> None:
        async with self._lock:
            # Sleeps exactly until the oldest send leaves its window: a bounded wait, not a poll.
            while (delay := self._delay()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(delay)
            self._sent.append(self._clock())

    def _delay(self) -> float:
        now = self._clock()
        longest = max(window for _, window in self._limits)
        while self._sent and now - self._sent[0] > longest:
            self._sent.popleft()
        delay = 0.0
        for count, window in self._limits:
            recent = [t for t in self._sent if now - t < window]
            if len(recent) >= count:
                delay = max(delay, window - (now - recent[-count]))
        return delay


def fair_order(queued: list[JobRow], usage: dict[int, int]) -> list[JobRow]:
    """Round robin across members, lightest recent users first: a member's k-th waiting job goes in
    round k, so one member's five jobs never block another member's first."""
    seen: dict[int, int] = {}
    keyed = []
    for job in sorted(queued, key=lambda j: j.id):
        round_number = seen.get(job.user_id, 0)
        seen[job.user_id] = round_number + 1
        keyed.append(((round_number, usage.get(job.user_id, 0), job.id), job))
    return [job for _, job in sorted(keyed, key=lambda pair: pair[0])]


class Dispatching(Waiting):
    @functools.cached_property
    def _pacer(self) -> SubmitPacer:
        return SubmitPacer()

    async def place_in_line(self, job: JobRow) -> int:
        """The job's place in the fair queue (1 when it is no longer waiting)."""
        place = await self.store.place_in_queue(job.id, State.QUEUED, self._clock() - USAGE_WINDOW_SECONDS)
        return place or 1

    async def _queue_order(self) -> list[JobRow]:
        queued = await self.store.in_states([State.QUEUED])
        usage = await self.store.started_since(self._clock() - USAGE_WINDOW_SECONDS)
        return fair_order(queued, usage)

    async def _dispatch_forever(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self._dispatch_once()
            except Exception:
                log.exception("dispatcher pass failed; retrying shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), DISPATCH_IDLE_SECONDS)

    async def _dispatch_once(self) -> None:
        """Ends expired waiting jobs, submits the next one in fair order (if caps allow) and shows
        everyone else their place. One submission per pass: the next pass orders the queue afresh, so
        a member who arrived while this one waited for its turn is still placed fairly."""
        now = self._clock()
        waiting: list[JobRow] = []
        for job in await self._queue_order():
            if now <= job.deadline:
                waiting.append(job)
            elif job.id not in self._tasks:
                # In its own task: its message may wait on a busy channel, and nothing else should.
                self._spawn(job.id, self._end(job, lifetime_outcome(self.settings), from_states=State.QUEUED))
        chosen = await self._next_to_submit(waiting)
        await self._refresh_places([job for job in waiting if job is not chosen])
        if chosen is None:
            return
        # Pacing happens before the job is marked submitting, so "submitting" always means the
        # request is about to leave or has left: a restart then treats it as uncertain.
        await self._pacer.wait_turn()
        if await self.store.transition(chosen.id, State.QUEUED, State.SUBMITTING):
            self._spawn(chosen.id, self._submit_and_follow(chosen))
        self._wake.set()

    async def _next_to_submit(self, waiting: list[JobRow]) -> JobRow | None:
        if not waiting:
            return None
        in_flight = await self.store.count_by_user(IN_FLIGHT)
        cap = self.quota.settings.max_jobs_in_flight
        if cap and sum(in_flight.values()) >= cap:
            return None
        per_member = self.quota.settings.max_concurrent_jobs
        for job in waiting:
            if job.id in self._tasks or (per_member and in_flight.get(job.user_id, 0) >= per_member):
                continue
            return job
        return None

    async def _refresh_places(self, ordered: list[JobRow]) -> None:
        for place, job in enumerate(ordered, start=1):
            await self._report.show_progress(job, Progress(Phase.WAITING, position=place))
