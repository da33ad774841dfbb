"""The job runner: one /animate command from its record to its video, surviving restarts.

States (each change is `UPDATE … WHERE id = ? AND state = ?`, see bot/store/jobs.py):

    received ─► queued ─► submitting ─► submitted ─► completed ─► delivering ─► delivered
        │          │           │             │            │
        ▼          ▼           ▼             ▼            ▼
     refused   cancelled   uncertain   failed/cancelled  failed

A job ends in exactly one message to its channel (the video, or what went wrong). The post is the one
step that cannot be atomic, so the job is recorded as `delivering` (or ended but not `notified`) first,
the post carries the job's mark, and on resume the reporter looks for that mark before posting again.

The runner is built in layers, each using the ones before it: base.py (resources, tasks, the progress
post), finishing.py (video delivered or job ended), waiting.py (at the API), dispatch.py (the fair
queue), and here: the lifecycle, a new command, Cancel, and resume after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from bot.acknowledgements import PendingAcknowledgements
from bot.errors import BotError, InputRefused, ServiceUnavailable
from bot.guild_access import check_guild_allowed
from bot.i18n import _
from bot.jobs.base import log
from bot.jobs.dispatch import Dispatching
from bot.jobs.model import (
    ENDED,
    TOLD_IN_CHANNEL,
    Accepted,
    Command,
    Outcome,
    Phase,
    Progress,
    Reporter,
    State,
    cancelled_outcome,
    job_options,
    outcome_from_error,
)
from bot.logs import bind_job
from bot.media import PreparedImage
from bot.request import AnimateRequest, AttachmentRef
from bot.store.inbox import VIA_CHANNEL, VIA_INTERACTION
from bot.sunra import SubmissionUncertain

# An image for a new job: a URL sunra already stores, or a prepared picture still to upload.
ImageInput = str | PreparedImage


# Commands already acknowledged download, check and upload their pictures this many at a time: a crowd's
# hundreds at once would take the event loop from the acknowledgements of the members still arriving
# (and finish no sooner: the work is the loop's and the two decode threads').
ACCEPT_CONCURRENCY = 8
# A member's commands between their record and their reservation at once (issue 18): one member's burst
# costs one member's work, never the shared intake's. More are refused before any download.
MEMBER_BURST = 8
BURST_WINDOW_SECONDS = 10 * 60
# Of the intake's places, one member's commands hold at most this many at once (in this process); the
# rest of their burst waits behind them, so the other members always have half the intake.
MEMBER_INTAKE = ACCEPT_CONCURRENCY // 2


class PerKeyLimit:
    """At most `limit` holders at once per key; a key's entry lives only while it is held or awaited."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: dict[int, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        semaphore, users = self._entries.setdefault(key, (asyncio.Semaphore(self._limit), [0]))
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class MemberBurst(InputRefused):
    """Too many of a member's commands are being checked at once."""

    user_message = _(
        "You already have {count} videos being checked. Please wait until they are on their way, "
        "then try again; nothing was charged for this one.",
        count=MEMBER_BURST,
    )
    retryable = True


# How long a stop lets work under way end before cancelling it: a claim, a submission already sent (so its
# job keeps its request id and is followed after the restart instead of ending "uncertain"), and the
# bot's event handlers it is handed. Well within Docker's 10 s between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS = 2.0


class JobRunner(Dispatching):
    @functools.cached_property
    def _accepting(self) -> asyncio.Semaphore:
        return asyncio.Semaphore(ACCEPT_CONCURRENCY)

    @functools.cached_property
    def _member_intake(self) -> PerKeyLimit:
        return PerKeyLimit(MEMBER_INTAKE)

    @functools.cached_property
    def acknowledgements(self) -> PendingAcknowledgements:
        """The commands of this process not yet acknowledged: accepting waits for them (boundedly)."""
        return PendingAcknowledgements()

    # ----- lifecycle -------------------------------------------------------------------------------------

    def start(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.store.shards.sharded:
            # A job ending in another process frees the fleet's caps: it wakes this dispatcher at once.
            self._wakes = self.store.db.listen_wakes(self._wake.set)
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="job-dispatcher")

    async def stop(
        self, *, grace: float = STOP_GRACE_SECONDS, finishing: Iterable[asyncio.Task[Any]] = ()
    ) -> None:
        """Stops following jobs; their rows stay as they are and the next start resumes them. Nothing new
        is claimed; within `grace`, a claim under way ends (its job handed back to the queue), the
        submissions already claimed are sent and recorded, and `finishing` may end. Then whatever is
        left is cancelled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self._closing = True
        await self._wakes.close()
        dispatcher = self._dispatcher
        if dispatcher is not None:  # no new submission from here on
            if not self._claiming:
                dispatcher.cancel()
            await asyncio.wait({dispatcher}, timeout=max(0.0, deadline - loop.time()))
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
        await asyncio.sleep(0)  # a submission spawned by the last claim starts, and is waited for below
        under_way = {*self._submitting, *finishing}
        if under_way:
            await asyncio.wait(under_way, timeout=max(0.0, deadline - loop.time()))
        tasks = [*self._submitting, *self._tasks.values(), *self._posting.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._posting.clear()
        if self.reporter is not None:
            await self.reporter.close()

    # ----- a new command -----------------------------------------------------------------------------------

    async def record(self, command: Command) -> tuple[int, bool]:
        """Writes the command down before Discord is answered; (job id, whether it is new). The rest of
        the calling task logs with the job's id."""
        job_id, is_new = await self.store.create(
            interaction_id=command.interaction_id,
            guild_id=command.guild_id,
            channel_id=command.channel_id,
            user_id=command.user_id,
            state=State.RECEIVED,
            params=command.request.to_params(),
            upload_limit=command.upload_limit,
            lifetime_seconds=self.settings.max_lifetime_minutes * 60,
            deliver_via=VIA_INTERACTION if command.deliver_via_interaction else VIA_CHANNEL,
            locale=command.locale,
        )
        bind_job(job_id)
        return job_id, is_new

    async def accept(self, job_id: int, command: Command) -> Accepted:
        """Checks the images, reserves credits, uploads and queues. Refusals raise InputRefused and end
        the job as refused with nothing charged or submitted."""
        request = command.request

        async def fetch() -> tuple[ImageInput, ImageInput | None]:
            start = await self.images.fetch(request.image.url, label="image")
            return start, await self._fetch_optional(request.end_image, label="end image")

        return await self._accept(job_id, command, fetch)

    async def accept_inputs(
        self, job_id: int, command: Command, start: ImageInput, end: ImageInput | None = None
    ) -> Accepted:
        """`accept` for a job whose images are at hand: URLs sunra already stores (Retry, Remix) or a
        picture the bot prepared (Extend's last frame, a fixed picture). Same reservation, same queue."""

        async def given() -> tuple[ImageInput, ImageInput | None]:
            return start, end

        return await self._accept(job_id, command, given)

    async def accept_after_reserving(
        self,
        job_id: int,
        command: Command,
        inputs: Callable[[], Awaitable[tuple[ImageInput, ImageInput | None]]],
    ) -> Accepted:
        """`accept` for a job whose images are costly to make (Extend's last frame): `inputs` runs only
        once the credit is reserved, so a member who cannot pay costs no video work; a refusal from it
        gives the credit back like any other."""
        return await self._accept(job_id, command, inputs, reserve_first=True)

    async def _accept(
        self,
        job_id: int,
        command: Command,
        inputs: Callable[[], Awaitable[tuple[ImageInput, ImageInput | None]]],
        *,
        reserve_first: bool = False,
    ) -> Accepted:
        # The members still waiting for their acknowledgement go first (bot/acknowledgements.py).
        await self.acknowledgements.settled()
        try:
            # Every way in (/animate, the menu, Retry/Remix/Extend, a fixed picture) comes through here.
            check_guild_allowed(command.guild_id, self.allowed_guilds)
            await self._check_burst(job_id, command.user_id)
        except InputRefused as refusal:
            await self._refuse(job_id, type(refusal).__name__, refusal.user_message)
            raise
        blocked = self.sunra.submissions_blocked
        if blocked is not None:
            await self._refuse(job_id, "service_unavailable", blocked.user_message)
            raise ServiceUnavailable(blocked.user_message)
        request = command.request
        try:
            async with self._member_intake.hold(command.user_id), self._accepting:
                if not reserve_first:
                    start, end = await inputs()
                reservation = await self.quota.reserve(
                    job_id=job_id,
                    guild_id=command.guild_id,
                    user_id=command.user_id,
                    role_ids=command.role_ids,
                    options=job_options(request),
                )
                if reserve_first:
                    start, end = await inputs()
                start_url = await self._upload(start)
                # A loop ends on its first frame: the same upload serves as the end image.
                end_url = (
                    start_url if request.loop else (await self._upload(end) if end is not None else None)
                )
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError) and self._closing:
                # The bot is stopping: the job stays `received` and the next start ends it, refunds
                # and tells the member in the channel (this process can no longer answer them).
                raise
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
            raise InputRefused(_("This command was already handled."))
        job = await self._job(job_id)
        place = await self.place_in_line(job)
        # The public progress post waits for the channel's message rate limit (5 per 5 s on Discord);
        # neither the submission nor the member's private answer should wait with it.
        self._post_progress_later(
            job_id, self._report.post_progress(job, request, Progress(Phase.WAITING, position=place))
        )
        self._wake.set()
        return Accepted(job_id, reservation, place)

    async def _check_burst(self, job_id: int, user_id: int) -> None:
        """Raises MemberBurst when MEMBER_BURST older commands of this member are still between their
        record and their reservation. Counted in the database, so a fleet of processes sharing it
        counts them all; a command recorded more than BURST_WINDOW_SECONDS ago no longer counts (a
        process killed before ending it must not hold the member back until a restart)."""
        since = self._clock() - BURST_WINDOW_SECONDS
        if await self.store.received_before(job_id, user_id=user_id, since=since) >= MEMBER_BURST:
            raise MemberBurst()

    async def _fetch_optional(self, ref: AttachmentRef | None, *, label: str) -> PreparedImage | None:
        return None if ref is None else await self.images.fetch(ref.url, label=label)

    async def _upload(self, image: ImageInput) -> str:
        if isinstance(image, str):
            return image  # already at sunra
        return await self.sunra.upload(image.data, content_type=image.content_type, file_name=image.filename)

    async def drop_unacknowledged(self, job_id: int) -> None:
        """Discord refused the acknowledgement: the member was never told the job exists, so it ends
        here, silently, before anything was reserved or submitted."""
        await self._refuse(job_id, "not_acknowledged", _("The command could not be acknowledged in time."))

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
        """Asks for a job to stop; True if it was still running. Returns after one database read and at
        most one write: a waiting job is ended here (its refund and message follow in their own task);
        a running one is signalled and its own task stops it at the next safe point, once. The press is
        written down, so a restart before the job stopped still stops it."""
        bind_job(job_id)
        job = await self.store.get(job_id)
        if job is not None and job.state == State.QUEUED:
            outcome = cancelled_outcome(reason)
            if await self._record_end(job_id, outcome, from_states=State.QUEUED):
                self._spawn(job_id, self._settle_and_tell(job_id, outcome))
                self._wake.set()
                return True
            job = await self.store.get(job_id)  # the dispatcher took it meanwhile
        if job is None or job.state in ENDED or job.state in (State.COMPLETED, State.DELIVERING):
            return False  # ended, or the video already exists and is on its way
        if self._cancels.request(job_id, reason):  # a second press keeps the first reason
            await self.store.update(job_id, cancel_reason=reason)
        return True

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
                _(
                    "The bot restarted before your picture was checked. Nothing was charged; "
                    "please run /animate again."
                ),
                True,
            )
            self._spawn(job.id, self._end(job, outcome, from_states=State.RECEIVED))
        for job in await self.store.in_states([State.SUBMITTING]):
            # No request id was saved, so we cannot ask the API about it; resubmitting might pay twice.
            outcome = outcome_from_error(SubmissionUncertain())
            self._spawn(job.id, self._end(job, outcome, from_states=State.SUBMITTING))
        for job in await self.store.unnotified(TOLD_IN_CHANNEL):
            if job.id not in self._tasks:
                self._spawn(job.id, self._retell(job), request_id=job.request_id)
        await self.quota.settle_finished()
        for job in await self.store.in_states([State.QUEUED, State.SUBMITTED, State.COMPLETED]):
            if job.progress_message_id is None:
                # Killed around the progress post: adopt the message if it was made, else post it now.
                request = AnimateRequest.model_validate(job.params)
                self._post_progress_later(job.id, self._report.recover_progress(job, request))
        for job in await self.store.in_states([State.SUBMITTED]):
            if job.cancel_reason is not None:  # pressed before the last process could stop it
                self._cancels.request(job.id, job.cancel_reason)
            self._spawn(job.id, self._follow(job), request_id=job.request_id)
        for job in await self.store.in_states([State.COMPLETED]):
            await self.quota.commit(job.id)
            self._spawn(job.id, self._deliver(job), request_id=job.request_id)
        for job in await self.store.in_states([State.DELIVERING]):
            self._spawn(job.id, self._redeliver(job), request_id=job.request_id)
        self._wake.set()
