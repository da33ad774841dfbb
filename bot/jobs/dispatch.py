"""The bot's own fair queue: which waiting job goes to the API next, and at what pace."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable, Iterable

from bot.fleet import pacing_delay
from bot.jobs.base import log
from bot.jobs.model import IN_FLIGHT, Phase, Progress, State, lifetime_outcome
from bot.jobs.waiting import Waiting
from bot.store.jobs import JobRow

# The API takes about 10 submissions a second and 100 a minute.
SUBMIT_LIMITS = ((10, 1.0), (100, 60.0))
# Fairness weighs the jobs a member had submitted in the last day.
USAGE_WINDOW_SECONDS = 86_400.0
# The pace is kept with windows this much longer than sunra's: a request leaves a little after its claim
# (the event loop is busy, the process restarts), and sunra counts arrivals.
PACE_MARGINS = (0.1, 2.0)
PACED_LIMITS = tuple(
    (count, window + margin) for (count, window), margin in zip(SUBMIT_LIMITS, PACE_MARGINS, strict=True)
)
# Dispatcher wake-up when nothing happens, to notice expired deadlines of queued jobs.
DISPATCH_IDLE_SECONDS = 30.0
# The same in a fleet (SHARD_COUNT set) while the wakes from other processes cannot be heard (their
# listening connection is down, bot/store/wakes.py): caps freed by another process's jobs are seen this
# soon. While it is up, a job ending in another process wakes the dispatcher at once.
FLEET_POLL_SECONDS = 2.0
# Waiting jobs whose lifetime ended, ended per pass at most (the next pass takes the rest at once).
EXPIRED_PER_PASS = 100
# Places shown on every pass (the front of the queue, where they change), and every
# PLACES_REFRESH_SECONDS further back.
PLACES_SHOWN = 25
PLACES_FAR = 500
PLACES_REFRESH_SECONDS = 60.0


class SubmitPacer:
    """Keeps one process's calls under the API's per-second and per-minute limits without a busy loop.
    (Submissions are paced fleet-wide in the database instead: `JobStore.claim_next`.)"""

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
        return pacing_delay(self._sent, self._limits, now)


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
    """The dispatcher: one pass takes the next job the fleet's caps and pace allow (one transaction, see
    `JobStore.claim_next`), ends waiting jobs whose lifetime is over and shows the front of the queue its
    places. A pass reads the heads of the queue only, never the whole of it."""

    @functools.cached_property
    def _places_refreshed_at(self) -> list[float]:
        return [0.0]

    @property
    def _idle_seconds(self) -> float:
        # Another process's job ending frees a cap for this one's: its wake says so, else look soon.
        if self.store.shards.sharded and not self._wakes.connected:
            return FLEET_POLL_SECONDS
        return DISPATCH_IDLE_SECONDS

    async def place_in_line(self, job: JobRow) -> int:
        """The job's place in the fair queue (1 when it is no longer waiting)."""
        place = await self.store.place_in_queue(job.id, State.QUEUED, self._clock() - USAGE_WINDOW_SECONDS)
        return place or 1

    async def _dispatch_forever(self) -> None:
        while not self._closing:
            self._wake.clear()
            pause = self._idle_seconds
            try:
                pause = await self._dispatch_once()
            except Exception:
                log.exception("dispatcher pass failed; retrying shortly")
            if 0 < pause < self._idle_seconds:
                # The API's pace: nothing can be submitted before then, whatever wakes the dispatcher
                # (a crowd's every accepted command would otherwise cost a pass).
                await asyncio.sleep(pause)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _dispatch_once(self) -> float:
        """One pass; returns the seconds until the next one (unless woken earlier). One submission per
        pass: the next pass orders the queue afresh, so a member who arrived while this one waited for
        its turn is still placed fairly. The pace is kept before the job is marked submitting, so
        "submitting" always means the request is about to leave or has left: a restart then treats it
        as uncertain."""
        now = self._clock()
        for job in await self.store.expired_in_queue(State.QUEUED, now, EXPIRED_PER_PASS):
            if job.id not in self._tasks:
                # In its own task: its message may wait on a busy channel, and nothing else should.
                self._spawn(job.id, self._end(job, lifetime_outcome(self.settings), from_states=State.QUEUED))
        caps = self.quota.settings
        longest = max(window for _, window in PACED_LIMITS)
        # A stop waits for a claim under way (JobRunner.stop): cut off after its commit, the job would be
        # `submitting` with nothing sent and end "uncertain" at the next start.
        self._claiming = True
        try:
            chosen, wait = await self.store.claim_next(
                from_state=State.QUEUED,
                to_state=State.SUBMITTING,
                busy_states=IN_FLIGHT,
                usage_since=now - USAGE_WINDOW_SECONDS,
                max_busy=caps.max_jobs_in_flight,
                max_busy_per_member=caps.max_concurrent_jobs,
                pace=lambda sent: pacing_delay(sent, PACED_LIMITS, self._clock()),
                pace_window=longest,
                pace_count=max(count for count, _ in SUBMIT_LIMITS),
            )
            if chosen is not None and self._closing:
                # Claimed as the stop began: nothing is sent, the job waits in the queue again and the
                # next start submits it.
                await self.store.transition(chosen.id, State.SUBMITTING, State.QUEUED)
                return 0.0
        finally:
            self._claiming = False
        if chosen is not None:
            self._spawn(chosen.id, self._submit_and_follow(chosen))
            return 0.0  # the next pass follows at once, and shows the places once nothing moves
        await self._refresh_places(now)
        return wait if wait > 0 else self._idle_seconds

    async def _refresh_places(self, now: float) -> None:
        """Shows the front of the queue its places; further back, places are shown at most every
        PLACES_REFRESH_SECONDS (and where they only shrink, a stale one errs on the safe side)."""
        limit = PLACES_SHOWN
        if now - self._places_refreshed_at[0] >= PLACES_REFRESH_SECONDS:
            self._places_refreshed_at[0] = now
            limit = PLACES_FAR
        front = await self.store.queue_front(State.QUEUED, now - USAGE_WINDOW_SECONDS, limit)
        for place, job in enumerate(front, start=1):
            await self._report.show_progress(job, Progress(Phase.WAITING, position=place))
