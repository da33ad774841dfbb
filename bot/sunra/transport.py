"""HTTP details of the sunra API: the key's auth, error bodies and status codes, rate-limit headers,
server-sent events and safe URLs."""

from __future__ import annotations

import contextlib
import email.utils
import re
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx
from httpx._decoders import LineDecoder  # what aiter_lines splits with; see bounded_lines
from pydantic import SecretStr

from bot.i18n import _
from bot.sunra.errors import (
    SERVICE_DOWN_MESSAGE,
    AuthError,
    InsufficientFunds,
    InvalidInput,
    MalformedResponse,
    RateLimited,
    RequestNotFound,
    SunraError,
    TransientError,
)
from bot.sunra.reasons import bounded, clean_text, explain

# "Not now" answers, worth asking again. Other 4xx are a "no" that asking again will not change.
RETRYABLE_STATUS_CODES = frozenset({408, 409, 429})
SERVER_ERROR_MIN = 500
# x-ratelimit-reset normally holds seconds until the reset; values this large can only be timestamps.
EPOCH_SECONDS_THRESHOLD = 1_000_000_000
EPOCH_MILLISECONDS_THRESHOLD = 1_000_000_000_000

REDACTED = "[redacted]"

# Errors after which a submit certainly did not reach the server: the connection never carried it.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transport failures worth another try for reads.
TRANSIENT_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class KeyAuth(httpx.Auth):
    """Adds the key to requests under the API base only (a second guard besides building URLs)."""

    def __init__(self, key: SecretStr, base: httpx.URL) -> None:
        self._key = key
        self._base = base

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _is_under(request.url, self._base):
            request.headers["Authorization"] = f"Key {self._key.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return f"_KeyAuth({REDACTED})"


# sunra answers 403 both to a key over its rate limit and to a rejected key; these tell them apart.
_RATE_LIMIT_WORDS = re.compile(
    r"rate[\s_-]*limit|too[\s_-]*many[\s_-]*requests|throttl|slow[\s_-]*down|quota[\s_-]*exceeded|"
    r"requests?[\s_-]*per[\s_-]*(second|minute)",
    re.IGNORECASE,
)
_KEY_WORDS = re.compile(
    r"api[\s_-]*key|unauthori[sz]ed|unauthenticated|authenticat|credential|invalid[\s_-]*(key|token)|"
    r"revoked|expired|disabled|suspended|not[\s_-]*allowed|permission|access[\s_-]*denied",
    re.IGNORECASE,
)


def forbidden_kind(
    headers: httpx.Headers, code: str | None, message: str | None
) -> Literal["rate_limit", "key", "unclear"]:
    """What a 403 means. sunra's queue documentation: over the rate limit a key gets 403 Forbidden and
    should retry with exponential backoff. A rate-limit code or message, or ``x-ratelimit-remaining: 0``
    or a ``Retry-After``, make it a rate limit; words about the key make it a rejected key."""
    said = " ".join(bounded(text) for text in (code, message) if text)
    if _RATE_LIMIT_WORDS.search(said):
        return "rate_limit"
    if _KEY_WORDS.search(said):
        return "key"
    if int_header(headers, "x-ratelimit-remaining") == 0 or headers.get("retry-after"):
        return "rate_limit"
    return "unclear"


def api_error(
    status: int,
    code: str | None,
    message: str | None,
    detail: str,
    hint: float | None,
    *,
    request_scoped: bool,
    headers: httpx.Headers | None = None,
) -> SunraError:
    if status == 403:
        kind = forbidden_kind(headers or httpx.Headers(), code, message)
        if kind != "key":
            return RateLimited(
                status=status, code=code, detail=detail, retry_after=hint, maybe_key=kind == "unclear"
            )
    if status in (401, 403):
        return AuthError(status=status, code=code, detail=detail)
    if status == 402:
        return InsufficientFunds(status=status, code=code, detail=detail)
    if status == 404 and request_scoped:
        return RequestNotFound(status=status, code=code, detail=detail)
    if status == 429:
        return RateLimited(status=status, code=code, detail=detail, retry_after=hint)
    if status in RETRYABLE_STATUS_CODES or status >= SERVER_ERROR_MIN:
        return TransientError(status=status, code=code, detail=detail, retry_after=hint)
    if status in (404, 405):
        # A wrong base URL or endpoint: the bot's configuration, not the member's input.
        return SunraError(SERVICE_DOWN_MESSAGE, status=status, code=code, detail=detail, retryable=False)
    if 400 <= status < SERVER_ERROR_MIN:
        said, again = explain(
            (message, code), retryable=None, default_retryable=False, lead=_("Kling refused this request")
        )
        return InvalidInput(said, status=status, code=code, detail=detail, retryable=again)
    return MalformedResponse(status=status, code=code, detail=detail)


def error_fields(response: httpx.Response) -> tuple[str | None, str | None, Any]:
    """(code, message, details) from ``{"error": {...}}`` or the usual variants; never raises. The code
    and message are cut to a bounded length (:func:`bot.sunra.reasons.bounded`), whatever was sent."""
    try:
        body = response.json()
    except ValueError:
        text = clean_text(bounded(response.text)) if response.content else ""
        return None, text or None, None
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, str):
        return None, error, None
    if not isinstance(error, dict):
        return None, None, None
    code = error.get("code")
    message = error.get("message") or error.get("detail")
    return (
        bounded(str(code)) if code else None,
        bounded(str(message)) if message else None,
        error.get("details"),
    )


def retry_hint(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait: Retry-After first, then x-ratelimit-reset."""
    retry_after = headers.get("retry-after")
    if retry_after:
        seconds = _seconds_or_date(retry_after)
        if seconds is not None:
            return seconds
    return reset_seconds(headers)


def _seconds_or_date(value: str) -> float | None:
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def reset_seconds(headers: httpx.Headers) -> float | None:
    raw = headers.get("x-ratelimit-reset")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    if value >= EPOCH_MILLISECONDS_THRESHOLD:
        value /= 1000
    if value >= EPOCH_SECONDS_THRESHOLD:
        value -= time.time()  # an absolute Unix time, not a duration
    return max(0.0, value)


def int_header(headers: httpx.Headers, name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


async def bounded_lines(chunks: AsyncIterator[str], limit: int, label: str) -> AsyncIterator[str]:
    """The lines of a text stream, split as httpx's `aiter_lines` splits them (str.splitlines), with
    none longer than `limit` characters: past it, MalformedResponse, having held at most that much.
    (httpx buffers a line until its end comes, however long, so a stream that never sends one would
    fill the memory.)"""
    decoder = LineDecoder()
    pending = 0  # characters of the line not ended yet
    async for text in chunks:
        lines = decoder.decode(text)
        for line in lines:
            yield line
        # The decoder holds the start of a line whose end has not come (one piece after a line ended).
        pending = sum(map(len, decoder.buffer)) if lines else pending + len(text)
        if pending > limit:
            raise MalformedResponse(detail=f"{label} sent a line of more than {limit} characters")
    for line in decoder.flush():
        yield line


async def sse_data(
    lines: AsyncIterator[str], *, limit: int | None = None, label: str = ""
) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (comments and other fields are skipped). An event whose
    data passes `limit` characters before it ends raises MalformedResponse."""
    data: list[str] = []
    size = 0
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
                size = 0
            continue
        if line.startswith(":"):
            continue  # a keep-alive comment
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
            size += len(data[-1]) + 1
            if limit is not None and size > limit:
                raise MalformedResponse(detail=f"{label} sent an event of more than {limit} characters")
    if data:
        yield "\n".join(data)


def request_path(request_id: str, suffix: str = "") -> str:
    if not request_id:
        raise ValueError("empty request id")
    # Quoted as one path segment: an id from a database or an answer can never change the route.
    return f"/queue/requests/{quote(request_id, safe='')}{suffix}"


def _is_under(url: httpx.URL, base: httpx.URL) -> bool:
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        return False
    root = base.path.rstrip("/")
    return url.path == root or url.path.startswith(root + "/")


def safe_url(url: str) -> str:
    """A URL fit for logs: signed storage URLs carry their signature in the query, so it is dropped."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    return str(parsed.copy_with(query=None, fragment=None))


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One HTTP exchange with the API, for metrics: ``endpoint`` (see `endpoint_name`), seconds to the
    answer's headers, the HTTP status (None when no answer came) and, when it failed, why: the status
    as text ("429", "503") or "timeout" / "connection"."""

    endpoint: str
    seconds: float
    status: int | None
    error: str | None


def endpoint_name(path: str, *, api: bool = True) -> str:
    """A call's endpoint without its request id (a metrics label must take few values): submit,
    status, status_stream, result, cancel, upload_initiate, storage_upload or other."""
    if not api:
        return "storage_upload"
    if path.startswith("/queue/requests/"):
        _, _, suffix = path.removeprefix("/queue/requests/").partition("/")
        named = {"": "result", "status": "status", "status/stream": "status_stream", "cancel": "cancel"}
        return named.get(suffix, "other")
    if path.startswith("/queue/"):
        return "submit"
    return "upload_initiate" if path == "/storage/upload/initiate" else "other"


def failure_reason(exc: httpx.TransportError) -> str:
    return "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
