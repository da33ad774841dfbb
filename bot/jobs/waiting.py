"""Following a job at the API: submit it, wait for the verdict, stop it there when asked."""

from __future__ import annotations

import asyncio

from bot.errors import BotError
from bot.jobs.base import log
from bot.jobs.finishing import Finishing
from bot.jobs.model import (
    Outcome,
    Phase,
    Progress,
    State,
    kling_input,
    lifetime_outcome,
    outcome_from_error,
    progress_from_status,
)
from bot.store.jobs import JobRow
from bot.sunra import PollPolicy, PredictionFailed, QueueStatus, SunraError


class Waiting(Finishing):
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
