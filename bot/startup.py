"""Start-up before the network is there: wait for Discord with backoff instead of exiting with a traceback.

A container often starts before its network: the name does not resolve yet, the connection is refused or
times out. discord.py's first request, `GET /users/@me` in `Client.login`, then raises and the bot would
die. `wait_for_discord` makes that very request (discord.py's own `static_login`, so proxies, headers and
the token check are discord.py's) until Discord answers, with one log line per failed attempt and
exponential backoff (`STARTUP__RETRY_FIRST_SECONDS`, doubling up to `STARTUP__RETRY_MAX_SECONDS`).
A token Discord refuses still raises `discord.LoginFailure` at once.

sunra needs no such wait: nothing calls it at start, and every call to it retries transport failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random

import aiohttp
import discord
from discord.utils import MISSING
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

# What "Discord cannot be reached (yet)" looks like from discord.py's HTTP client. 5xx are included:
# discord.py already retried them, and a Discord outage at start is no reason to exit either.
UNREACHABLE = (OSError, aiohttp.ClientError, TimeoutError, discord.DiscordServerError)


class StartupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Waiting for Discord at start: first pause between attempts, doubled up to the ceiling.
    retry_first_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)


async def wait_for_discord(
    client: discord.Client, token: str, settings: StartupSettings, stopping: asyncio.Event
) -> bool:
    """Returns True once Discord accepted the token, False if `stopping` was set before that.

    Raises `discord.LoginFailure` (the token was refused) and any other `discord.HTTPException` unchanged.
    """
    delay = settings.retry_first_seconds
    attempt = 0
    while not stopping.is_set():
        attempt += 1
        try:
            await client.http.static_login(token.strip())
            return True
        except UNREACHABLE as error:
            failure = describe(error)
        finally:
            await _discard_session(client)
        # Jitter, so several bots restarted together by one host do not knock in step.
        pause = min(delay, settings.retry_max_seconds) * random.uniform(0.8, 1.0)
        log.warning(
            "Discord is unreachable at %s (%s); attempt %d, retrying in %.1f s",
            discord.http.Route.BASE,
            failure,
            attempt,
            pause,
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await stopping.wait()
        delay = min(delay * 2, settings.retry_max_seconds)
    return False


async def _discard_session(client: discord.Client) -> None:
    # static_login opens an HTTP session each time; the session owns its connector and closes it, so the
    # next login (ours or discord.py's) must be given a new connector too.
    await client.http.close()
    client.http.connector = MISSING


def describe(error: BaseException) -> str:
    """A few words on why a connection failed, without a traceback (and no secret: none is in them)."""
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "its name does not resolve"
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error
        # asyncio words refusals "Connect call failed (...)"; the errno's own text is clearer.
        reason = os.strerror(cause.errno) if cause.errno else str(cause) or type(cause).__name__
        return f"cannot connect: {reason.lower()}"
    if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    if isinstance(error, discord.DiscordServerError):
        return f"it answered HTTP {error.status}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
