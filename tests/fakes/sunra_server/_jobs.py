"""The fake sunra's jobs and records: settings' defaults, scripted plans and faults, video bytes."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from bot.simulator import protocol

CONTROL_PREFIX = "/_control"
DEFAULT_KEY = "test-key"
DEFAULT_JOB_SECONDS = 0.3
DEFAULT_QUEUE_LENGTH = 3
DEFAULT_VIDEO_SIZE = 200_000
# The stream looks for a change this often, and sends a comment when nothing changed for a while so
# proxies and clients see a live connection.
STREAM_TICK_SECONDS = 0.05
STREAM_KEEPALIVE_SECONDS = 15.0
CHUNK_BYTES = 64 * 1024
MAX_BODY_BYTES = 200 * 1024 * 1024
RATE_LIMIT_CODE = "RATE_LIMIT_EXCEEDED"
RATE_LIMIT_MESSAGE = "Rate limit exceeded. Please retry with exponential backoff."
DEFAULT_FAILURE_REASON = "The model could not generate this video."
DEFAULT_FAILURE_CODE = "generation_failed"
# A real MP4 starts with an ftyp box; the rest of a fake video is deterministic filler.
MP4_HEADER = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def _rate_limit_headers(limit: int, reset: float, remaining: int = 0) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": f"{reset:.3f}",
    }


def _now() -> float:
    return time.monotonic()


# ---------------------------------------------------------------------------------------------- video bytes


def _filler_block(request_id: str) -> bytes:
    seed = hashlib.sha256(request_id.encode()).digest()
    return hashlib.shake_256(seed).digest(CHUNK_BYTES)


def video_chunks(request_id: str, size: int) -> list[tuple[int, int]]:
    """(offset, length) of each chunk the server writes for a video of ``size`` bytes."""
    return [(offset, min(CHUNK_BYTES, size - offset)) for offset in range(0, size, CHUNK_BYTES)]


def video_piece(request_id: str, offset: int, length: int, block: bytes | None = None) -> bytes:
    """Bytes ``offset .. offset+length`` of the fake video: the MP4 header, then a repeated block."""
    block = block or _filler_block(request_id)
    out = bytearray()
    position = offset
    end = offset + length
    while position < end:
        if position < len(MP4_HEADER):
            piece = MP4_HEADER[position : min(end, len(MP4_HEADER))]
        else:
            start = position % len(block)
            piece = block[start : start + min(end - position, len(block) - start)]
        out += piece
        position += len(piece)
    return bytes(out)


def video_bytes(request_id: str, size: int) -> bytes:
    """The whole fake video of a job (for comparisons in tests; fine for sizes up to a few MB)."""
    return video_piece(request_id, 0, size)


# -------------------------------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    route: str  # one of ROUTES, "control", or "unknown"
    method: str
    path: str
    request_id: str | None
    has_authorization: bool
    at: float  # seconds since the fake started
    status: int | None = None  # None while the answer is still being produced (or it never came)


@dataclass(frozen=True)
class Upload:
    data: bytes
    content_type: str
    file_name: str


@dataclass(frozen=True)
class JobFailure:
    """How a scripted job fails (the ``details`` of its PREDICTION_FAILED error)."""

    reason: str = DEFAULT_FAILURE_REASON
    retryable: bool = True
    code: str = DEFAULT_FAILURE_CODE
    message: str = "Prediction failed"


@dataclass(frozen=True)
class JobPlan:
    """Overrides for one job; None keeps the fake's default."""

    seconds: float | None = None  # submit → terminal
    queue_seconds: float | None = None  # submit → IN_PROGRESS
    queue_length: int | None = None
    video_size: int | None = None
    fail: JobFailure | None = None
    final_status: dict[str, Any] | None = None  # replaces the terminal status object as a whole
    result: Any = None  # replaces the result answer (200) of a successful job, e.g. {"video": None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobPlan:
        fail = data.get("fail")
        return cls(
            seconds=data.get("seconds"),
            queue_seconds=data.get("queue_seconds"),
            queue_length=data.get("queue_length"),
            video_size=data.get("video_size"),
            fail=JobFailure(**fail) if isinstance(fail, dict) else None,
            final_status=data.get("final_status"),
            result=data.get("result"),
        )


@dataclass
class _PlanRule:
    plan: JobPlan
    prompt_contains: str | None
    times: int | None  # None = every matching job

    def matches(self, prompt: str) -> bool:
        return (self.times is None or self.times > 0) and (
            self.prompt_contains is None or self.prompt_contains in prompt
        )


@dataclass
class Fault:
    """One scripted answer for a route (see :meth:`FakeSunra.fail_next`)."""

    status: int = 500
    body: Any = None  # default: sunra's error body for ``status``
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    malformed: bool = False  # answer 200 with a body that is not JSON
    after_processing: bool = False  # submit only: create the job first, then answer this way
    cut_after: int | None = None  # video only: send the headers and this many bytes, then cut the line


@dataclass
class FakeJob:
    request_id: str
    input: dict[str, Any]
    created_at: float
    seconds: float
    queue_seconds: float
    queue_length: int
    video_size: int
    video_url: str
    fail: JobFailure | None = None
    final_status: dict[str, Any] | None = None
    cancelled_at: float | None = None
    finished_at: float | None = None  # set by FakeSunra.finish()
    content: bytes | None = None  # a real video to serve instead of filler bytes
    forced_status: dict[str, Any] | None = None
    forced_result: tuple[int, Any] | None = None

    def status_body(self, now: float) -> dict[str, Any]:
        """The status object the API answers at ``now`` (a forced one, else the job's own)."""
        if self.forced_status is not None:
            return dict(self.forced_status)
        return self.timeline_body(now)

    def timeline_body(self, now: float) -> dict[str, Any]:
        """The job's own status at ``now``: what its result, cancel and video follow, whatever the
        status route is forced to say."""
        if self.cancelled_at is not None and now >= self.cancelled_at and self._running_at(self.cancelled_at):
            return protocol.cancelled_status(self.request_id)
        elapsed = now - self.created_at
        if self.finished_at is None and elapsed < self.queue_seconds:
            return protocol.queued_status(self.request_id, elapsed / self.queue_seconds, self.queue_length)
        if self.finished_at is None and elapsed < self.seconds:
            phase = max(self.seconds - self.queue_seconds, 1e-9)
            return protocol.progress_status(self.request_id, (elapsed - self.queue_seconds) / phase)
        return self.terminal_body()

    def _running_at(self, when: float) -> bool:
        # A cancel takes effect only on a job still running when it lands (a requested one, later).
        finished = self.finished_at is not None and self.finished_at <= when
        return not finished and when - self.created_at < self.seconds

    def terminal_body(self) -> dict[str, Any]:
        if self.final_status is not None:
            return dict(self.final_status)
        return protocol.completed_status(self.request_id, None if self.fail is None else self.failure_error())

    def failure_error(self) -> dict[str, Any]:
        fail = self.fail or JobFailure()
        return protocol.prediction_failed(
            fail.reason, retryable=fail.retryable, code=fail.code, message=fail.message
        )

    def state(self, now: float | None = None) -> str:
        return str(self.timeline_body(_now() if now is None else now)["status"])

    def is_done(self, now: float | None = None) -> bool:
        return not protocol.is_waiting({"status": self.state(now)})

    def succeeded(self, now: float | None = None) -> bool:
        body = self.timeline_body(_now() if now is None else now)
        return body.get("status") == "COMPLETED" and body.get("success") is True

    def result_body(self) -> dict[str, Any]:
        return protocol.video_result(self.video_url, self.request_id, self.video_size)

    def summary(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "input": self.input,
            "status": self.state(),
            "video_url": self.video_url,
            "video_size": self.video_size,
            "cancelled": self.cancelled_at is not None,
        }
