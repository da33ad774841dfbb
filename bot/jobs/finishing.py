"""The end of a job: the finished video fetched, recorded, paid for and posted exactly once, or the
job ended without one (credits back, the member told once), and both settled again after a restart."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from pathlib import Path

import httpx

from bot.errors import BotError
from bot.i18n import _
from bot.jobs.base import RunnerBase, log
from bot.jobs.model import ENDED, Outcome, Phase, Progress, State, outcome_from_error
from bot.logs import bind_job
from bot.netguard import UnsafeUrl
from bot.store.jobs import JobRow
from bot.store.undeliverable import UNDELIVERABLE, end_undeliverable
from bot.sunra import (
    DownloadTooLarge,
    KlingResult,
    MalformedResponse,
    PollPolicy,
    RateLimited,
    SunraError,
    TransientError,
)
from bot.video import check_playable, looks_like_mp4, reencode_to_fit

# A job whose final post keeps failing (not Discord refusing it: a dropped connection, a timeout) is
# retried this long past its lifetime, then left as it is for the next start to finish.
POST_PATIENCE_SECONDS = 3600.0
# Tries with the video file before posting its link instead: the file itself may be what fails.
FILE_ATTEMPTS = 2
# The least time one try at fetching the video gets, even at the end of JOBS__VIDEO_FETCH_SECONDS
# (or that, when it is shorter).
FETCH_ATTEMPT_SECONDS = 20.0


class VideoUnusable(BotError):
    """The API's video could not be fetched as an MP4; ``str()`` is the operator's detail."""

    user_message = _(
        "Kling made the video, but the bot could not fetch a playable file from the video service, so "
        "there is nothing to post. Your credits were given back. Trying again may help."
    )
    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__()
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class Finishing(RunnerBase):
    @functools.cached_property
    def _reencoding(self) -> asyncio.Lock:
        """One re-encoding at a time: it takes a whole core for seconds, and the bot shares the host."""
        return asyncio.Lock()

    def _spawn(
        self, job_id: int, work: Coroutine[object, object, object], *, request_id: str | None = None
    ) -> None:
        if self._closing:
            # Stopping: the database is about to close. The job's row says what is left, and the next
            # start's resume() finishes it (refunds, messages, deliveries).
            work.close()
            return

        async def run() -> None:
            bind_job(job_id, request_id)
            try:
                await work
            except Exception:
                log.exception("job %s: unexpected error", job_id)
                try:
                    await self._after_crash(job_id)
                except Exception:
                    log.exception("job %s: could not settle it after an unexpected error", job_id)
            finally:
                if self._tasks.get(job_id) is task:
                    del self._tasks[job_id]
                self._cancels.forget(job_id)
                self._wake.set()
                # Its place under the fleet's caps is free: the other processes' dispatchers look (a
                # fleet's, and a terminal's `kling-bot animate` jobs count against the fleet's caps too).
                self.store.db.wake_others()

        task = asyncio.create_task(run(), name=f"job-{job_id}")
        self._tasks[job_id] = task

    async def _after_crash(self, job_id: int) -> None:
        job = await self.store.get(job_id)
        if job is None or job.state in ENDED:
            return  # an ending not yet told is told again at the next start
        if job.state in (State.COMPLETED, State.DELIVERING):
            # The video exists and is paid for: it is never reported as failed.
            log.error("job %s: delivery stopped in state %s; the next start resumes it", job_id, job.state)
            return
        await self._end(job, outcome_from_error(RuntimeError()), from_states=job.state)

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
        exactly once. A job resumed in `delivering` may have been posted before the process died: that is
        looked for first."""
        job = await self._progress_posted(job.id)
        assert job.video_url is not None
        resumed = job.state == State.DELIVERING
        path: Path | None = None
        reencoded = prepared = False
        if not resumed:
            await self._report.show_progress(job, Progress(Phase.FINISHING))
            try:
                (path, reencoded), prepared = await self._video_for_upload(job), True
            except VideoUnusable as error:
                await self._undeliverable(job, error)
                return

        async def post(row: JobRow, attempt: int) -> int | None:
            nonlocal path, reencoded, prepared
            if not prepared:
                (path, reencoded), prepared = await self._video_for_upload(row), True
            if attempt >= FILE_ATTEMPTS:
                return await self._report.deliver(row, None)
            return await self._report.deliver(row, path, reencoded=reencoded)

        try:
            if job.state == State.COMPLETED and not await self.store.transition(
                job.id, State.COMPLETED, State.DELIVERING
            ):
                return
            try:
                message_id = await self._post_outcome(job.id, post, look_first=resumed)
            except VideoUnusable as error:
                await self._undeliverable(job, error)
                return
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

    async def _post_outcome(
        self, job_id: int, post: Callable[[JobRow, int], Awaitable[int | None]], *, look_first: bool
    ) -> int | None:
        """Makes the one post that ends a job; returns its message id (None: nobody could be reached).

        Discord's own refusals are handled by the reporter. Anything else (a dropped connection, a
        timeout, a full disk) may have struck after the post landed, so each new try first looks for
        the job's mark, at the polling cadence, for POST_PATIENCE_SECONDS past the job's lifetime;
        then the error is raised and the job is left as it is for the next start."""
        pauses = PollPolicy(first=self.settings.poll_first_seconds, maximum=self.settings.poll_max_seconds)
        for attempt, pause in enumerate(pauses.intervals()):
            job = await self._job(job_id)
            try:
                if look_first or attempt:
                    found = await self._report.find_outcome(job)
                    if found is not None:
                        return found
                return await post(job, attempt)
            except VideoUnusable:
                raise  # nothing to post: not a failed post to try again
            except Exception as error:
                if self._clock() + pause > max(job.deadline, job.updated_at) + POST_PATIENCE_SECONDS:
                    raise
                log.warning(
                    "job %s: the final post failed (%r); looking for it, then trying again", job_id, error
                )
            await asyncio.sleep(pause)
        raise AssertionError("PollPolicy.intervals() is endless")

    async def _video_for_upload(self, job: JobRow) -> tuple[Path | None, bool]:
        """(file to upload, whether it was re-encoded); no file means the link is posted instead, and
        then the link has passed the file host policy. Raises VideoUnusable."""
        path, reencoded = await self._file_for_upload(job)
        if path is None:
            await self._check_link(job)
        return path, reencoded

    async def _check_link(self, job: JobRow) -> None:
        """The API's link, shown to members when no file is (too large even re-encoded), passes the same
        host check as every URL from an answer (bot/netguard.py): members would fetch it from the post.
        A link never downloaded (its declared size was already too large) is checked only here."""
        assert job.video_url is not None
        try:
            await self.sunra.file_hosts.check(job.video_url)
        except (UnsafeUrl, httpx.ConnectError) as error:
            raise VideoUnusable(f"the video's address is refused: {error}") from error

    async def _file_for_upload(self, job: JobRow) -> tuple[Path | None, bool]:
        cap = int(self.settings.max_video_mb * 1_000_000)
        path = await self._download(job, max_bytes=cap)
        if path is None:
            return path, False
        if path.stat().st_size <= job.upload_limit and await self._playable(job, path):
            return path, False
        # Too large for the channel, or in a form Discord does not play inline: re-encoded to H.264
        # 4:2:0 that fits (the API's link expires, an upload stays).
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

    async def _playable(self, job: JobRow, path: Path) -> bool:
        """Whether the file plays inline as it is; a file that cannot be probed is posted as it is."""
        try:
            return await asyncio.to_thread(check_playable, path)
        except BotError as error:
            log.warning("job %s: cannot probe the video (%s); posting it as it is", job.id, error)
            return True

    async def _download(self, job: JobRow, *, max_bytes: int) -> Path | None:
        """The video as an MP4 file, or None when it is too large to upload (its link is posted). Raises
        VideoUnusable when it cannot be fetched, after trying for JOBS__VIDEO_FETCH_SECONDS (an address
        the file host policy refuses is not tried again): a dead link is never posted as the video."""
        assert job.video_url is not None
        if job.video_size is not None and job.video_size > max_bytes:
            return None
        path = self.workdir / f"job-{job.id}.mp4"
        give_up = self._clock() + self.settings.video_fetch_seconds
        pauses = PollPolicy(
            first=self.settings.poll_first_seconds, maximum=self.settings.poll_max_seconds
        ).intervals()
        while True:
            try:
                # Each try ends by the patience's end (a server that trickles or hangs cannot hold the
                # member past it), yet always gets FETCH_ATTEMPT_SECONDS for a video on a slow line.
                floor = min(FETCH_ATTEMPT_SECONDS, self.settings.video_fetch_seconds)
                remaining = max(give_up - self._clock(), floor)
                async with asyncio.timeout(remaining):
                    await self.sunra.download(job.video_url, path, max_bytes=max_bytes)
                if await asyncio.to_thread(looks_like_mp4, path):
                    return path
                problem = "the file is not an MP4"
            except DownloadTooLarge:
                return None
            except UnsafeUrl as error:
                path.unlink(missing_ok=True)
                raise VideoUnusable(f"the video's address is refused: {error}") from error
            except TimeoutError:  # before OSError, its base class: this one is the server's, not the disk's
                problem = f"no whole file within {remaining:.0f} s"
            except OSError as error:
                # The bot's own disk, not the video: its link still works.
                log.warning("job %s: video download failed (%s); delivering its URL", job.id, error)
                path.unlink(missing_ok=True)
                return None
            except (SunraError, BotError) as error:
                problem = str(error)
            path.unlink(missing_ok=True)
            pause = next(pauses)
            if self._clock() + pause > give_up:
                raise VideoUnusable(f"the video could not be fetched: {problem}")
            log.warning("job %s: video not fetched (%s); trying again", job.id, problem)
            await asyncio.sleep(pause)

    async def _undeliverable(self, job: JobRow, error: VideoUnusable) -> None:
        """A paid video with nothing to post: the job ends, the credits go back, the member is told."""
        moved = await end_undeliverable(
            self.store.db,
            job.id,
            from_states=(State.COMPLETED, State.DELIVERING),
            code="video_unusable",
            message=error.user_message,
            at=self._clock(),
        )
        if moved:
            log.warning("job %s: ended %s, credits given back (%s)", job.id, UNDELIVERABLE, error)
            await self._tell(await self._job(job.id))

    async def _end(self, job: JobRow, outcome: Outcome, *, from_states: str | Iterable[str]) -> bool:
        """Ends a job that made no video: refund, then tell the member once. False if the job had
        already moved on (someone else ends it)."""
        if not await self._record_end(job.id, outcome, from_states=from_states):
            return False
        await self._settle_and_tell(job.id, outcome)
        return True

    async def _record_end(self, job_id: int, outcome: Outcome, *, from_states: str | Iterable[str]) -> bool:
        moved = await self.store.transition(
            job_id,
            from_states,
            outcome.state,
            error_code=outcome.code,
            error_message=outcome.message,
            retryable=outcome.retryable,
            may_be_billed=outcome.may_be_billed,
            finished_at=self._clock(),
        )
        if moved:
            log.info("job %s: ended %s (%s)", job_id, outcome.state, outcome.code)
        return moved

    async def _settle_and_tell(self, job_id: int, outcome: Outcome) -> None:
        await self.quota.refund(job_id, outcome.code)
        await self._tell(await self._job(job_id))

    async def _tell(self, job: JobRow, *, look_first: bool = False) -> None:
        job = await self._progress_posted(job.id)
        message_id = await self._post_outcome(
            job.id, lambda row, _: self._report.notify_end(row), look_first=look_first
        )
        await self.store.update(job.id, notified=True, result_message_id=message_id)

    async def _retell(self, job: JobRow) -> None:
        """An ended job whose message may or may not have been posted before the process died."""
        await self._tell(job, look_first=True)

    async def _redeliver(self, job: JobRow) -> None:
        await self._deliver(job)
