"""The end of a job: the finished video fetched, recorded, paid for and posted exactly once, or the
job ended without one (credits back, the member told once), and both settled again after a restart."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Iterable
from pathlib import Path

from bot.errors import BotError
from bot.jobs.base import RunnerBase, log
from bot.jobs.model import ENDED, Outcome, Phase, Progress, State, outcome_from_error
from bot.store.jobs import JobRow
from bot.sunra import (
    DownloadTooLarge,
    KlingResult,
    MalformedResponse,
    PollPolicy,
    RateLimited,
    SunraError,
    TransientError,
)
from bot.video import reencode_to_fit


class Finishing(RunnerBase):
    @functools.cached_property
    def _reencoding(self) -> asyncio.Lock:
        """One re-encoding at a time: it takes a whole core for seconds, and the bot shares the host."""
        return asyncio.Lock()

    def _spawn(self, job_id: int, work: Awaitable[object]) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job %s: unexpected error", job_id)
                job = await self.store.get(job_id)
                if job is not None and job.state not in ENDED:
                    await self._end(job, outcome_from_error(RuntimeError()), from_states=job.state)
            finally:
                self._tasks.pop(job_id, None)
                if job_id in self._cancel_requests:
                    del self._cancel_requests[job_id]
                self._wake.set()

        self._tasks[job_id] = asyncio.create_task(run(), name=f"job-{job_id}")

    async def _complete(self, job: JobRow) -> None:
        try:
            result = await self._result(job)
        except (SunraError, BotError) as error:
            await self._end(job, outcome_from_error(error), from_states=State.SUBMITTED)
            return
        video = result.video
        if not await self.store.transition(
            job.id, State.SUBMITTED, State.COMPLETED, video_url=video.url, video_size=video.file_size
        ):
            return
        await self.quota.commit(job.id)
        await self._deliver(await self._job(job.id))

    async def _result(self, job: JobRow) -> KlingResult:
        """The finished job's result. The video exists and is paid for, so a flaky API is waited out
        (at the polling cadence, until the job's lifetime ends) rather than the job given up."""
        assert job.request_id is not None
        pauses = PollPolicy(first=self.settings.poll_first_seconds, maximum=self.settings.poll_max_seconds)
        for pause in pauses.intervals():
            try:
                return await self.sunra.result(job.request_id)
            except (TransientError, RateLimited, MalformedResponse) as error:
                if self._clock() + pause > job.deadline:
                    raise
                log.warning("job %s: result not available yet (%s); trying again", job.id, error)
            await asyncio.sleep(pause)
        raise AssertionError("PollPolicy.intervals() is endless")

    async def _deliver(self, job: JobRow) -> None:
        """Downloads the video (re-encoded when larger than the channel's upload limit), then posts it
        exactly once."""
        job = await self._progress_posted(job.id)
        assert job.video_url is not None
        await self._report.show_progress(job, Progress(Phase.FINISHING))
        path, reencoded = await self._video_for_upload(job)
        try:
            if job.state == State.COMPLETED and not await self.store.transition(
                job.id, State.COMPLETED, State.DELIVERING
            ):
                return
            message_id = await self._report.deliver(await self._job(job.id), path, reencoded=reencoded)
            delivered = await self.store.transition(
                job.id,
                State.DELIVERING,
                State.DELIVERED,
                result_message_id=message_id,
                finished_at=self._clock(),
            )
            how = "as a link" if path is None else "re-encoded" if reencoded else "as a file"
            where = "nowhere (kept in the database)" if message_id is None else f"message {message_id}"
            log.info("job %s: video delivered %s, %s", job.id, how, where)
            if delivered:
                for listener in self.delivered_listeners:
                    listener(job.id)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)

    async def _video_for_upload(self, job: JobRow) -> tuple[Path | None, bool]:
        """(file to upload, whether it was re-encoded); no file means the link is posted instead."""
        cap = int(self.settings.max_video_mb * 1_000_000)
        path = await self._download(job, max_bytes=cap)
        if path is None or path.stat().st_size <= job.upload_limit:
            return path, False
        # Too large for the channel: re-encode it to fit (the API's link expires, an upload stays).
        smaller = path.with_suffix(".fit.mp4")
        try:
            async with self._reencoding:
                fitted = await asyncio.to_thread(reencode_to_fit, path, smaller, max_bytes=job.upload_limit)
        except BotError as error:
            log.warning("job %s: re-encoding failed (%s); delivering its URL", job.id, error)
            fitted = None
        finally:
            path.unlink(missing_ok=True)
        return (None, False) if fitted is None else (fitted.path, True)

    async def _download(self, job: JobRow, *, max_bytes: int) -> Path | None:
        assert job.video_url is not None
        if job.video_size is not None and job.video_size > max_bytes:
            return None
        path = self.workdir / f"job-{job.id}.mp4"
        try:
            await self.sunra.download(job.video_url, path, max_bytes=max_bytes)
        except DownloadTooLarge:
            return None
        except (SunraError, BotError, OSError) as error:
            log.warning("job %s: video download failed (%s); delivering its URL", job.id, error)
            path.unlink(missing_ok=True)
            return None
        return path

    async def _end(self, job: JobRow, outcome: Outcome, *, from_states: str | Iterable[str]) -> bool:
        """Ends a job that made no video: refund, then tell the member once. False if the job had
        already moved on (someone else ends it)."""
        moved = await self.store.transition(
            job.id,
            from_states,
            outcome.state,
            error_code=outcome.code,
            error_message=outcome.message,
            retryable=outcome.retryable,
            finished_at=self._clock(),
        )
        if not moved:
            return False
        log.info("job %s: ended %s (%s)", job.id, outcome.state, outcome.code)
        await self.quota.refund(job.id, outcome.code)
        await self._tell(await self._job(job.id))
        return True

    async def _tell(self, job: JobRow) -> None:
        job = await self._progress_posted(job.id)
        message_id = await self._report.notify_end(job)
        await self.store.update(job.id, notified=True, result_message_id=message_id)

    async def _retell(self, job: JobRow) -> None:
        """An ended job whose message may or may not have been posted before the process died."""
        found = await self._report.find_outcome(job)
        if found is None:
            await self._tell(job)
        else:
            await self.store.update(job.id, notified=True, result_message_id=found)

    async def _redeliver(self, job: JobRow) -> None:
        found = await self._report.find_outcome(job)
        if found is not None:
            await self.store.transition(
                job.id, State.DELIVERING, State.DELIVERED, result_message_id=found, finished_at=self._clock()
            )
            return
        await self._deliver(job)
