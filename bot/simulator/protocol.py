"""The sunra.ai queue protocol as a server speaks it, shared by the simulator and the tests' fake sunra.

Both stand-ins (bot/simulator/server.py for people, tests/fakes/sunra_server/ for tests) answer the same
nine routes with the same bodies from here; tests/test_sunra_contract.py runs one set of cases against
both. It is written from sunra's queue documentation (https://docs.sunra.ai: submit, status, status
stream, result, cancel, storage upload) and imports nothing of the bot's client (bot/sunra/), so a
mistake in the client cannot hide behind a server that shares it.

Routes (``{api}`` = ``{root}/v1``; files stand in for sunra's storage host, which never needs the key)::

    POST {api}/queue/kling/kling-v2.6-pro/image-to-video   submit           -> submit_answer()
    GET  {api}/queue/requests/{request_id}/status          status           -> a status object
    GET  {api}/queue/requests/{request_id}/status/stream   stream           -> server-sent status objects
    GET  {api}/queue/requests/{request_id}                 result           -> video_result() or {"error"}
    PUT  {api}/queue/requests/{request_id}/cancel          cancel           -> cancel_answer()
    POST {api}/storage/upload/initiate                     upload_initiate  -> upload_ticket()
    PUT  {root}/files/upload/{token}                       upload_put       (the picture's bytes)
    GET  {root}/files/uploads/{token}/{file_name}          file             (the uploaded picture)
    GET  {root}/files/video/{request_id}.mp4               video            (the finished video)

Every error is ``{"error": {"code": str, "message": str, "details": any}}`` with its HTTP status.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from aiohttp import web

API_PREFIX = "/v1"
FILES_PREFIX = "/files"
KLING_ENDPOINT = "kling/kling-v2.6-pro/image-to-video"
PREDICTION_FAILED = "PREDICTION_FAILED"
MAX_PROMPT_CHARS = 2500
MAX_VOICES = 2
INPUT_FIELDS = frozenset(
    {
        "prompt",
        "start_image_url",
        "end_image_url",
        "negative_prompt",
        "duration",
        "generate_audio",
        "voice_ids",
    }
)
WAITING_STATUSES = frozenset({"IN_QUEUE", "IN_PROGRESS"})
LOG_STEPS = 4  # IN_PROGRESS gains a log line every quarter of the generation
KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: proxies and clients see a live stream
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    402: "INSUFFICIENT_BALANCE",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_QUEUE = API_PREFIX + "/queue"
_REQUEST = _QUEUE + "/requests/{request_id}"
#: (name, method, path) of the nine routes, in the table's order.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("submit", "POST", f"{_QUEUE}/{KLING_ENDPOINT}"),
    ("status", "GET", _REQUEST + "/status"),
    ("stream", "GET", _REQUEST + "/status/stream"),
    ("result", "GET", _REQUEST),
    ("cancel", "PUT", _REQUEST + "/cancel"),
    ("upload_initiate", "POST", API_PREFIX + "/storage/upload/initiate"),
    ("upload_put", "PUT", FILES_PREFIX + "/upload/{token}"),
    ("file", "GET", FILES_PREFIX + "/uploads/{token}/{file_name}"),
    ("video", "GET", FILES_PREFIX + "/video/{request_id}.mp4"),
)
ROUTE_NAMES = tuple(name for name, _, _ in ROUTES)


class QueueServer(Protocol):
    """A server of the nine routes: one handler each (the simulator and the fake sunra)."""

    async def _submit(self, request: web.Request) -> web.StreamResponse: ...
    async def _status(self, request: web.Request) -> web.StreamResponse: ...
    async def _stream(self, request: web.Request) -> web.StreamResponse: ...
    async def _result(self, request: web.Request) -> web.StreamResponse: ...
    async def _cancel(self, request: web.Request) -> web.StreamResponse: ...
    async def _upload_initiate(self, request: web.Request) -> web.StreamResponse: ...
    async def _upload_put(self, request: web.Request) -> web.StreamResponse: ...
    async def _file(self, request: web.Request) -> web.StreamResponse: ...
    async def _video(self, request: web.Request) -> web.StreamResponse: ...


def add_routes(app: web.Application, server: QueueServer) -> None:
    """Registers the nine routes of ``server`` under their names (``request.match_info.route.name``)."""
    handlers: dict[str, Handler] = {
        "submit": server._submit,
        "status": server._status,
        "stream": server._stream,
        "result": server._result,
        "cancel": server._cancel,
        "upload_initiate": server._upload_initiate,
        "upload_put": server._upload_put,
        "file": server._file,
        "video": server._video,
    }
    for name, method, path in ROUTES:
        app.router.add_route(method, path, handlers[name], name=name)


# ---------------------------------------------------------------------------------------------- errors


def error_body(status: int, message: str, *, code: str | None = None, details: Any = None) -> dict[str, Any]:
    """``{"error": {"code", "message", "details"}}``; ``code`` defaults to the status's (ERROR_CODES)."""
    return {
        "error": {"code": code or ERROR_CODES.get(status, "ERROR"), "message": message, "details": details}
    }


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        error_body(status, message, code=code, details=details), status=status, headers=headers
    )


def is_api_key(authorization: str | None, key: str | None) -> bool:
    """``Authorization: Key <key>``; with ``key`` None any non-empty key is accepted."""
    if authorization is None or not authorization.startswith("Key ") or not authorization[4:].strip():
        return False
    return key is None or authorization == f"Key {key}"


def unauthorized(headers: Mapping[str, str] | None = None) -> web.Response:
    return error_response(401, "Invalid or missing API key", headers=headers)


def not_found(message: str = "Not found") -> web.Response:
    return error_response(404, message)


# ---------------------------------------------------------------------------------------------- submit


async def json_body(request: web.Request) -> Any:
    """The request's JSON body, or None when it is not JSON (the checks then refuse it)."""
    try:
        return await request.json()
    except ValueError:
        return None


def validate_input(body: Any) -> list[dict[str, str]]:
    """The problems sunra reports for a submit body, one ``{"field", "message"}`` each ([] = valid).

    Types are checked as JSON types: ``"yes"`` is not a boolean and ``5`` is not the duration ``"5"``.
    """
    if not isinstance(body, dict):
        return [{"field": "body", "message": "must be a JSON object"}]
    problems: list[dict[str, str]] = []

    def problem(name: str, message: str) -> None:
        problems.append({"field": name, "message": message})

    for name in sorted(set(body) - INPUT_FIELDS):
        problem(name, "unknown field")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        problem("prompt", "is required")
    elif len(prompt) > MAX_PROMPT_CHARS:
        problem("prompt", f"must be at most {MAX_PROMPT_CHARS} characters")
    start = body.get("start_image_url")
    if not isinstance(start, str) or not start:
        problem("start_image_url", "is required")
    end = body.get("end_image_url")
    if end is not None and not isinstance(end, str):
        problem("end_image_url", "must be a string")
    negative = body.get("negative_prompt", "")
    if not isinstance(negative, str):
        problem("negative_prompt", "must be a string")
    elif len(negative) > MAX_PROMPT_CHARS:
        problem("negative_prompt", f"must be at most {MAX_PROMPT_CHARS} characters")
    if body.get("duration", "5") not in ("5", "10"):
        problem("duration", 'must be "5" or "10"')
    if not isinstance(body.get("generate_audio", True), bool):
        problem("generate_audio", "must be a boolean")
    voices = body.get("voice_ids")
    if voices is not None:
        if not isinstance(voices, list) or not all(isinstance(v, str) for v in voices):
            problem("voice_ids", "must be a list of strings")
        elif len(voices) > MAX_VOICES:
            problem("voice_ids", f"must have at most {MAX_VOICES} items")
    return problems


def invalid_input(problems: list[dict[str, str]]) -> web.Response:
    """422 ``VALIDATION_ERROR`` whose details are the problems of :func:`validate_input`."""
    message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return error_response(422, message, details=problems)


def submit_answer(api_url: str, request_id: str) -> dict[str, str]:
    """What submit answers: the request id and the three URLs of the request under ``api_url``."""
    base = f"{api_url}/queue/requests/{request_id}"
    return {
        "request_id": request_id,
        "status_url": base + "/status",
        "response_url": base,
        "cancel_url": base + "/cancel",
    }


# -------------------------------------------------------------------------------------------- statuses


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def queued_status(request_id: str, share_waited: float, queue_length: int) -> dict[str, Any]:
    """IN_QUEUE, its ``queue_position`` counting down from ``queue_length`` to 0 as ``share_waited``
    (0..1 of the queue time) grows."""
    position = min(queue_length, int(queue_length * (1.0 - share_waited)))
    return {"status": "IN_QUEUE", "queue_position": max(position, 0), "request_id": request_id}


def progress_status(request_id: str, share_done: float) -> dict[str, Any]:
    """IN_PROGRESS with one ``logs`` line ({message, timestamp}) per quarter of ``share_done`` (0..1)."""
    lines = 1 + min(LOG_STEPS - 1, max(int(share_done * LOG_STEPS), 0))
    logs = [
        {"message": f"Generating video: {step * 100 // LOG_STEPS}%", "timestamp": iso_now()}
        for step in range(lines)
    ]
    return {"status": "IN_PROGRESS", "logs": logs, "request_id": request_id}


def completed_status(request_id: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """COMPLETED: ``success`` true, or false with the job's ``error`` (see :func:`prediction_failed`)."""
    if error is None:
        return {"status": "COMPLETED", "success": True, "request_id": request_id}
    return {"status": "COMPLETED", "success": False, "error": error, "request_id": request_id}


def cancelled_status(request_id: str) -> dict[str, Any]:
    return {"status": "CANCELLED", "request_id": request_id}


def prediction_failed(
    reason: str, *, retryable: bool, code: str = "generation_failed", message: str = "Prediction failed"
) -> dict[str, Any]:
    """The ``error`` of a job that failed: PREDICTION_FAILED, the model's own code and reason inside."""
    details = {"code": code, "message": message, "reason": reason, "retryable": retryable}
    return {"code": PREDICTION_FAILED, "message": message, "details": details}


def is_waiting(status: Mapping[str, Any]) -> bool:
    return str(status.get("status", "")).upper() in WAITING_STATUSES


def sse_event(status: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying a status object."""
    return f"data: {json.dumps(status)}\n\n".encode()


def start_stream() -> web.StreamResponse:
    """The status stream's response, to ``prepare``: ``text/event-stream``, never cached."""
    response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    response.content_type = "text/event-stream"
    return response


# ------------------------------------------------------------------------------------- result, cancel


def result_refusal(status: Mapping[str, Any]) -> web.Response | None:
    """The result route's answer (400) for a job cancelled or still waiting, else None."""
    word = status.get("status")
    if word == "CANCELLED":
        return error_response(400, "The request was cancelled", code="REQUEST_CANCELLED")
    if is_waiting(status):
        return error_response(400, f"The request is not completed yet ({word})", code="NOT_COMPLETED")
    return None


def video_result(url: str, request_id: str, size: int) -> dict[str, Any]:
    """A successful job's result: its video's URL, type, name and size in bytes."""
    return {
        "video": {
            "url": url,
            "content_type": "video/mp4",
            "file_name": f"{request_id}.mp4",
            "file_size": size,
        }
    }


def video_url(root: str, request_id: str) -> str:
    return f"{root}{FILES_PREFIX}/video/{request_id}.mp4"


def cancel_answer(request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "status": "CANCELLED", "success": True}


def already_completed() -> web.Response:
    """Cancel of a job that has ended (done, failed or cancelled before)."""
    return error_response(409, "The request has already completed", code="ALREADY_COMPLETED")


# -------------------------------------------------------------------------------------------- storage


def upload_request(body: Any) -> tuple[str, str] | None:
    """``(content_type, file_name)`` of an upload initiate body, None when one is missing."""
    if not isinstance(body, dict):
        return None
    content_type, file_name = body.get("content_type"), body.get("file_name")
    if not isinstance(content_type, str) or not isinstance(file_name, str) or not file_name:
        return None
    return content_type, file_name


def invalid_upload() -> web.Response:
    return error_response(422, "content_type and file_name are required")


def file_url(root: str, token: str, file_name: str) -> str:
    """Where an uploaded picture is served (the URL a submit's ``start_image_url`` names)."""
    return f"{root}{FILES_PREFIX}/uploads/{token}/{quote(file_name, safe='')}"


def upload_ticket(root: str, token: str, file_name: str, signature: str) -> dict[str, str]:
    """What upload initiate answers: where to PUT the bytes (no key) and the picture's file URL."""
    return {
        "upload_url": f"{root}{FILES_PREFIX}/upload/{token}?signature={signature}",
        "file_url": file_url(root, token, file_name),
    }
