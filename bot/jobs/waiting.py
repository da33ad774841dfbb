"""Following a job at the API: submit it, wait for the verdict, stop it there when asked."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.errors import BotError
from bot.i18n import _
from bot.jobs.base import log
from bot.jobs.finishing import Finishing
from bot.jobs.model import (
    Outcome,
    Phase,
    Progress,
    State,
    cancelled_outcome,
    kling_input,
    lifetime_outcome,
    outcome_from_error,
    progress_from_status,
)
from bot.logs import bind_request
from bot.store.jobs import JobRow
from bot.sunra import PollPolicy, PredictionFailed, QueueStatus, SunraError

T = TypeVar("T")

# How long an accepted cancel is followed for the API's own ending (CANCELLED, or a video made anyway)
# before the job is ended as cancelled with its USD kept against the cap (the API may still bill it).
CANCEL_CONFIRM_SECONDS = 120.0


class Waiting(Finishing):
    async def _submit_and_follow(self, job: JobRow) -> None:
        reason = self._cancels.reason(job.id)
        if reason is not None:  # pressed as the job's turn came: nothing has been sent
            await self._end(job, cancelled_outcome(reason), from_states=State.SUBMITTING)
            return
        # A stop lets the submission in flight finish and record its request id (see JobRunner.stop):
        # cut off, the job would end "uncertain" at the next start although nothing went wrong.
        sending = asyncio.create_task(self._send(job), name=f"submit-{job.id}")
        self._submitting.add(sending)
        sending.add_done_callback(self._submitting.discard)
        try:
            request_id = await asyncio.shield(sending)
        except (SunraError, BotError) as error:
            await self._end(job, outcome_from_error(error), from_states=State.SUBMITTING)
            return
        if request_id is not None:
            bind_request(request_id)  # here: what the task above binds stays in its own context
            await self._follow(await self._job(job.id))

    async def _send(self, job: JobRow) -> str | None:
        """Submits the job and records its request id; returns it, or None if the job moved meanwhile."""
        submission = await self.sunra.submit(kling_input(job))
        bind_request(submission.request_id)
        recorded = await self.store.record_submission(
            job.id, request_id=submission.request_id, submitted_at=self._clock()
        )
        return submission.request_id if recorded else None

    async def _follow(self, job: JobRow) -> None:
        """Waits for the API's verdict by the status stream or slow polling, then delivers. A Cancel
        press stops the wait (it only reads) and the job at the API; once the API has said the video is
        made, the job goes on to deliver it."""
        job = await self._progress_posted(job.id)  # the job is at the API already; nothing is delayed
        assert job.request_id is not None
        request_id = job.request_id
        started = job.submitted_at or self._clock()
        await self._report.show_progress(job, Progress(Phase.QUEUED, started_at=started))

        async def on_update(status: QueueStatus) -> None:
            await self._report.show_progress(job, progress_from_status(status, started))

        policy = PollPolicy(first=self.settings.poll_first_seconds, maximum=self.settings.poll_max_seconds)
        try:
            async with asyncio.timeout_at(self._loop_deadline(job.deadline)):
                final = await self._unless_cancelled(
                    job.id, lambda: self.sunra.wait(request_id, on_update=on_update, poll=policy)
                )
        except TimeoutError:
            await self._stop_at_api(job, lifetime_outcome(self.settings))
            return
        except (SunraError, BotError) as error:
            await self._end(job, outcome_from_error(error), from_states=State.SUBMITTED)
            return
        if final is None:
            reason = self._cancels.reason(job.id)
            assert reason is not None
            await self._stop_at_api(job, cancelled_outcome(reason))
            return
        failure = final.failure
        if failure is not None or final.succeeded is False:
            await self._end(
                job, outcome_from_error(failure or PredictionFailed()), from_states=State.SUBMITTED
            )
            return
        if final.status.upper() in ("CANCELLED", "CANCELED"):
            outcome = Outcome(State.CANCELLED, "cancelled", _("The job was cancelled at Kling."), True)
            await self._end(job, outcome, from_states=State.SUBMITTED)
            return
        await self._complete(job)

    async def _unless_cancelled(self, job_id: int, wait: Callable[[], Awaitable[T]]) -> T | None:
        """`wait()`'s answer, or None when the job's Cancel is (or was already) pressed first; then the
        wait is stopped, so give only waits that change nothing."""
        if self._cancels.reason(job_id) is not None:
            return None
        waiting = asyncio.ensure_future(wait())
        pressed = asyncio.ensure_future(self._cancels.wait(job_id))
        try:
            await asyncio.wait({waiting, pressed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, pressed):
                task.cancel()
            await asyncio.gather(waiting, pressed, return_exceptions=True)
        if waiting.cancelled():
            return None
        return waiting.result()  # an answer that came with the press still counts

    async def _stop_at_api(self, job: JobRow, outcome: Outcome) -> None:
        assert job.request_id is not None
        try:
            stopped = await self.sunra.cancel(job.request_id)
        except (SunraError, BotError) as error:
            # The job may run on and be billed: the member gets the credits back, the USD cap keeps it.
            log.warning("job %s: cancel at the API failed: %s", job.id, error)
            billed = dataclasses.replace(outcome, may_be_billed=True)
            await self._end(job, billed, from_states=State.SUBMITTED)
            return
        deliver = not stopped  # a cancel refused (400/409): the job had already ended
        if stopped:
            # An accepted cancel (sunra answers CANCELLATION_REQUESTED) is a request, not an ending: the
            # job may still finish and be billed. Only the API's own ending decides (issue 19, item 4).
            final = await self._ending_after_cancel(job.request_id)
            if final is None:
                log.warning("job %s: the API did not confirm the cancel; refunded, USD kept", job.id)
                outcome = dataclasses.replace(outcome, may_be_billed=True)
            deliver = final is not None and final.succeeded is True
        if deliver:
            # Too late to stop: the video exists (and is billed), so deliver it rather than waste it.
            try:
                await self._complete(job)
                return
            except (SunraError, BotError):
                pass
        await self._end(job, outcome, from_states=State.SUBMITTED)

    async def _ending_after_cancel(self, request_id: str) -> QueueStatus | None:
        """The job's terminal status once a cancel was accepted, or None when the API does not say it
        ended within CANCEL_CONFIRM_SECONDS (or cannot be asked)."""
        policy = PollPolicy(first=self.settings.poll_first_seconds, maximum=self.settings.poll_max_seconds)
        try:
            async with asyncio.timeout(CANCEL_CONFIRM_SECONDS):
                return await self.sunra.wait(request_id, poll=policy)
        except (TimeoutError, SunraError, BotError) as error:
            log.info("sunra job %s: no ending after the cancel (%r)", request_id, error)
            return None
