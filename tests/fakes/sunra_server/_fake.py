"""FakeSunra: its settings, scripting, records and control API (its routes are in _routes.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.simulator import protocol
from bot.simulator.protocol import API_PREFIX, ROUTE_NAMES, error_body
from tests.fakes.sunra_server._jobs import (
    CONTROL_PREFIX,
    DEFAULT_FAILURE_CODE,
    DEFAULT_FAILURE_REASON,
    DEFAULT_JOB_SECONDS,
    DEFAULT_KEY,
    DEFAULT_QUEUE_LENGTH,
    DEFAULT_VIDEO_SIZE,
    MAX_BODY_BYTES,
    RATE_LIMIT_CODE,
    RATE_LIMIT_MESSAGE,
    STREAM_KEEPALIVE_SECONDS,
    FakeJob,
    Fault,
    JobFailure,
    JobPlan,
    RecordedRequest,
    Upload,
    _now,
    _PlanRule,
    _rate_limit_headers,
    video_bytes,
)
from tests.fakes.sunra_server._routes import SunraRoutes


class FakeSunra(SunraRoutes):
    """The fake API. Use ``async with FakeSunra(...) as fake`` or ``await start()`` / ``await stop()``."""

    def __init__(
        self,
        key: str = DEFAULT_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        job_seconds: float = DEFAULT_JOB_SECONDS,
        queue_seconds: float | None = None,
        queue_length: int = DEFAULT_QUEUE_LENGTH,
        video_size: int = DEFAULT_VIDEO_SIZE,
    ) -> None:
        self.key = key
        self.host = host
        self.port = port
        self.job_seconds = job_seconds
        self.queue_seconds = queue_seconds  # None = a third of each job's seconds
        self.queue_length = queue_length
        self.video_size = video_size
        # A real video file (tests that decode what they get) served instead of filler bytes.
        self.video_content: bytes | None = None
        self.balance: int | None = None
        self.stream_enabled = True
        self.stream_drop_after: int | None = None
        # After this many events a stream sends keep-alives only, never another event (a stuck stream).
        self.stream_stall_after: int | None = None
        self.stream_keepalive_seconds = STREAM_KEEPALIVE_SECONDS
        # Keep-alives as events that carry no status ({"type": "ping"}) instead of SSE comments.
        self.stream_ping_events = False
        # Merged into every status answer and stream event: drift in what the API sends.
        self.status_extra: dict[str, Any] = {}
        self.send_video_length = True
        self.submit_rate_limit: tuple[int, float] | None = None
        # sunra answers a key over its rate limit 403 (its queue documentation), sometimes 429.
        self.rate_limit_status = 429
        self.rejected_key_status = 401
        # How a cancel is answered: "cancelled" (at once, CANCELLED), "requested" (CANCELLATION_REQUESTED,
        # the job ends CANCELLED ``cancel_seconds`` later) or "ignored" (CANCELLATION_REQUESTED, and the
        # job runs on and ends as planned: COMPLETED, success and a video, as a hostile API may).
        self.cancel_mode = "cancelled"
        self.cancel_seconds = 0.3
        # Hostile storage: the upload ticket names this upload_url; videos answer 302 to this Location.
        self.upload_url_override: str | None = None
        self.video_redirect: str | None = None

        self.requests: list[RecordedRequest] = []
        self.submissions: list[Any] = []
        self.jobs: dict[str, FakeJob] = {}
        self.uploads: dict[str, Upload] = {}
        self.leaked_auth = False

        self._faults: dict[str, deque[Fault]] = {route: deque() for route in ROUTE_NAMES}
        self._plans: list[_PlanRule] = []
        self._upload_tickets: dict[str, tuple[str, str]] = {}  # token → (content type, file name)
        self._submit_times: deque[float] = deque()
        self._counter = 0
        self._started_at = _now()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # ----- lifecycle --------------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base ({api}) to give SunraClient."""
        return self.root + API_PREFIX

    @property
    def control_url(self) -> str:
        return self.root + CONTROL_PREFIX

    async def start(self) -> FakeSunra:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._middleware])
        self._setup_routes(app)
        # handler_cancellation: a client that gives up (timeout) cancels the handler, as on a real server.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self._started_at = _now()
        self._closing.clear()
        return self

    async def stop(self) -> None:
        self._closing.set()  # ends open streams and scripted delays at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSunra:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- scripting --------------------------------------------------------------------------------------

    def fail_next(
        self,
        route: str,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        malformed: bool = False,
        after_processing: bool = False,
        rate_limit: bool = False,
        cut_after: int | None = None,
    ) -> None:
        """The next ``times`` requests to ``route`` get this answer instead of the normal one.

        ``rate_limit`` answers as sunra does over the rate limit (with ``status`` 403 or 429): its
        ``RATE_LIMIT_EXCEEDED`` body and ``x-ratelimit-remaining: 0``, unless ``body``/``headers`` say
        otherwise. ``retry_after`` adds ``Retry-After`` (and ``x-ratelimit-*`` for a 429); ``malformed``
        answers 200 with a body that is not JSON (on ``stream``: an event that is not JSON); ``delay``
        waits first;
        ``after_processing`` (submit only) creates the job before answering, the case where a client
        cannot know whether its job exists; ``cut_after`` (video only) starts the normal answer, with its
        full Content-Length, and cuts the connection after that many bytes of the body.
        """
        if route not in self._faults:
            raise ValueError(f"unknown route {route!r}; one of {', '.join(ROUTE_NAMES)}")
        all_headers: dict[str, str] = {}
        if rate_limit:
            reset = retry_after if retry_after is not None else 1.0
            all_headers.update(_rate_limit_headers(10, reset))
            body = body if body is not None else error_body(status, RATE_LIMIT_MESSAGE, code=RATE_LIMIT_CODE)
        all_headers.update(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = f"{retry_after:g}"
            if status == 429 and not rate_limit:
                all_headers.update(
                    {
                        "x-ratelimit-limit": "10",
                        "x-ratelimit-remaining": "0",
                        "x-ratelimit-reset": f"{retry_after:g}",
                    }
                )
        fault = Fault(status, body, all_headers, delay, malformed, after_processing, cut_after)
        self._faults[route].extend(dataclasses.replace(fault) for _ in range(times))

    def hang_next_submit(self, seconds: float) -> None:
        """The next submit creates its job, then answers only after ``seconds`` (a client timeout)."""
        self.fail_next("submit", 200, delay=seconds, after_processing=True)

    def clear_faults(self) -> None:
        for queue in self._faults.values():
            queue.clear()

    def pending_faults(self, route: str) -> int:
        return len(self._faults[route])

    def plan_jobs(self, plan: JobPlan, *, prompt_contains: str | None = None, times: int | None = 1) -> None:
        """Jobs submitted from now on (whose prompt contains ``prompt_contains``, if given) follow ``plan``;
        ``times`` jobs, or all with None. Rules are tried in the order they were added."""
        self._plans.append(_PlanRule(plan, prompt_contains, times))

    def next_job(
        self,
        *,
        seconds: float | None = None,
        queue_seconds: float | None = None,
        queue_length: int | None = None,
        video_size: int | None = None,
        final_status: dict[str, Any] | None = None,
        result: Any = None,
    ) -> None:
        self.plan_jobs(JobPlan(seconds, queue_seconds, queue_length, video_size, None, final_status, result))

    def fail_next_job(
        self,
        reason: str = DEFAULT_FAILURE_REASON,
        *,
        retryable: bool = False,
        code: str = DEFAULT_FAILURE_CODE,
        seconds: float | None = None,
    ) -> None:
        """The next job ends COMPLETED with success false and this PREDICTION_FAILED reason."""
        self.plan_jobs(
            JobPlan(seconds=seconds, fail=JobFailure(reason=reason, retryable=retryable, code=code))
        )

    def reject_key(self, status: int = 401) -> None:
        """From now on the client's key is wrong: ``status`` (401, or 403 ``FORBIDDEN`` "Invalid API
        key" with the usual ``x-ratelimit-*`` headers, not at zero) on every API route."""
        self.key = "revoked-" + secrets.token_hex(8)
        self.rejected_key_status = status

    def force_status(self, request_id: str, body: dict[str, Any] | None) -> None:
        """Status and stream answer ``body`` for this job (None: back to the timeline)."""
        self.jobs[request_id].forced_status = body

    def force_result(self, request_id: str, status: int, body: Any) -> None:
        self.jobs[request_id].forced_result = (status, body)

    def finish(self, request_id: str) -> None:
        """Ends a job's timeline now (success or its planned failure)."""
        self.jobs[request_id].finished_at = _now()

    def reset(self) -> None:
        """Forgets records, jobs, uploads, faults and plans (switches and timings stay)."""
        self.requests.clear()
        self.submissions.clear()
        self.jobs.clear()
        self.uploads.clear()
        self._upload_tickets.clear()
        self._plans.clear()
        self.clear_faults()
        self.leaked_auth = False

    # ----- records ----------------------------------------------------------------------------------------

    def count(self, route: str, request_id: str | None = None) -> int:
        """How many requests reached ``route`` (for one request id, if given)."""
        return sum(
            1
            for r in self.requests
            if r.route == route and (request_id is None or r.request_id == request_id)
        )

    def video_bytes(self, request_id: str) -> bytes:
        return video_bytes(request_id, self.jobs[request_id].video_size)

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        deadline = _now() + within
        while not predicate():
            if _now() > deadline:
                raise TimeoutError("fake sunra: condition not reached in time")
            await asyncio.sleep(0.01)

    def state(self) -> dict[str, Any]:
        """Everything recorded, as JSON (the control API's ``GET /state``)."""
        return {
            "url": self.url,
            "jobs": {rid: job.summary() for rid, job in self.jobs.items()},
            "submissions": self.submissions,
            "counts": {route: self.count(route) for route in ROUTE_NAMES},
            "requests": [dataclasses.asdict(r) for r in self.requests],
            "uploads": {
                url: {"content_type": u.content_type, "file_name": u.file_name, "size": len(u.data)}
                for url, u in self.uploads.items()
            },
            "leaked_auth": self.leaked_auth,
        }

    # ----- HTTP plumbing ----------------------------------------------------------------------------------

    def _setup_routes(self, app: web.Application) -> None:
        """Routes, plus the control API (JSON, no auth) for a fake in another process:

        ``GET /_control/state`` (:meth:`state`); ``POST /_control/fault`` {route, status, times,
        retry_after, body, headers, delay, malformed, after_processing, rate_limit, cut_after}; ``POST
        /_control/job`` {plan: {seconds, queue_seconds, queue_length, video_size, fail: {reason,
        retryable, code, message}, final_status, result}, prompt_contains, times}; ``POST
        /_control/config`` {key, balance, job_seconds, queue_seconds, queue_length, video_size,
        stream_enabled, stream_drop_after, send_video_length, submit_rate_limit}; ``POST
        /_control/force_status`` {request_id, body};
        ``POST /_control/finish`` {request_id}; ``POST /_control/reset``.
        """
        protocol.add_routes(app, self)
        app.router.add_get(CONTROL_PREFIX + "/state", self._control_state)
        app.router.add_post(CONTROL_PREFIX + "/{action}", self._control_action)

    # ----- control API ------------------------------------------------------------------------------------

    async def _control_state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state())

    async def _control_action(self, request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        body = await request.json() if request.can_read_body else {}
        try:
            self._apply_control(action, body)
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, status=400)
        return web.json_response({"ok": True})

    def _apply_control(self, action: str, body: dict[str, Any]) -> None:
        if action == "fault":
            self.fail_next(body.pop("route"), **body)
        elif action == "job":
            plan = JobPlan.from_json(body.get("plan", {}))
            self.plan_jobs(plan, prompt_contains=body.get("prompt_contains"), times=body.get("times", 1))
        elif action == "config":
            self._configure(body)
        elif action == "force_status":
            self.force_status(body["request_id"], body.get("body"))
        elif action == "finish":
            self.finish(body["request_id"])
        elif action == "reset":
            self.reset()
        else:
            raise ValueError(f"unknown control action {action!r}")

    def _configure(self, body: dict[str, Any]) -> None:
        allowed = {
            "key",
            "balance",
            "job_seconds",
            "queue_seconds",
            "queue_length",
            "video_size",
            "stream_enabled",
            "stream_drop_after",
            "send_video_length",
            "submit_rate_limit",
            "rate_limit_status",
            "stream_stall_after",
            "stream_keepalive_seconds",
            "stream_ping_events",
            "status_extra",
            "cancel_mode",
            "cancel_seconds",
            "upload_url_override",
            "video_redirect",
        }
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for name, value in body.items():
            if name == "submit_rate_limit" and value is not None:
                value = (int(value[0]), float(value[1]))
            setattr(self, name, value)
