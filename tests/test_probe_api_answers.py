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
from bot.sunra.client import MAX_ANSWER_BYTES
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
