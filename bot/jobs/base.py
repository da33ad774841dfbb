"""What every part of the runner shares: its resources, its tasks and the job's progress post."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

from bot.config import JobSettings
from bot.image_checker import ImageChecker
from bot.jobs.model import Reporter
from bot.logs import bind_job
from bot.quota.spending import QuotaService
from bot.store.db import NoWakes, WakeListening
from bot.store.jobs import JobRow, JobStore
from bot.sunra import SunraClient

log = logging.getLogger("bot.jobs")


class CancelSignals:
    """Cancel presses, per job, that the job's own code looks at where stopping is safe.

    The runner never calls `task.cancel()` on a job for a press: landing between two steps (the result
    fetched but not recorded, a progress post) would leave the job half done with no task to finish it.
    """

    def __init__(self) -> None:
        self._reasons: dict[int, str] = {}
        self._events: dict[int, asyncio.Event] = {}

    def request(self, job_id: int, reason: str) -> bool:
        """False when the job was already asked to stop (the first reason stands)."""
        if job_id in self._reasons:
            return False
        self._reasons[job_id] = reason
        self._event(job_id).set()
        return True

    def reason(self, job_id: int) -> str | None:
        return self._reasons.get(job_id)

    async def wait(self, job_id: int) -> None:
        await self._event(job_id).wait()

    def forget(self, job_id: int) -> None:
        self._reasons.pop(job_id, None)
        self._events.pop(job_id, None)

    def _event(self, job_id: int) -> asyncio.Event:
        return self._events.setdefault(job_id, asyncio.Event())


class RunnerBase:
    def __init__(
        self,
        *,
        store: JobStore,
        sunra: SunraClient,
        images: ImageChecker,
        quota: QuotaService,
        settings: JobSettings,
        workdir: Path,
        clock: Callable[[], float] = time.time,
        allowed_guilds: Collection[int] = (),
    ) -> None:
        self.store = store
        self.sunra = sunra
        self.images = images
        self.quota = quota
        self.settings = settings
        self.workdir = workdir
        self._clock = clock
        # The operator's ALLOWED_GUILD_IDS (bot/guild_access.py); empty = any server.
        self.allowed_guilds = frozenset(allowed_guilds)
        self.reporter: Reporter | None = None
        self._wake = asyncio.Event()
        # Wakes from the fleet's other processes (`start` listens when sharded; SQLite: never connected).
        self._wakes: WakeListening = NoWakes()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._cancels = CancelSignals()
        self._posting: dict[int, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._submitting: set[asyncio.Task[str | None]] = set()
        self._closing = False
        # True while the dispatcher claims a job: a stop lets the claim end instead of cutting it off.
        self._claiming = False
        # Called with a job's id once its video is delivered (auto-showcase); each must return at once.
        self.delivered_listeners: list[Callable[[int], None]] = []

    @property
    def _report(self) -> Reporter:
        assert self.reporter is not None, "JobRunner.start() was not called"
        return self.reporter

    def _post_progress_later(self, job_id: int, posting: Awaitable[int | None]) -> None:
        async def post_and_save() -> None:
            bind_job(job_id)
            message_id = await posting
            if message_id is not None:
                await self.store.update(job_id, progress_message_id=message_id)

        self._posting[job_id] = asyncio.create_task(post_and_save(), name=f"progress-post-{job_id}")

    async def _progress_posted(self, job_id: int) -> JobRow:
        """The job's fresh row, once its progress message is posted (or given up on): edits and the
        final reply need its id."""
        task = self._posting.get(job_id)
        if task is not None:
            await asyncio.wait({task})  # never raises, and our own cancellation leaves the post alone
            if self._posting.get(job_id) is task:
                del self._posting[job_id]
            if not task.cancelled() and task.exception() is not None:
                log.error("job %s: posting progress failed", job_id, exc_info=task.exception())
        return await self._job(job_id)

    async def _job(self, job_id: int) -> JobRow:
        job = await self.store.get(job_id)
        assert job is not None
        return job

    def _loop_deadline(self, wall_deadline: float) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + max(0.0, wall_deadline - self._clock())
