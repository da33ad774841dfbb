"""What a job is: its states and phases, what the runner is given and gives back, and pure helpers."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.config import JobSettings
from bot.errors import BotError
from bot.i18n import _
from bot.quota.rules import JobOptions
from bot.quota.spending import Reservation
from bot.request import AnimateRequest
from bot.store.jobs import JobRow
from bot.sunra import KlingInput, QueueStatus, SubmissionUncertain


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
    # The API made (and billed) the video, but it could not be fetched: the credits went back.
    UNDELIVERABLE = "undeliverable"


ENDED = frozenset(
    {State.DELIVERED, State.FAILED, State.CANCELLED, State.REFUSED, State.UNCERTAIN, State.UNDELIVERABLE}
)
# Ends that are told to the member with a message of their own (a refusal is told privately, at once).
TOLD_IN_CHANNEL = (State.FAILED, State.CANCELLED, State.UNCERTAIN, State.UNDELIVERABLE)
IN_FLIGHT = (State.SUBMITTING, State.SUBMITTED, State.COMPLETED, State.DELIVERING)


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
    """The Discord side of a job: implemented by cogs/jobs/_delivery.py, by a recorder in tests."""

    async def post_progress(self, job: JobRow, request: AnimateRequest, progress: Progress) -> int | None: ...

    async def show_progress(self, job: JobRow, progress: Progress) -> None: ...

    async def deliver(self, job: JobRow, video: Path | None, *, reencoded: bool = False) -> int | None: ...

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
    # The bot cannot post in the channel (a DM, a group DM, a member's own install in a server without the
    # bot): progress and the video go through the interaction (its token, 15 minutes), then the DM.
    # Recorded in the job's row (`deliver_via`), so a restart never posts it in the channel either.
    deliver_via_interaction: bool = False
    # The language of the job's public messages (a Discord locale such as "de"): the server's preferred
    # locale where the server added the bot, else the member's. None: English.
    locale: str | None = None


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
    # The API may bill it all the same (an uncertain submission, a cancel the API did not confirm): the
    # member's credits go back, its USD stays counted against the operator's daily cap.
    may_be_billed: bool = False


def outcome_from_error(error: BaseException) -> Outcome:
    if isinstance(error, SubmissionUncertain):
        return Outcome(State.UNCERTAIN, "submission_uncertain", error.user_message, True, may_be_billed=True)
    if isinstance(error, BotError):
        code = getattr(error, "code", None) or type(error).__name__
        return Outcome(State.FAILED, str(code), error.user_message, error.retryable)
    return Outcome(
        State.FAILED, "internal", _("Something went wrong inside the bot. Trying again may help."), True
    )


def cancelled_outcome(reason: str) -> Outcome:
    """A Cancel press; `reason` is the sentence the member reads (who cancelled, nothing charged)."""
    return Outcome(State.CANCELLED, "cancelled", reason, True)


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
        _(
            "The job did not finish within {minutes} minutes, so it was cancelled and nothing was charged. "
            "Trying again later may help.",
            minutes=minutes,
        ),
        True,
    )
