"""Hostile answers from the API (issue 19: nothing from outside is trusted), through the real client on
loopback: a body that never ends, or one of 50 MB, is refused once it passes the bound on an answer's
size, instead of being read whole into memory (an endless status answer grew the process by 4.7 GB in
20 s; the client's timeouts are per read, so a server that keeps sending is never timed out)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.sunra import RetryPolicy, SunraClient
from bot.sunra.base import MAX_ANSWER_BYTES
from bot.sunra.errors import MalformedResponse
from tests.world import listed

CHUNK = b"x" * 1_000_000


@contextlib.asynccontextmanager
async def answering(total_mb: int | None, content_type: str = "application/json") -> AsyncIterator[str]:
    """A server whose every answer is 200 JSON with a message of `total_mb` MB (None: it never ends)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        await response.prepare(request)
        await response.write(b'{"status": "IN_QUEUE", "logs": [{"message": "')
        sent = 0
        with contextlib.suppress(ConnectionError):
            while total_mb is None or sent < total_mb:
                await response.write(CHUNK)
                sent += 1
                await asyncio.sleep(0.005)
            await response.write(b'"}]}')
        return response

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("total_mb", [None, 50])
async def test_a_status_answer_past_the_bound_is_refused_not_read_whole(total_mb: int | None) -> None:
    async with answering(total_mb) as url:
        retry = RetryPolicy(base=0.01, cap=0.02)
        async with SunraClient(url, "sk-test", file_hosts=listed(url), retry=retry) as client:
            with pytest.raises(MalformedResponse) as refused:
                await asyncio.wait_for(client.status("abc"), 4.0)
    assert str(MAX_ANSWER_BYTES) in str(refused.value.detail), refused.value.detail


async def test_an_answer_within_the_bound_is_read() -> None:
    async with answering(2) as url, SunraClient(url, "sk-test", file_hosts=listed(url)) as client:
        status = await asyncio.wait_for(client.status("abc"), 10.0)
    assert status.status == "IN_QUEUE"


class Stream:
    """A server whose status stream sends `line` again and again, never ending an event; its status says
    IN_PROGRESS until `done` is set. `dropped` is set when the client hangs up the stream."""

    def __init__(self, line: bytes) -> None:
        self.line = line
        self.done = asyncio.Event()
        self.dropped = asyncio.Event()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(self.line * 1000)
                await asyncio.sleep(0.01)
        except ConnectionError:
            self.dropped.set()
        return response

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "COMPLETED" if self.done.is_set() else "IN_PROGRESS", "success": True}
        )

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_get("/v1/queue/requests/{id}/status/stream", self.stream)
        app.router.add_get("/v1/queue/requests/{id}/status", self.status)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        finally:
            await runner.cleanup()


@pytest.mark.parametrize(
    "line",
    [b"x" * 1000, b"data: " + b"x" * 1000 + b"\n"],
    ids=["a line that never ends", "data lines and never a blank line"],
)
async def test_a_status_stream_that_never_ends_an_event_is_dropped_for_polling(line: bytes) -> None:
    """Before, the client held the unfinished line (or event) in memory for as long as the job ran: the
    silence check asks the status, and a job still running kept the stream, growing by 100 MB a second
    here. Past the bound on an answer's size the stream is dropped and the job is polled."""
    from bot.sunra import PollPolicy

    server = Stream(line)
    async with server.serving() as url, SunraClient(url, "sk-test", file_hosts=listed(url)) as client:
        waiting = asyncio.create_task(client.wait("abc", poll=PollPolicy(first=0.05, maximum=0.2, jitter=0)))
        try:
            await asyncio.wait_for(server.dropped.wait(), 3.0)
        finally:
            server.done.set()
        final = await asyncio.wait_for(waiting, 5.0)
    assert final.status == "COMPLETED"
