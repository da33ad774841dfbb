"""The Kling endpoint's input and the API's answers as typed objects, and the parsers that read them.

Strict only where an answer decides (status, success, error, the video's url); extra fields are kept."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from bot.sunra.errors import MalformedResponse, NoVideo, PredictionFailed, prediction_failure
from bot.sunra.reasons import clean_text

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "https://api.sunra.ai/v1"
KLING_ENDPOINT = "kling/kling-v2.6-pro/image-to-video"
MAX_PROMPT_CHARS = 2500
MAX_VOICES = 2
DEFAULT_NEGATIVE_PROMPT = "blur, distort, and low quality"
# Signed storage URLs run to a few hundred characters (1-2 KB with a session token); longer is not one.
MAX_URL_CHARS = 4096


IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
# The API documents COMPLETED (with success false on failure); these are accepted too, so an
# undocumented or future ending never leaves a job waiting forever.
FAILED_STATUSES = frozenset({"FAILED", "ERROR", "TIMEOUT"})
CANCELLED_STATUSES = frozenset({"CANCELLED", "CANCELED"})
TERMINAL_STATUSES = frozenset({COMPLETED}) | FAILED_STATUSES | CANCELLED_STATUSES
KNOWN_STATUSES = TERMINAL_STATUSES | {IN_QUEUE, IN_PROGRESS}

# --------------------------------------------------------------------------------------------------- models


class KlingInput(BaseModel):
    """The endpoint's input, field for field; anything else is refused before it is sent."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    start_image_url: str = Field(min_length=1)
    end_image_url: str | None = None
    negative_prompt: str = Field(default=DEFAULT_NEGATIVE_PROMPT, max_length=MAX_PROMPT_CHARS)
    duration: Literal["5", "10"] = "5"
    generate_audio: bool = True
    voice_ids: list[str] | None = Field(default=None, max_length=MAX_VOICES)

    def payload(self) -> dict[str, Any]:
        """The JSON body; unset optional fields are left out rather than sent as null."""
        return self.model_dump(mode="json", exclude_none=True)


class _ApiModel(BaseModel):
    # Answers may grow fields at any time; keep them instead of failing.
    model_config = ConfigDict(extra="allow")


def shown_text(value: Any) -> str | None:
    """A field that is only shown: text as is, a number as text, anything else (objects, lists) None."""
    if value is None or isinstance(value, dict | list):
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def shown_count(value: Any) -> int | None:
    """A count or size that is only shown: a non-negative whole number from an int, float or numeric
    text; anything else (a word, an object, a negative number) None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return None


def _shown_logs(value: Any) -> list[Any]:
    """``logs`` as a list of objects, whatever shape it came in: null, one text, one object, a list
    of texts, objects and numbers (other items dropped)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    logs: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            logs.append(item)
        elif (text := shown_text(item)) is not None:
            logs.append({"message": text})
    return logs


ShownText = Annotated[str | None, BeforeValidator(shown_text)]
ShownCount = Annotated[int | None, BeforeValidator(shown_count)]


class QueueLog(_ApiModel):
    message: Annotated[str, BeforeValidator(lambda value: shown_text(value) or "")] = ""
    timestamp: Any = None


def is_terminal(status: str) -> bool:
    """True when a job with this status will not change any more (its case does not matter)."""
    return status.upper() in TERMINAL_STATUSES


class QueueStatus(_ApiModel):
    """One status answer. Strict about what decides: ``status`` must be text (an unknown word is kept
    and counts as still running), ``success`` a boolean or absent; ``error`` is read leniently by
    :func:`prediction_failure`. Lenient about what is only shown: ``logs``, ``queue_position``,
    ``request_id``, ``metrics`` and any other field never make an answer unreadable."""

    status: str
    queue_position: ShownCount = None
    logs: Annotated[list[QueueLog], BeforeValidator(_shown_logs)] = Field(default_factory=list)
    success: bool | None = None
    error: Any = None
    request_id: ShownText = None
    metrics: Any = None

    @field_validator("status")
    @classmethod
    def _trim(cls, value: str) -> str:
        return value.strip()

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.status)

    @property
    def succeeded(self) -> bool | None:
        """True/False once Kling gave a verdict; None while unfinished and for a cancellation."""
        upper = self.status.upper()
        if upper == COMPLETED:
            if self.success is not None:
                return self.success
            return self.error is None
        if upper in FAILED_STATUSES:
            return False
        return None

    @property
    def failure(self) -> PredictionFailed | None:
        """The failure of a finished job (COMPLETED with success false, FAILED, ...), else None."""
        if self.succeeded is not False:
            return None
        default = "timeout" if self.status.upper() == "TIMEOUT" else None
        return prediction_failure(self.error, default_reason=default)


def _id_text(value: Any) -> Any:
    # A request id that came as a whole number is the same id; anything else is left to fail.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Submission(_ApiModel):
    """The answer to a submit. Only ``request_id`` is used: the URLs are rebuilt from the base."""

    request_id: Annotated[str, BeforeValidator(_id_text)] = Field(min_length=1)
    status_url: Any = None
    response_url: Any = None
    cancel_url: Any = None


class Video(_ApiModel):
    """The video: ``url`` decides (checked by :func:`result_from`), the rest is only shown."""

    url: str = Field(min_length=1)
    content_type: ShownText = None
    file_name: ShownText = None
    file_size: ShownCount = None


class KlingResult(_ApiModel):
    video: Video


class UploadTicket(_ApiModel):
    upload_url: str = Field(min_length=1)
    file_url: str = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The last ``x-ratelimit-*`` headers seen from the API; ``reset_at`` is on the client's clock."""

    limit: int | None
    remaining: int | None
    reset_at: float | None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise MalformedResponse(status=response.status_code, detail="the answer is not JSON") from None


def _model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_input=False)[:3]
        )
        raise MalformedResponse(detail=f"unexpected {model.__name__} ({problems})") from None


def submission_from(response: httpx.Response) -> Submission:
    return _model(Submission, _json(response))


def status_from(response: httpx.Response) -> QueueStatus:
    return _model(QueueStatus, _json(response))


def status_event(text: str, label: str) -> QueueStatus | None:
    """The status in one stream event, or None for an event that carries none (a heartbeat such as
    ``{"type": "ping"}``, an empty event). Raises MalformedResponse when it is not JSON or its status
    cannot be read."""
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        raise MalformedResponse(detail=f"{label}: unreadable event {clean_text(text)[:80]!r}") from None
    if not isinstance(body, dict) or "status" not in body:
        return None
    try:
        return QueueStatus.model_validate(body)
    except ValidationError:
        raise MalformedResponse(detail=f"{label}: unreadable event {clean_text(text)[:80]!r}") from None


def ticket_from(response: httpx.Response) -> UploadTicket:
    return _model(UploadTicket, _json(response))


def ignore_body(response: httpx.Response) -> None:
    return None


def _unwrap(body: Any) -> Any:
    """Accepts ``{"video": ...}`` also when wrapped as ``{"data": ...}`` or ``{"output": ...}``."""
    for wrapper in ("data", "output"):
        if isinstance(body, dict) and "video" not in body and isinstance(body.get(wrapper), dict):
            body = body[wrapper]
    return body


def result_from(response: httpx.Response) -> KlingResult:
    """The video of a finished job. Raises PredictionFailed when the answer says the job failed,
    NoVideo when it is well-formed JSON without a usable video, MalformedResponse when not JSON."""
    body = _unwrap(_json(response))
    if not isinstance(body, dict):
        raise NoVideo(detail=f"the result is a JSON {type(body).__name__}, not an object with a video")
    if body.get("video") is None:
        if body.get("error"):
            raise prediction_failure(body["error"], status=response.status_code)
        if isinstance(body.get("status"), str):
            status = _model(QueueStatus, body)
            failure = status.failure
            if failure is not None:
                raise failure
            if not status.is_terminal:
                raise NoVideo(detail=f"the result says the job is not finished (status {status.status})")
    video = body.get("video")
    url = video.get("url") if isinstance(video, dict) else None
    if not is_video_url(url):
        shown = "missing" if video is None else f"without a usable url ({clean_text(repr(url))[:80]})"
        raise NoVideo(detail=f"the result has no video: {shown}")
    return _model(KlingResult, body)


def ending_from_result(response: httpx.Response) -> QueueStatus | None:
    """What the result endpoint says about a job whose status word is unknown: a COMPLETED status
    with ``success`` true (a usable video) or false (the answer's error), or None when the job is not
    finished or the answer decides nothing (a 4xx such as 400 "not completed", no video yet); a result
    whose own status says cancelled gives a CANCELLED status."""
    if not 200 <= response.status_code < 300:
        return None
    try:
        body = _unwrap(_json(response))
    except MalformedResponse:
        return None
    if isinstance(body, dict) and str(body.get("status", "")).upper() in CANCELLED_STATUSES:
        return QueueStatus(status="CANCELLED")  # the result itself says the job ended cancelled
    try:
        result_from(response)
    except PredictionFailed:
        body = _unwrap(_json(response))
        error = body.get("error") if isinstance(body, dict) else None
        return QueueStatus(status=COMPLETED, success=False, error=error)
    except (NoVideo, MalformedResponse):
        return None
    return QueueStatus(status=COMPLETED, success=True)


def is_video_url(url: Any) -> bool:
    """True for an absolute http(s) URL with a host, of at most MAX_URL_CHARS: the only kind of video
    URL the bot fetches or posts (where it may be fetched from is :mod:`bot.netguard`'s decision)."""
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL_CHARS:
        return False
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def cancel_accepted(response: httpx.Response) -> bool:
    if not 200 <= response.status_code < 300:
        return False  # 400/409: the job already ended
    try:
        body = response.json()
    except ValueError:
        return True  # an empty or plain-text 2xx still means "accepted"
    return not (isinstance(body, dict) and body.get("success") is False)
