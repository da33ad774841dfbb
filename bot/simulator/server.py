"""An offline stand-in for the sunra.ai queue API, on loopback, for trying the bot without spending.

It answers the routes the bot's client uses with the bodies of bot/simulator/protocol.py (the protocol
it shares with the tests' fake sunra; tests/test_sunra_contract.py holds both to it): submit, status,
status stream (server-sent events), result, cancel, storage upload (initiate, then PUT the bytes), and
serves the uploaded pictures and the videos. Each job waits
in a queue (`queue_seconds`, its position counting down), generates (`generate_seconds`) and ends with a
real MP4 made from its start image (bot/simulator/video.py), or, at `failure_rate`, with the
PREDICTION_FAILED error a real job reports. At `error_rate` API calls answer 503 (clients retry).

Only pictures uploaded to the simulator itself are used: it fetches nothing from the network.
Memory is bounded: the oldest jobs and uploads are forgotten after `max_jobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import web

from bot.simulator import protocol
from bot.simulator.protocol import API_PREFIX, FILES_PREFIX, Handler, error_response
from bot.simulator.video import render_clip

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Uploaded pictures kept at most (the oldest are forgotten first): pictures are up to 10 MB each.
MAX_STORED_UPLOAD_BYTES = 200 * 1024 * 1024
STREAM_TICK_SECONDS = 0.2
STREAM_KEEPALIVE_SECONDS = 15.0
FAILURE_REASON = "The simulator failed this job on purpose (--failure-rate)."


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """Seconds, shares in [0, 1]. `key` None accepts any key; `seed` makes failures repeatable."""

    queue_seconds: float = 2.0
    generate_seconds: float = 4.0
    queue_length: int = 3
    failure_rate: float = 0.0
    error_rate: float = 0.0
    key: str | None = None
    seed: int | None = None
    max_jobs: int = 100

    def __post_init__(self) -> None:
        if self.queue_seconds < 0 or self.generate_seconds < 0:
            raise ValueError("delays cannot be negative")
        for name in ("failure_rate", "error_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")


@dataclass
class SimulatedJob:
    request_id: str
    input: dict[str, Any]  # the submit body, valid by protocol.validate_input
    created_at: float  # time.monotonic()
    queue_seconds: float
    generate_seconds: float
    queue_length: int
    fails: bool
    cancelled: bool = False
    video: bytes | None = None
    render_error: str | None = None
    rendering: asyncio.Task[None] | None = field(default=None, repr=False)

    def status_body(self, now: float) -> dict[str, Any]:
        if self.cancelled:
            return protocol.cancelled_status(self.request_id)
        elapsed = now - self.created_at
        if elapsed < self.queue_seconds:
            return protocol.queued_status(self.request_id, elapsed / self.queue_seconds, self.queue_length)
        ready = self.fails or self.video is not None or self.render_error is not None
        if elapsed < self.queue_seconds + self.generate_seconds or not ready:
            done = (elapsed - self.queue_seconds) / max(self.generate_seconds, 1e-9)
            return protocol.progress_status(self.request_id, done)
        return protocol.completed_status(self.request_id, self.failure())

    def failure(self) -> dict[str, Any] | None:
        if not self.fails and self.render_error is None:
            return None
        return protocol.prediction_failed(
            FAILURE_REASON if self.fails else str(self.render_error), retryable=self.fails
        )

    def is_done(self, now: float) -> bool:
        return not protocol.is_waiting(self.status_body(now))


class Simulator:
    """`async with Simulator(settings) as sim:` serves on `sim.url` (the API base to give the bot)."""

    def __init__(
        self, settings: SimulatorSettings = SimulatorSettings(), *, host: str = "127.0.0.1", port: int = 0
    ):
        self.settings = settings
        self.host = host
        self.port = port
        self.jobs: OrderedDict[str, SimulatedJob] = OrderedDict()
        self.uploads: OrderedDict[str, tuple[str, str, bytes | None]] = (
            OrderedDict()
        )  # token → type, name, data
        self._random = random.Random(settings.seed)
        self._render_slot = asyncio.Semaphore(1)  # one render at a time: the rest wait, the host stays usable
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.root + API_PREFIX

    async def start(self) -> Simulator:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES, middlewares=[self._middleware])
        protocol.add_routes(app, self)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self._closing.clear()
        return self

    async def stop(self) -> None:
        self._closing.set()
        for job in self.jobs.values():
            if job.rendering is not None:
                job.rendering.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- plumbing ---------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX + "/"):
            if not protocol.is_api_key(request.headers.get("Authorization"), self.settings.key):
                return protocol.unauthorized()
            if self._random.random() < self.settings.error_rate:
                return error_response(503, "Simulated outage (--error-rate); try again")
        return await handler(request)

    def _job(self, request: web.Request) -> SimulatedJob | web.Response:
        job = self.jobs.get(request.match_info["request_id"])
        return job if job is not None else protocol.not_found("Request not found")

    def _forget_oldest(self) -> None:
        while len(self.jobs) > self.settings.max_jobs:
            _, job = self.jobs.popitem(last=False)
            if job.rendering is not None:
                job.rendering.cancel()
        while len(self.uploads) > 1 and (
            len(self.uploads) > 2 * self.settings.max_jobs
            or sum(len(data or b"") for _, _, data in self.uploads.values()) > MAX_STORED_UPLOAD_BYTES
        ):
            self.uploads.popitem(last=False)

    # ----- the queue --------------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        body = await protocol.json_body(request)
        problems = protocol.validate_input(body)
        if problems:
            return protocol.invalid_input(problems)
        settings = self.settings
        request_id = f"sim-{secrets.token_hex(8)}"
        job = SimulatedJob(
            request_id=request_id,
            input=body,
            created_at=time.monotonic(),
            queue_seconds=settings.queue_seconds,
            generate_seconds=settings.generate_seconds,
            queue_length=settings.queue_length,
            fails=self._random.random() < settings.failure_rate,
        )
        if not job.fails:
            job.rendering = asyncio.create_task(self._render(job), name=f"render-{request_id}")
        self.jobs[request_id] = job
        self._forget_oldest()
        seconds, audio = body.get("duration", "5"), body.get("generate_audio", True)
        log.info("job %s: %s s, audio %s", request_id, seconds, audio)
        return web.json_response(protocol.submit_answer(self.url, request_id))

    async def _render(self, job: SimulatedJob) -> None:
        end_url = job.input.get("end_image_url")
        start = self._uploaded(job.input["start_image_url"])
        end = self._uploaded(end_url) if end_url else None
        if start is None or (end_url and end is None):
            job.render_error = "The image could not be downloaded (the simulator only knows its own uploads)."
            return
        async with self._render_slot:
            if job.cancelled:
                return
            try:
                job.video = await asyncio.to_thread(
                    render_clip,
                    start,
                    seconds=int(job.input.get("duration", "5")),
                    audio=bool(job.input.get("generate_audio", True)),
                    end=end,
                )
            except Exception as error:  # a picture PyAV or Pillow cannot use: the job fails, as on sunra
                log.warning("job %s: rendering failed: %s", job.request_id, error)
                job.render_error = "The image could not be read."

    def _uploaded(self, url: str | None) -> bytes | None:
        parts = urlsplit(url or "")
        prefix = FILES_PREFIX + "/uploads/"
        if f"{parts.scheme}://{parts.netloc}" != self.root or not parts.path.startswith(prefix):
            return None
        token = unquote(parts.path[len(prefix) :]).split("/", 1)[0]
        found = self.uploads.get(token)
        return None if found is None else found[2]

    async def _status(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        return web.json_response(job.status_body(time.monotonic()))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        response = protocol.start_stream()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the client stopped listening (a cancel, say)
            await self._send_events(response, job)
        return response

    async def _send_events(self, response: web.StreamResponse, job: SimulatedJob) -> None:
        last: dict[str, Any] | None = None
        quiet_since = time.monotonic()
        while not self._closing.is_set():
            body = job.status_body(time.monotonic())
            if body != last:
                await response.write(protocol.sse_event(body))
                last, quiet_since = body, time.monotonic()
                if not protocol.is_waiting(body):
                    break
            elif time.monotonic() - quiet_since > STREAM_KEEPALIVE_SECONDS:
                await response.write(protocol.KEEPALIVE)
                quiet_since = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), STREAM_TICK_SECONDS)
        await response.write_eof()

    async def _result(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        refusal = protocol.result_refusal(job.status_body(time.monotonic()))
        if refusal is not None:
            return refusal
        failure = job.failure()
        if failure is not None:
            return web.json_response({"error": failure})
        url = protocol.video_url(self.root, job.request_id)
        return web.json_response(protocol.video_result(url, job.request_id, len(job.video or b"")))

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if job.is_done(time.monotonic()):
            return protocol.already_completed()
        job.cancelled = True
        if job.rendering is not None:
            job.rendering.cancel()
        log.info("job %s: cancelled", job.request_id)
        return web.json_response(protocol.cancel_answer(job.request_id))

    # ----- storage ----------------------------------------------------------------------------------------

    async def _upload_initiate(self, request: web.Request) -> web.StreamResponse:
        body = await protocol.json_body(request)
        wanted = protocol.upload_request(body)
        if wanted is None:
            return protocol.invalid_upload()
        content_type, file_name = wanted
        token = secrets.token_hex(8)
        self.uploads[token] = (content_type, file_name, None)
        self._forget_oldest()
        return web.json_response(protocol.upload_ticket(self.root, token, file_name, secrets.token_hex(8)))

    async def _upload_put(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        ticket = self.uploads.get(token)
        if ticket is None:
            return protocol.not_found("Unknown upload")
        self.uploads[token] = (ticket[0], ticket[1], await request.read())
        self._forget_oldest()
        return web.Response(status=200)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        found = self.uploads.get(request.match_info["token"])
        if found is None or found[2] is None or found[1] != request.match_info["file_name"]:
            return protocol.not_found()
        return web.Response(body=found[2], content_type=found[0].split(";")[0])

    async def _video(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["request_id"])
        if job is None or job.video is None or not job.is_done(time.monotonic()) or job.failure():
            return protocol.not_found()
        return web.Response(body=job.video, content_type="video/mp4")
