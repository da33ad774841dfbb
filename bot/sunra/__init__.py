"""Typed async client for Kling 2.6 Pro image-to-video on the sunra.ai queue API.

One job goes: :meth:`SunraClient.upload` (the member's picture) → :meth:`~SunraClient.submit` →
:meth:`~SunraClient.wait` (the status stream, or adaptive polling) → :meth:`~SunraClient.result` →
:meth:`~SunraClient.download`. Every failure is a :class:`SunraError` (a :class:`bot.errors.BotError`)
whose ``user_message`` a member can read and whose ``str()`` is a log line for the operator.

Modules: ``errors`` (the exceptions), ``models`` (input, answers and their parsers), ``policies`` (retry,
polling, timeouts), ``transport`` (HTTP details: auth, error bodies, rate-limit headers, events),
``base`` (the client's HTTP clients, request loop and error mapping), ``waiting`` (status stream and
polling) and ``client`` (:class:`SunraClient`). Everything public is importable from ``bot.sunra``.

Rules this module keeps, because breaking any of them costs money or leaks the key:

* The key is sent only to the configured API base. Uploads and downloads use a second HTTP client that
  has no key at all, and API URLs are always built from the base and the request id, never taken from
  an answer (``status_url``/``response_url`` could point anywhere).
* Storage URLs taken from answers (an upload ticket's ``upload_url``, a result's ``video.url``) are
  used only as :mod:`bot.netguard` allows: https to a public address, or a host the operator listed in
  ``SUNRA_FILE_HOSTS``; every redirect is checked the same way before it is followed.
* A submission is retried only when the API certainly created no job: a 429, or a connection that failed
  before the request left. Anything else after sending raises :class:`SubmissionUncertain`.
* Reads (status, result, cancel, upload initiation) are retried with jittered exponential backoff on
  408/409/429/5xx, connection errors, timeouts and unreadable answers, honouring ``Retry-After`` and
  ``x-ratelimit-reset``.
* A rejected key (401/403) or an empty balance (402) blocks new submissions for a while, so a
  misconfigured bot does not hammer the API with every member's command.
* The key never reaches a log line, an exception message or a repr.
"""

from __future__ import annotations

from bot.sunra.base import KEEPALIVE_CONNECTIONS, RESERVED_CONNECTIONS, Sleep
from bot.sunra.client import TRANSFER_CHUNK_BYTES, SunraClient
from bot.sunra.errors import (
    PREDICTION_FAILED_CODE,
    SERVICE_DOWN_MESSAGE,
    AuthError,
    DownloadTooLarge,
    InsufficientFunds,
    InvalidInput,
    MalformedResponse,
    NoVideo,
    PredictionFailed,
    RateLimited,
    RequestNotFound,
    StreamUnavailable,
    SubmissionUncertain,
    SunraError,
    TransientError,
    prediction_failure,
)
from bot.sunra.models import (
    CANCELLED_STATUSES,
    COMPLETED,
    DEFAULT_BASE_URL,
    DEFAULT_NEGATIVE_PROMPT,
    FAILED_STATUSES,
    IN_PROGRESS,
    IN_QUEUE,
    KLING_ENDPOINT,
    KNOWN_STATUSES,
    MAX_PROMPT_CHARS,
    MAX_VOICES,
    TERMINAL_STATUSES,
    KlingInput,
    KlingResult,
    QueueLog,
    QueueStatus,
    RateLimit,
    Submission,
    UploadTicket,
    Video,
    is_terminal,
    is_video_url,
)
from bot.sunra.policies import PollPolicy, RetryPolicy, Timeouts
from bot.sunra.reasons import MAX_API_TEXT, explain
from bot.sunra.transport import (
    EPOCH_MILLISECONDS_THRESHOLD,
    EPOCH_SECONDS_THRESHOLD,
    REDACTED,
    RETRYABLE_STATUS_CODES,
    SERVER_ERROR_MIN,
    ApiCall,
)
from bot.sunra.waiting import MAX_STREAM_FAILURES, MIN_STREAM_SECONDS, UpdateCallback

__all__ = [
    "CANCELLED_STATUSES",
    "COMPLETED",
    "DEFAULT_BASE_URL",
    "DEFAULT_NEGATIVE_PROMPT",
    "EPOCH_MILLISECONDS_THRESHOLD",
    "EPOCH_SECONDS_THRESHOLD",
    "FAILED_STATUSES",
    "IN_PROGRESS",
    "IN_QUEUE",
    "KEEPALIVE_CONNECTIONS",
    "KLING_ENDPOINT",
    "KNOWN_STATUSES",
    "MAX_API_TEXT",
    "MAX_PROMPT_CHARS",
    "MAX_STREAM_FAILURES",
    "MAX_VOICES",
    "MIN_STREAM_SECONDS",
    "PREDICTION_FAILED_CODE",
    "REDACTED",
    "RESERVED_CONNECTIONS",
    "RETRYABLE_STATUS_CODES",
    "SERVER_ERROR_MIN",
    "SERVICE_DOWN_MESSAGE",
    "TERMINAL_STATUSES",
    "TRANSFER_CHUNK_BYTES",
    "ApiCall",
    "AuthError",
    "DownloadTooLarge",
    "InsufficientFunds",
    "InvalidInput",
    "KlingInput",
    "KlingResult",
    "MalformedResponse",
    "NoVideo",
    "PollPolicy",
    "PredictionFailed",
    "QueueLog",
    "QueueStatus",
    "RateLimit",
    "RateLimited",
    "RequestNotFound",
    "RetryPolicy",
    "Sleep",
    "StreamUnavailable",
    "Submission",
    "SubmissionUncertain",
    "SunraClient",
    "SunraError",
    "Timeouts",
    "TransientError",
    "UpdateCallback",
    "UploadTicket",
    "Video",
    "explain",
    "is_terminal",
    "is_video_url",
    "prediction_failure",
]
