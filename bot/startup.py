"""Start-up before the network is there: wait for Discord with backoff instead of exiting with a traceback.

A container often starts before its network: the name does not resolve yet, the connection is refused or
times out. discord.py's first request, `GET /users/@me` in `Client.login`, then raises and the bot would
die. `wait_for_discord` makes that very request (discord.py's own `static_login`, so proxies, headers and
the token check are discord.py's) until Discord answers, then waits for the gateway to take a TCP
connection; one log line per failed attempt, exponential backoff from `STARTUP__RETRY_FIRST_SECONDS`
doubling up to `STARTUP__RETRY_MAX_SECONDS`. A token Discord refuses still raises `discord.LoginFailure`
at once.

sunra needs no such wait: nothing calls it at start, and every call to it retries transport failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import discord
import yarl
from discord.utils import MISSING
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

# What "Discord cannot be reached (yet)" looks like from discord.py's HTTP client. 5xx are included:
# discord.py already retried them, and a Discord outage at start is no reason to exit either.
UNREACHABLE = (OSError, aiohttp.ClientError, TimeoutError, discord.DiscordServerError)
# A TCP connection to the gateway that takes longer than this counts as a failed attempt.
CONNECT_TIMEOUT = 10.0


class StartupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Waiting for Discord at start: first pause between attempts, doubled up to the ceiling.
    retry_first_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)


async def wait_for_discord(
    client: discord.Client, token: str, settings: StartupSettings, stopping: asyncio.Event
) -> bool:
    """Returns True once Discord accepted the token and its gateway takes connections, False if `stopping`
    was set before that.

    Raises `discord.LoginFailure` (the token was refused) and any other `discord.HTTPException` unchanged.
    The gateway is checked too (a TCP connection, nothing sent) because discord.py 2.7 cannot retry a
    first gateway connection that fails: it raises AttributeError on its own retry path.
    """

    async def log_in() -> None:
        try:
            await client.http.static_login(token.strip())
        finally:
            await _discard_session(client)

    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    return await _until_reachable(
        "Discord", discord.http.Route.BASE, log_in, settings, stopping
    ) and await _until_reachable(
        "Discord's gateway", str(gateway), lambda: _open_tcp(gateway), settings, stopping
    )


async def _until_reachable(
    what: str,
    url: str,
    attempt_once: Callable[[], Awaitable[None]],
    settings: StartupSettings,
    stopping: asyncio.Event,
) -> bool:
    delay = settings.retry_first_seconds
    attempt = 0
    while not stopping.is_set():
        attempt += 1
        try:
            await attempt_once()
            return True
        except UNREACHABLE as error:
            failure = describe(error)
        # Jitter, so several bots restarted together by one host do not knock in step.
        pause = min(delay, settings.retry_max_seconds) * random.uniform(0.8, 1.0)
        log.warning(
            "%s is unreachable at %s (%s); attempt %d, retrying in %.1f s", what, url, failure, attempt, pause
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await stopping.wait()
        delay = min(delay * 2, settings.retry_max_seconds)
    return False


async def _open_tcp(url: yarl.URL) -> None:
    port = url.port or (443 if url.scheme == "wss" else 80)
    async with asyncio.timeout(CONNECT_TIMEOUT):
        _, writer = await asyncio.open_connection(url.host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _discard_session(client: discord.Client) -> None:
    # static_login opens an HTTP session each time; the session owns its connector and closes it, so the
    # next login (ours or discord.py's) must be given a new connector too.
    await client.http.close()
    client.http.connector = MISSING


def describe(error: BaseException) -> str:
    """A few words on why a connection failed, without a traceback (and no secret: none is in them)."""
    if isinstance(error, aiohttp.ClientConnectorDNSError | socket.gaierror):
        return "its name does not resolve"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {_os_reason(error.os_error)}"
    if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    if isinstance(error, discord.DiscordServerError):
        return f"it answered HTTP {error.status}"
    if isinstance(error, OSError):
        return f"cannot connect: {_os_reason(error)}"
    return str(error) or type(error).__name__


def _os_reason(error: OSError) -> str:
    # asyncio words a refusal "Connect call failed (...)"; the errno's own text is clearer.
    reason = os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
    return reason.lower()
