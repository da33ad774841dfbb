"""sunra failures: one exception per kind a caller acts on, each with a member's message and an
operator's detail (``str()``), and how an answer's ``error`` value becomes a :class:`PredictionFailed`."""

from __future__ import annotations

from typing import Any

from bot.errors import BotError, ServiceUnavailable
from bot.sunra.reasons import clean_text, explain

PREDICTION_FAILED_CODE = "PREDICTION_FAILED"
MAX_CODE_CHARS = 100

SERVICE_DOWN_MESSAGE = (
    "The bot's video service is not available right now; the server owner has been told. "
    "Trying again later may help."
)


# --------------------------------------------------------------------------------------------------- errors


class SunraError(BotError):
    """Base of every sunra failure. ``str()`` is the operator's detail, ``user_message`` the member's."""

    user_message = "The video service had a problem. Trying again later may help."
    retryable = True

    def __init__(
        self,
        user_message: str | None = None,
        *,
        retryable: bool | None = None,
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(user_message, retryable=retryable)
        self.status: int | None = status
        # A code comes from an answer: bounded here, so no log line, database row or pattern gets more.
        self.code: str | None = clean_text(code)[:MAX_CODE_CHARS] if code else None
        self.retry_after: float | None = retry_after
        self.detail: str = detail or self.user_message
        self.args = (self.detail,)

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, detail={self.detail!r})"


class AuthError(SunraError, ServiceUnavailable):
    """401/403: the API key is wrong or revoked. Blocks new submissions for a while."""

    user_message = SERVICE_DOWN_MESSAGE


class InsufficientFunds(SunraError, ServiceUnavailable):
    """402: the sunra account has no balance left. Blocks new submissions for a while."""

    user_message = SERVICE_DOWN_MESSAGE


class InvalidInput(SunraError):
    """422 or another 4xx about the request itself: sending the same again will not help."""

    user_message = "Kling refused this request. Trying again with the same input will not help."
    retryable = False


class RateLimited(SunraError):
    """Over the API's rate limit (429, or a 403 that says so) after every retry; ``retry_after`` is the
    server's hint in seconds, when it gave one. ``maybe_key`` marks a bare 403 that said neither "rate
    limit" nor "bad key": retried like any failure, and taken for a rejected key if it persists."""

    user_message = "The video service is busy right now. Please try again in a few minutes."

    def __init__(self, *args: Any, maybe_key: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.maybe_key = maybe_key


class TransientError(SunraError):
    """5xx, a timeout or a broken connection, still failing after every retry."""

    user_message = "The video service did not answer properly. Trying again later may help."


class MalformedResponse(SunraError):
    """An answer that is not JSON or lacks what the protocol promises."""

    user_message = "The video service gave an answer the bot could not read. Trying again later may help."


class SubmissionUncertain(SunraError):
    """The submit may or may not have created a job; it is never sent again blindly (that may pay twice)."""

    user_message = (
        "The video service did not confirm your job, so the bot cannot tell whether it started. "
        "It was not sent again, to avoid making it twice; please try again in a few minutes."
    )


class NoVideo(SunraError):
    """The job finished, yet its result holds no usable video (``video`` null or missing, no http(s)
    ``url``, or a result that says it is not finished). An answer, not a fault: asking again for
    long will not make a video appear, so the client retries briefly and callers then end the job."""

    user_message = (
        "Kling finished the job but sent back no video, so nothing was charged. Trying again may help."
    )


class RequestNotFound(SunraError):
    """404 for a request id: the API does not know (or no longer knows) this job."""

    user_message = "The video service no longer knows this job. Trying again may help."


class StreamUnavailable(SunraError):
    """The status stream cannot be used (404/405, not an event stream, or no free connection)."""


class DownloadTooLarge(SunraError):
    """The video is bigger than the caller's limit; nothing is kept on disk."""

    user_message = "The video is larger than this channel accepts."
    retryable = False

    def __init__(self, *, limit: int, size: int | None = None, detail: str | None = None) -> None:
        self.limit = limit
        self.size = size
        shown = f"{size} bytes" if size is not None else "more"
        super().__init__(detail=detail or f"the video is {shown}, over the {limit}-byte limit")


class PredictionFailed(SunraError):
    """Kling ran the job and could not make the video. ``reason`` is what the API said first; the
    member's sentence (see :func:`bot.sunra.reasons.explain`) also weighs ``said`` and ``code``."""

    retryable = True

    def __init__(
        self,
        reason: str | None = None,
        *,
        retryable: bool | None = None,
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
        said: tuple[str, ...] = (),
    ) -> None:
        self.reason = clean_text(reason) if reason else None
        message, again = explain(
            (self.reason, *said, code), retryable=retryable, default_retryable=type(self).retryable
        )
        super().__init__(
            message,
            retryable=again,
            status=status,
            code=code,
            detail=detail or f"prediction failed: {self.reason or 'no reason given'}",
        )


def prediction_failure(
    error: Any, *, status: int | None = None, default_reason: str | None = None
) -> PredictionFailed:
    """Builds PredictionFailed from an ``error`` value: the API's error object, its details, or a string."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if isinstance(error, list) and error:
        error = error[0]  # a list of errors: the first one says why
    if not isinstance(error, dict):
        reason = _text(error) or default_reason
        return PredictionFailed(reason, status=status, code=PREDICTION_FAILED_CODE if error else None)
    details = error.get("details")
    details = details if isinstance(details, dict) else {}
    texts = [
        _text(value)
        for value in (
            details.get("reason"),
            details.get("message"),
            error.get("reason"),
            error.get("message"),
            details.get("code"),
            error.get("code"),
        )
    ]
    said = tuple(text for text in texts if text)
    retryable = details.get("retryable", error.get("retryable"))
    code = _text(details.get("code")) or _text(error.get("code"))
    return PredictionFailed(
        said[0] if said else default_reason,
        retryable=retryable if isinstance(retryable, bool) else None,
        status=status,
        code=code or PREDICTION_FAILED_CODE,
        said=said[1:],
    )


def _text(value: Any) -> str | None:
    """A string (or number, for codes) the API sent; objects and lists are not reasons."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        return clean_text(str(value)) or None
    return None
