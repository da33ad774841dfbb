"""The fake sunra's HTTP side: auth and records per request, scripted faults, the nine routes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.simulator import protocol
from bot.simulator.protocol import API_PREFIX, FILES_PREFIX, error_response
from tests.fakes.sunra_server._jobs import (
    CONTROL_PREFIX,
    RATE_LIMIT_CODE,
    RATE_LIMIT_MESSAGE,
    STREAM_TICK_SECONDS,
    FakeJob,
    Fault,
    JobPlan,
    RecordedRequest,
    Upload,
    _filler_block,
    _now,
    _rate_limit_headers,
    video_chunks,
    video_piece,
)


class SunraRoutes:
    """The route handlers of :class:`FakeSunra` (which holds the jobs, uploads, faults and switches)."""

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        route = request.match_info.route.name or (
            "control" if request.path.startswith(CONTROL_PREFIX) else "unknown"
        )
        has_auth = "Authorization" in request.headers
        record = RecordedRequest(
            route=route,
            method=request.method,
            path=request.path,
            request_id=request.match_info.get("request_id"),
            has_authorization=has_auth,
            at=_now() - self._started_at,
        )
        if route != "control":
            self.requests.append(record)
        if request.path.startswith(FILES_PREFIX + "/") and has_auth:
            self.leaked_auth = True  # the key (or any credential) went to the storage host
        if request.path.startswith(API_PREFIX + "/") and not protocol.is_api_key(
            request.headers.get("Authorization"), self.key
        ):
            status = self.rejected_key_status
            headers = _rate_limit_headers(100, 1.0, remaining=99) if status == 403 else None
            response: web.StreamResponse = error_response(
                status, "Invalid or missing API key", headers=headers
            )
        else:
            response = await handler(request)
        record.status = response.status
        return response

    def _take_fault(self, route: str) -> Fault | None:
        queue = self._faults[route]
        return queue.popleft() if queue else None

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)

    async def _fault_response(
        self, fault: Fault, normal: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        await self._pause(fault.delay)
        if fault.malformed:
            return web.Response(status=200, text='{"status": "IN_PROG', content_type="application/json")
        if fault.status < 300 and normal is not None:
            return normal
        if fault.body is not None:
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        return error_response(fault.status, f"Injected {fault.status}", headers=fault.headers)

    def _job_or_404(self, request: web.Request) -> FakeJob | web.Response:
        job = self.jobs.get(request.match_info["request_id"])
        return job if job is not None else protocol.not_found("Request not found")

    # ----- API handlers -----------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        body = await protocol.json_body(request)
        self.submissions.append(body)
        fault = self._take_fault("submit")
        if fault is not None and not fault.after_processing:
            return await self._fault_response(fault)
        if (limited := self._rate_limited()) is not None:
            return limited
        problems = protocol.validate_input(body)
        if problems:
            return protocol.invalid_input(problems)
        if self.balance is not None and self.balance < 1:
            return error_response(402, "Insufficient balance. Please top up your account.")
        job = self._create_job(body)
        answer = web.json_response(protocol.submit_answer(self.url, job.request_id))
        if fault is not None:
            return await self._fault_response(fault, answer)
        return answer

    def _rate_limited(self) -> web.Response | None:
        if self.submit_rate_limit is None:
            return None
        count, window = self.submit_rate_limit
        now = _now()
        while self._submit_times and now - self._submit_times[0] >= window:
            self._submit_times.popleft()
        if len(self._submit_times) >= count:
            wait = max(0.0, window - (now - self._submit_times[0]))
            headers = {"Retry-After": f"{math.ceil(wait)}", **_rate_limit_headers(count, wait)}
            if self.rate_limit_status == 403:
                return error_response(403, RATE_LIMIT_MESSAGE, code=RATE_LIMIT_CODE, headers=headers)
            return error_response(429, "Too many requests", headers=headers)
        self._submit_times.append(now)
        return None

    def _create_job(self, body: dict[str, Any]) -> FakeJob:
        plan = self._plan_for(str(body.get("prompt", "")))
        self._counter += 1
        request_id = f"req-{self._counter:04d}-{secrets.token_hex(4)}"
        seconds = plan.seconds if plan.seconds is not None else self.job_seconds
        queue = plan.queue_seconds if plan.queue_seconds is not None else self.queue_seconds
        job = FakeJob(
            request_id=request_id,
            input=body,
            created_at=_now(),
            seconds=seconds,
            queue_seconds=min(seconds, queue if queue is not None else seconds / 3),
            queue_length=plan.queue_length if plan.queue_length is not None else self.queue_length,
            video_size=plan.video_size if plan.video_size is not None else self.video_size,
            video_url=protocol.video_url(self.root, request_id),
            fail=plan.fail,
            final_status=plan.final_status,
            forced_result=None if plan.result is None else (200, plan.result),
            content=self.video_content,
        )
        if job.content is not None:
            job.video_size = len(job.content)
        self.jobs[request_id] = job
        if self.balance is not None:
            self.balance -= 1
        return job

    def _plan_for(self, prompt: str) -> JobPlan:
        for rule in self._plans:
            if rule.matches(prompt):
                if rule.times is not None:
                    rule.times -= 1
                return rule.plan
        return JobPlan()

    async def _status(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("status")
        if fault is not None:
            return await self._fault_response(fault)
        job = self._job_or_404(request)
        if isinstance(job, web.Response):
            return job
        return web.json_response(self._status_body(job))

    def _status_body(self, job: FakeJob) -> dict[str, Any]:
        return {**job.status_body(_now()), **self.status_extra}

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("stream")
        if fault is not None and not fault.malformed:
            return await self._fault_response(fault)
        if not self.stream_enabled:
            return protocol.not_found()
        job = self._job_or_404(request)
        if isinstance(job, web.Response):
            return job
        response = protocol.start_stream()
        await response.prepare(request)
        if fault is not None:  # malformed: one garbled event, then the stream goes on
            await response.write(b"data: {not json\n\n")
        await self._send_events(request, response, job)
        return response

    async def _send_events(self, request: web.Request, response: web.StreamResponse, job: FakeJob) -> None:
        last: dict[str, Any] | None = None
        sent = 0
        quiet_since = _now()
        while not self._closing.is_set():
            body = self._status_body(job)
            stalled = self.stream_stall_after is not None and sent >= self.stream_stall_after
            if body != last and not stalled:
                await response.write(protocol.sse_event(body))
                last, sent, quiet_since = body, sent + 1, _now()
                if self.stream_drop_after is not None and sent >= self.stream_drop_after:
                    # Cut the connection without ending the chunked body: the client sees a broken stream.
                    if request.transport is not None:
                        request.transport.abort()
                    return
                if not protocol.is_waiting(body):
                    break  # terminal (known or unknown ending): the stream ends after it
            elif _now() - quiet_since > self.stream_keepalive_seconds:
                ping = (
                    b'event: ping\ndata: {"type": "ping"}\n\n'
                    if self.stream_ping_events
                    else protocol.KEEPALIVE
                )
                await response.write(ping)
                quiet_since = _now()
            await self._pause(STREAM_TICK_SECONDS)
        await response.write_eof()

    async def _result(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("result")
        if fault is not None:
            return await self._fault_response(fault)
        job = self._job_or_404(request)
        if isinstance(job, web.Response):
            return job
        if job.forced_result is not None:
            status, body = job.forced_result
            return web.json_response(body, status=status)
        refusal = protocol.result_refusal(job.timeline_body(_now()))
        if refusal is not None:
            return refusal
        if not job.succeeded():
            return web.json_response({"error": job.failure_error()})
        return web.json_response(job.result_body())

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("cancel")
        if fault is not None:
            return await self._fault_response(fault)
        job = self._job_or_404(request)
        if isinstance(job, web.Response):
            return job
        if job.is_done():
            return protocol.already_completed()
        if self.cancel_mode == "cancelled":
            job.cancelled_at = _now()
            return web.json_response(protocol.cancel_answer(job.request_id))
        if self.cancel_mode == "requested":
            job.cancelled_at = _now() + self.cancel_seconds
        return web.json_response(
            {"request_id": job.request_id, "status": "CANCELLATION_REQUESTED", "success": True}
        )

    async def _upload_initiate(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("upload_initiate")
        if fault is not None:
            return await self._fault_response(fault)
        body = await protocol.json_body(request)
        wanted = protocol.upload_request(body)
        if wanted is None:
            return protocol.invalid_upload()
        token = secrets.token_hex(8)
        self._upload_tickets[token] = wanted
        ticket = protocol.upload_ticket(self.root, token, wanted[1], secrets.token_hex(8))
        if self.upload_url_override is not None:
            ticket["upload_url"] = self.upload_url_override
        return web.json_response(ticket)

    def _file_url(self, token: str, file_name: str) -> str:
        return protocol.file_url(self.root, token, file_name)

    # ----- storage handlers (no auth expected) ------------------------------------------------------------

    async def _upload_put(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("upload_put")
        if fault is not None:
            return await self._fault_response(fault)
        ticket = self._upload_tickets.get(request.match_info["token"])
        if ticket is None:
            return protocol.not_found("Unknown upload")
        _, file_name = ticket
        data = await request.read()
        content_type = request.headers.get("Content-Type", "application/octet-stream")
        self.uploads[self._file_url(request.match_info["token"], file_name)] = Upload(
            data, content_type, file_name
        )
        return web.Response(status=200)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("file")
        if fault is not None:
            return await self._fault_response(fault)
        upload = self.uploads.get(
            self._file_url(request.match_info["token"], request.match_info["file_name"])
        )
        if upload is None:
            return protocol.not_found()
        return web.Response(body=upload.data, content_type=upload.content_type.split(";")[0])

    async def _video(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("video")
        if fault is not None and fault.cut_after is None:
            return await self._fault_response(fault)
        cut_after = None if fault is None else fault.cut_after
        if self.video_redirect is not None:
            raise web.HTTPFound(self.video_redirect)
        job = self.jobs.get(request.match_info["request_id"])
        if job is None or not job.succeeded():
            return protocol.not_found()
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        if self.send_video_length:
            response.content_length = job.video_size
        await response.prepare(request)
        if request.method != "HEAD" and job.content is not None:
            await response.write(job.content[:cut_after])
        elif request.method != "HEAD":
            block = _filler_block(job.request_id)
            size = job.video_size if cut_after is None else min(cut_after, job.video_size)
            for offset, length in video_chunks(job.request_id, size):
                await response.write(video_piece(job.request_id, offset, length, block))
        if cut_after is not None and request.transport is not None:
            request.transport.abort()  # the body ends early, without its last chunk: a cut connection
            return response
        await response.write_eof()
        return response
