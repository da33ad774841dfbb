"""The job runner: one /animate command from its record to its video, surviving restarts.

States (each change is `UPDATE … WHERE id = ? AND state = ?`, see bot/store/jobs.py):

    received ─► queued ─► submitting ─► submitted ─► completed ─► delivering ─► delivered
        │          │           │             │            │
        ▼          ▼           ▼             ▼            ▼
     refused   cancelled   uncertain   failed/cancelled  failed

A job ends in exactly one message to its channel (the video, or what went wrong). The post is the one
step that cannot be atomic, so the job is recorded as `delivering` (or ended but not `notified`) first,
the post carries the job's mark, and on resume the reporter looks for that mark before posting again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.config import JobSettings
from bot.errors import BotError, InputRefused, ServiceUnavailable
from bot.media import ImageChecker, PreparedImage
from bot.quota import JobOptions, QuotaService, Reservation
from bot.request import AnimateRequest, AttachmentRef
from bot.store.jobs import JobRow, JobStore
from bot.sunra import (
    DownloadTooLarge,
    KlingInput,
    KlingResult,
    MalformedResponse,
    PollPolicy,
    PredictionFailed,
    QueueStatus,
    RateLimited,
    SubmissionUncertain,
    SunraClient,
    SunraError,
    TransientError,
)

log = logging.getLogger(__name__)


class State(enum.StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUSED = "refused"
    UNCERTAIN = "uncertain"


ENDED = frozenset({State.DELIVERED, State.FAILED, State.CANCELLED, State.REFUSED, State.UNCERTAIN})
# Ends that are told to the member with a message of their own (a refusal is told privately, at once).
TOLD_IN_CHANNEL = (State.FAILED, State.CANCELLED, State.UNCERTAIN)
IN_FLIGHT = (State.SUBMITTING, State.SUBMITTED, State.COMPLETED, State.DELIVERING)

# The API takes about 10 submissions a second and 100 a minute.
SUBMIT_LIMITS = ((10, 1.0), (100, 60.0))
# Dispatcher wake-up when nothing happens, to notice expired deadlines of queued jobs.
DISPATCH_IDLE_SECONDS = 30.0


class Phase(enum.StrEnum):
    WAITING = "waiting"  # in the bot's own fair queue
    QUEUED = "queued"  # in Kling's queue
    GENERATING = "generating"
    FINISHING = "finishing"


@dataclass(frozen=True, slots=True)
class Progress:
    phase: Phase
    position: int | None = None  # place in the bot's queue or in Kling's queue
    started_at: float | None = None


class Reporter(Protocol):
    """The Discord side of a job: implemented by bot/delivery.py, by a recorder in tests."""

    async def post_progress(self, job: JobRow, request: AnimateRequest, progress: Progress) -> int | None: ...

    async def show_progress(self, job: JobRow, progress: Progress) -> None: ...

    async def deliver(self, job: JobRow, video: Path | None) -> int | None: ...

    async def notify_end(self, job: JobRow) -> int | None: ...

    async def find_outcome(self, job: JobRow) -> int | None: ...

    async def recover_progress(self, job: JobRow, request: AnimateRequest) -> int | None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Command:
    interaction_id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    role_ids: tuple[int, ...]
    upload_limit: int
    request: AnimateRequest


@dataclass(frozen=True, slots=True)
class Accepted:
    job_id: int
    reservation: Reservation
    place: int  # 1 = next to be submitted


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job ended when it did not deliver a video; `message` is what the member reads."""

    state: State
    code: str
    message: str
    retryable: bool


def outcome_from_error(error: BaseException) -> Outcome:
    if isinstance(error, SubmissionUncertain):
        return Outcome(State.UNCERTAIN, "submission_uncertain", error.user_message, True)
    if isinstance(error, BotError):
        code = getattr(error, "code", None) or type(error).__name__
        return Outcome(State.FAILED, str(code), error.user_message, error.retryable)
    return Outcome(
        State.FAILED, "internal", "Something went wrong inside the bot. Trying again may help.", True
    )


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


class JobRunner:
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
    ) -> None:
        self.store = store
        self.sunra = sunra
        self.images = images
        self.quota = quota
        self.settings = settings
        self.workdir = workdir
        self._clock = clock
        self.reporter: Reporter | None = None
        self._pacer = SubmitPacer()
        self._wake = asyncio.Event()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._cancel_requests: dict[int, str] = {}
        self._posting: dict[int, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False

    # ----- lifecycle -------------------------------------------------------------------------------------

    def start(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="job-dispatcher")

    async def stop(self) -> None:
        """Stops following jobs; their rows stay as they are and the next start resumes them."""
        self._closing = True
        tasks = [
            t for t in (self._dispatcher, *self._tasks.values(), *self._posting.values()) if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._posting.clear()
        if self.reporter is not None:
            await self.reporter.close()

    @property
    def _report(self) -> Reporter:
        assert self.reporter is not None, "JobRunner.start() was not called"
        return self.reporter

    # ----- a new command -----------------------------------------------------------------------------------

    async def record(self, command: Command) -> tuple[int, bool]:
        """Writes the command down before Discord is answered; (job id, whether it is new)."""
        return await self.store.create(
            interaction_id=command.interaction_id,
            guild_id=command.guild_id,
            channel_id=command.channel_id,
            user_id=command.user_id,
            state=State.RECEIVED,
            params=command.request.to_params(),
            upload_limit=command.upload_limit,
            lifetime_seconds=self.settings.max_lifetime_minutes * 60,
        )

    async def accept(self, job_id: int, command: Command) -> Accepted:
        """Checks the images, reserves credits, uploads and queues. Refusals raise InputRefused and end
        the job as refused with nothing charged or submitted."""
        blocked = self.sunra.submissions_blocked
        if blocked is not None:
            await self._refuse(job_id, "service_unavailable", blocked.user_message)
            raise ServiceUnavailable(blocked.user_message)
        request = command.request
        try:
            start = await self.images.fetch(request.image.url, label="image")
            end = await self._fetch_optional(request.end_image, label="end image")
            reservation = await self.quota.reserve(
                job_id=job_id,
                guild_id=command.guild_id,
                user_id=command.user_id,
                role_ids=command.role_ids,
                options=job_options(request),
            )
            start_url = await self._upload(start)
            end_url = await self._upload(end) if end is not None else None
        except BaseException as error:
            # Nothing was submitted: end the job as refused and give back whatever was reserved.
            outcome = outcome_from_error(error)
            code = type(error).__name__ if isinstance(error, InputRefused) else outcome.code
            await asyncio.shield(self._refuse_and_refund(job_id, code, outcome.message))
            if isinstance(error, BotError) or not isinstance(error, Exception):
                raise
            log.exception("job %s: unexpected error before queueing", job_id)
            raise BotError(outcome.message, retryable=True) from error
        if not await self.store.transition(
            job_id, State.RECEIVED, State.QUEUED, start_image_url=start_url, end_image_url=end_url
        ):
            await self.quota.refund(job_id, "job moved before it was queued")
            raise InputRefused("This command was already handled.")
        job = await self._job(job_id)
        place = await self.place_in_line(job)
        # The public progress post waits for the channel's message rate limit (5 per 5 s on Discord);
        # neither the submission nor the member's private answer should wait with it.
        self._post_progress_later(
            job_id, self._report.post_progress(job, request, Progress(Phase.WAITING, position=place))
        )
        self._wake.set()
        return Accepted(job_id, reservation, place)

    def _post_progress_later(self, job_id: int, posting: Awaitable[int | None]) -> None:
        async def post_and_save() -> None:
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

    async def _fetch_optional(self, ref: AttachmentRef | None, *, label: str) -> PreparedImage | None:
        return None if ref is None else await self.images.fetch(ref.url, label=label)

    async def _upload(self, image: PreparedImage) -> str:
        return await self.sunra.upload(image.data, content_type=image.content_type, file_name=image.filename)

    async def drop_unacknowledged(self, job_id: int) -> None:
        """Discord refused the acknowledgement: the member was never told the job exists, so it ends
        here, silently, before anything was reserved or submitted."""
        await self._refuse(job_id, "not_acknowledged", "The command could not be acknowledged in time.")

    async def _refuse_and_refund(self, job_id: int, code: str, message: str) -> None:
        await self._refuse(job_id, code, message)
        await self.quota.refund(job_id, code)

    async def _refuse(self, job_id: int, code: str, message: str) -> None:
        # A refusal is told privately by the caller; mark it told so resume never posts it again.
        await self.store.transition(
            job_id,
            State.RECEIVED,
            State.REFUSED,
            error_code=code,
            error_message=message,
            retryable=False,
            notified=True,
            finished_at=self._clock(),
        )

    # ----- cancellation ------------------------------------------------------------------------------------

    async def cancel(self, job_id: int, reason: str) -> bool:
        """Asks for a job to stop; True if it was still running. The job's own task finishes the work."""
        job = await self.store.get(job_id)
        if job is not None and job.state == State.QUEUED:
            cancelled = Outcome(State.CANCELLED, "cancelled", reason, True)
            if await self._end(job, cancelled, from_states=State.QUEUED):
                return True
            job = await self.store.get(job_id)  # the dispatcher took it meanwhile
        if job is None or job.state in ENDED or job.state in (State.COMPLETED, State.DELIVERING):
            return False  # ended, or the video already exists and is on its way
        if job_id in self._cancel_requests:
            return True  # already being cancelled: a second cancel() would interrupt the first's cleanup
        self._cancel_requests[job_id] = reason
        task = self._tasks.get(job_id)
        if task is not None and job.state == State.SUBMITTED:
            task.cancel()  # wakes the wait; _follow sees the request and cancels with the API
        return True

    # ----- the fair queue ----------------------------------------------------------------------------------

    async def place_in_line(self, job: JobRow) -> int:
        ordered = await self._queue_order()
        for index, queued in enumerate(ordered, start=1):
            if queued.id == job.id:
                return index
        return 1

    async def _queue_order(self) -> list[JobRow]:
        queued = await self.store.in_states([State.QUEUED])
        usage = await self.store.started_since(self._clock() - 86_400)
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
            if now > job.deadline:
                await self._end(job, lifetime_outcome(self.settings), from_states=State.QUEUED)
            else:
                waiting.append(job)
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

    # ----- one job's life ----------------------------------------------------------------------------------

    async def _submit_and_follow(self, job: JobRow) -> None:
        try:
            submission = await self.sunra.submit(kling_input(job))
        except (SunraError, BotError) as error:
            await self._end(job, outcome_from_error(error), from_states=State.SUBMITTING)
            return
        now = self._clock()
        if not await self.store.transition(
            job.id, State.SUBMITTING, State.SUBMITTED, request_id=submission.request_id, submitted_at=now
        ):
            return
        await self._follow(await self._job(job.id))

    async def _follow(self, job: JobRow) -> None:
        """Waits for the API's verdict by the status stream or slow polling, then delivers."""
        job = await self._progress_posted(job.id)  # the job is at the API already; nothing is delayed
        assert job.request_id is not None
        request_id = job.request_id
        started = job.submitted_at or self._clock()
        await self._report.show_progress(job, Progress(Phase.QUEUED, started_at=started))

        async def on_update(status: QueueStatus) -> None:
            await self._report.show_progress(job, progress_from_status(status, started))

        if job.id in self._cancel_requests:  # the member pressed Cancel while it was being submitted
            reason = self._cancel_requests[job.id]
            await self._stop_at_api(job, Outcome(State.CANCELLED, "cancelled", reason, True))
            return
        policy = PollPolicy(first=self.settings.poll_first_seconds, maximum=self.settings.poll_max_seconds)
        try:
            async with asyncio.timeout_at(self._loop_deadline(job.deadline)):
                final = await self.sunra.wait(request_id, on_update=on_update, poll=policy)
        except TimeoutError:
            await self._stop_at_api(job, lifetime_outcome(self.settings))
            return
        except asyncio.CancelledError:
            if job.id not in self._cancel_requests:
                raise
            reason = self._cancel_requests[job.id]
            # This cancellation was ours (the Cancel button), not a shutdown: let later awaits run.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._stop_at_api(job, Outcome(State.CANCELLED, "cancelled", reason, True))
            return
        except (SunraError, BotError) as error:
            await self._end(job, outcome_from_error(error), from_states=State.SUBMITTED)
            return
        failure = final.failure
        if failure is not None or final.succeeded is False:
            await self._end(
                job, outcome_from_error(failure or PredictionFailed()), from_states=State.SUBMITTED
            )
            return
        if final.status.upper() in ("CANCELLED", "CANCELED"):
            outcome = Outcome(State.CANCELLED, "cancelled", "The job was cancelled at Kling.", True)
            await self._end(job, outcome, from_states=State.SUBMITTED)
            return
        await self._complete(job)

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
        """Downloads the video when it fits the channel's upload limit, then posts it exactly once."""
        job = await self._progress_posted(job.id)
        assert job.video_url is not None
        await self._report.show_progress(job, Progress(Phase.FINISHING))
        path = await self._download_if_it_fits(job)
        try:
            if job.state == State.COMPLETED and not await self.store.transition(
                job.id, State.COMPLETED, State.DELIVERING
            ):
                return
            message_id = await self._report.deliver(await self._job(job.id), path)
            await self.store.transition(
                job.id,
                State.DELIVERING,
                State.DELIVERED,
                result_message_id=message_id,
                finished_at=self._clock(),
            )
            how = "as a file" if path is not None else "as a link"
            where = "nowhere (kept in the database)" if message_id is None else f"message {message_id}"
            log.info("job %s: video delivered %s, %s", job.id, how, where)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)

    async def _download_if_it_fits(self, job: JobRow) -> Path | None:
        assert job.video_url is not None
        limit = min(job.upload_limit, int(self.settings.max_video_mb * 1_000_000))
        if job.video_size is not None and job.video_size > limit:
            return None
        path = self.workdir / f"job-{job.id}.mp4"
        try:
            await self.sunra.download(job.video_url, path, max_bytes=limit)
        except DownloadTooLarge:
            return None
        except (SunraError, BotError, OSError) as error:
            log.warning("job %s: video download failed (%s); delivering its URL", job.id, error)
            path.unlink(missing_ok=True)
            return None
        return path

    async def _stop_at_api(self, job: JobRow, outcome: Outcome) -> None:
        assert job.request_id is not None
        try:
            stopped = await self.sunra.cancel(job.request_id)
        except (SunraError, BotError) as error:
            log.warning("job %s: cancel at the API failed: %s", job.id, error)
            stopped = True
        if not stopped:
            # Too late to stop: the video exists, so deliver it rather than waste it.
            try:
                await self._complete(job)
                return
            except (SunraError, BotError):
                pass
        await self._end(job, outcome, from_states=State.SUBMITTED)

    def _loop_deadline(self, wall_deadline: float) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + max(0.0, wall_deadline - self._clock())

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

    async def _job(self, job_id: int) -> JobRow:
        job = await self.store.get(job_id)
        assert job is not None
        return job

    # ----- after a restart ---------------------------------------------------------------------------------

    async def resume(self) -> None:
        """Settles every job the last process left unfinished. Runs once, from setup_hook.

        Only database work happens here; every job's Discord and API work runs in its own task, so one
        job that cannot be settled never keeps the bot from starting (or the others from finishing)."""
        for job in await self.store.in_states([State.RECEIVED]):
            # The member's picture was never checked; its Discord URL may have expired, so do not guess.
            outcome = Outcome(
                State.FAILED,
                "restarted_before_check",
                "The bot restarted before your picture was checked. Nothing was charged; "
                "please run /animate again.",
                True,
            )
            self._spawn(job.id, self._end(job, outcome, from_states=State.RECEIVED))
        for job in await self.store.in_states([State.SUBMITTING]):
            # No request id was saved, so we cannot ask the API about it; resubmitting might pay twice.
            outcome = outcome_from_error(SubmissionUncertain())
            self._spawn(job.id, self._end(job, outcome, from_states=State.SUBMITTING))
        for job in await self.store.unnotified(TOLD_IN_CHANNEL):
            if job.id not in self._tasks:
                self._spawn(job.id, self._retell(job))
        await self.quota.settle_finished()
        for job in await self.store.in_states([State.QUEUED, State.SUBMITTED, State.COMPLETED]):
            if job.progress_message_id is None:
                # Killed around the progress post: adopt the message if it was made, else post it now.
                request = AnimateRequest.model_validate(job.params)
                self._post_progress_later(job.id, self._report.recover_progress(job, request))
        for job in await self.store.in_states([State.SUBMITTED]):
            self._spawn(job.id, self._follow(job))
        for job in await self.store.in_states([State.COMPLETED]):
            await self.quota.commit(job.id)
            self._spawn(job.id, self._deliver(job))
        for job in await self.store.in_states([State.DELIVERING]):
            self._spawn(job.id, self._redeliver(job))
        self._wake.set()

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


def job_options(request: AnimateRequest) -> JobOptions:
    return JobOptions(duration=request.duration, audio=request.audio, voices=len(request.voice_ids))


def kling_input(job: JobRow) -> KlingInput:
    request = AnimateRequest.model_validate(job.params)
    assert job.start_image_url is not None
    return KlingInput(
        prompt=request.prompt,
        start_image_url=job.start_image_url,
        end_image_url=job.end_image_url,
        negative_prompt=request.negative_prompt,
        duration="10" if request.duration == 10 else "5",
        generate_audio=request.audio,
        voice_ids=request.voice_ids or None,
    )


def progress_from_status(status: QueueStatus, started_at: float) -> Progress:
    upper = status.status.upper()
    if upper == "IN_QUEUE":
        return Progress(Phase.QUEUED, position=status.queue_position, started_at=started_at)
    if upper == "IN_PROGRESS":
        return Progress(Phase.GENERATING, started_at=started_at)
    return Progress(Phase.FINISHING, started_at=started_at)


def lifetime_outcome(settings: JobSettings) -> Outcome:
    minutes = round(settings.max_lifetime_minutes)
    return Outcome(
        State.CANCELLED,
        "lifetime_exceeded",
        f"The job did not finish within {minutes} minutes, so it was cancelled and nothing was charged. "
        "Trying again later may help.",
        True,
    )
