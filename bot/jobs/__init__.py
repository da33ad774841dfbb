"""The job runner; see bot/jobs/runner.py for the states and how the package is laid out."""

from bot.jobs.dispatch import DISPATCH_IDLE_SECONDS, SUBMIT_LIMITS, SubmitPacer, fair_order
from bot.jobs.model import (
    ENDED,
    IN_FLIGHT,
    TOLD_IN_CHANNEL,
    Accepted,
    Command,
    Outcome,
    Phase,
    Progress,
    Reporter,
    State,
    job_options,
    kling_input,
    lifetime_outcome,
    outcome_from_error,
    progress_from_status,
)
from bot.jobs.runner import JobRunner

__all__ = [
    "DISPATCH_IDLE_SECONDS",
    "ENDED",
    "IN_FLIGHT",
    "SUBMIT_LIMITS",
    "TOLD_IN_CHANNEL",
    "Accepted",
    "Command",
    "JobRunner",
    "Outcome",
    "Phase",
    "Progress",
    "Reporter",
    "State",
    "SubmitPacer",
    "fair_order",
    "job_options",
    "kling_input",
    "lifetime_outcome",
    "outcome_from_error",
    "progress_from_status",
]
